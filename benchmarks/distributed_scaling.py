"""Per-step cost of mining against the global batch under torch.distributed, measured with K gloo processes on this
machine (one thread each) and written to a JSON file with a markdown table:

    python benchmarks/distributed_scaling.py --ranks 2 4 --batch 512 --dims 128 512 --json benchmarks/results/distributed_cpu_2core.json

Per rank and step: the all-gather of the batch's embeddings (slade_ext.distributed.gather_global), the fused
multi-similarity miner on the gathered global batch (what DistributedMinerWrapper(efficient=False) runs on every
rank), and, for reference, the miner of the local queries against the global batch (the work of an efficient mode).
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

from slade_ext import ops
from slade_ext.distributed import gather_global


def _median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        dist.barrier()
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def _rank(rank, world, store, batch, dims, repeats, out):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    rows = []
    for d in dims:
        g = torch.Generator().manual_seed(rank)
        emb = torch.nn.functional.normalize(torch.randn(batch, d, generator=g), dim=1)
        labels = torch.randint(0, max(1, batch * world // 8), (batch,), generator=g)
        all_emb, all_labels = gather_global(emb), gather_global(labels)
        row = {"ranks": world, "batch": batch, "dim": d,
               "gather_s": _median_seconds(lambda: (gather_global(emb), gather_global(labels)), repeats),
               "mine_global_s": _median_seconds(lambda: ops.mine_multi_similarity(all_emb, all_labels), repeats),
               "mine_local_vs_global_s": _median_seconds(
                   lambda: ops.mine_multi_similarity(emb, labels, all_emb, all_labels), repeats)}
        rows.append(row)
    if rank == 0:
        Path(out).write_text(json.dumps(rows))
    dist.destroy_process_group()


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
    print("| ranks K | batch per rank | d | all-gather | mine global batch | mine local vs global |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['ranks']} | {r['batch']} | {r['dim']} | {1e3 * r['gather_s']:.1f} ms | "
              f"{1e3 * r['mine_global_s']:.1f} ms | {1e3 * r['mine_local_vs_global_s']:.1f} ms |")


if __name__ == "__main__":
    main()
