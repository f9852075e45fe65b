"""Per-step cost of mining and losses against the global batch under torch.distributed, measured with K gloo
processes on this machine (one thread each) and written to a JSON file with a markdown table:

    python benchmarks/distributed_scaling.py --ranks 2 4 --batch 512 --dims 128 512 --json benchmarks/results/distributed_cpu_2core.json

Per rank and step (each timing includes the wrapper's own all-gathers):
- the all-gather of the batch's embeddings and labels alone (slade_ext.distributed.gather_global);
- the multi-similarity miner through slade_ext's DistributedMinerWrapper, efficient=False (the whole global batch on
  every rank) and efficient=True (this rank's rows against the global batch, the kernels' query_rows), and through
  pytorch-metric-learning's DistributedMinerWrapper around its own miner, both modes, when PML is installed;
- one loss step (miner, multi-similarity loss, backward) through slade_ext's wrappers in both modes.
docs/performance.md extrapolates these to K = 8 / 64 / 512 with the formulas it states."""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from slade_ext import losses, miners
from slade_ext.distributed import DistributedLossWrapper, DistributedMinerWrapper, gather_global

try:
    from pytorch_metric_learning import miners as pml_miners
    from pytorch_metric_learning.utils import distributed as pml_distributed
except ImportError:  # PML is optional: its columns stay empty
    pml_miners = pml_distributed = None


def _median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        dist.barrier()
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def _loss_step(emb, labels, efficient):
    x = emb.clone().requires_grad_()
    tuples = DistributedMinerWrapper(miners.MultiSimilarityMiner(), efficient=efficient)(x, labels)
    DistributedLossWrapper(losses.MultiSimilarityLoss(), efficient=efficient)(x, labels, tuples).backward()


def _rank(rank, world, store, batch, dims, repeats, out):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    rows = []
    for d in dims:
        g = torch.Generator().manual_seed(rank)
        emb = torch.nn.functional.normalize(torch.randn(batch, d, generator=g), dim=1)
        labels = torch.randint(0, max(1, batch * world // 8), (batch,), generator=g)
        row = {"ranks": world, "batch": batch, "dim": d,
               "gather_s": _median_seconds(lambda: (gather_global(emb), gather_global(labels)), repeats)}
        for efficient in (False, True):
            mode = "efficient" if efficient else "global"
            ours = DistributedMinerWrapper(miners.MultiSimilarityMiner(), efficient=efficient)
            row[f"ours_{mode}_s"] = _median_seconds(lambda: ours(emb, labels), repeats)
            row[f"ours_loss_step_{mode}_s"] = _median_seconds(lambda: _loss_step(emb, labels, efficient), repeats)
            if pml_distributed is not None:
                theirs = pml_distributed.DistributedMinerWrapper(pml_miners.MultiSimilarityMiner(), efficient=efficient)
                row[f"pml_{mode}_s"] = _median_seconds(lambda: theirs(emb, labels), repeats)
        rows.append(row)
    if rank == 0:
        Path(out).write_text(json.dumps(rows))
    dist.barrier()
    dist.destroy_process_group()


def _ms(row, key):
    return f"{1e3 * row[key]:.1f} ms" if key in row else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--dims", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", default="benchmarks/results/distributed_cpu_2core.json")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for world in args.ranks:
            out = Path(tmp) / f"rows{world}.json"
            mp.spawn(_rank, args=(world, str(Path(tmp) / f"store{world}"), args.batch, args.dims, args.repeats,
                                  str(out)), nprocs=world, join=True)
            results += json.loads(out.read_text())
    Path(args.json).write_text(json.dumps({"machine": "2-core CPU, gloo, one thread per process",
                                           "torch": torch.__version__, "rows": results}, indent=2))
    print("| ranks K | batch per rank | d | all-gather | miner, global (ours / PML) | miner, efficient (ours / PML) "
          "| loss step, global / efficient (ours) |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['ranks']} | {r['batch']} | {r['dim']} | {_ms(r, 'gather_s')} | {_ms(r, 'ours_global_s')} / "
              f"{_ms(r, 'pml_global_s')} | {_ms(r, 'ours_efficient_s')} / {_ms(r, 'pml_efficient_s')} | "
              f"{_ms(r, 'ours_loss_step_global_s')} / {_ms(r, 'ours_loss_step_efficient_s')} |")


if __name__ == "__main__":
    main()
