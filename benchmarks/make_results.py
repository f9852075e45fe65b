"""Turns a pytest-benchmark JSON (+ the memory side file of conftest.py) into benchmarks/RESULTS.md.

    python -m pytest benchmarks --benchmark-only --benchmark-json=bench.json
    python benchmarks/make_results.py bench.json [--memory benchmarks/.memory.json] [--out benchmarks/RESULTS.md]
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).parent
ORDER = ["slade_ext", "pml", "reference"]


def fmt_time(seconds):
    return f"{seconds * 1e3:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def fmt_mem(n_bytes):
    if n_bytes is None:
        return "-"
    mib = max(n_bytes, 0) / 2**20
    return f"{mib / 1024:.2f} GiB" if mib >= 1024 else f"{mib:.0f} MiB"


def impl_of(bench):
    return bench["params"]["impl"]


def table(groups, memory):
    lines = [
        "| op and size | impl | median time | speed-up vs PML | peak extra memory | memory vs PML |",
        "|---|---|---|---|---|---|",
    ]
    for group in sorted(groups, key=group_key):
        rows = groups[group]
        pml = rows.get("pml")
        for impl in [i for i in ORDER if i in rows or f"{group}|{i}" in memory]:
            mem = memory.get(f"{group}|{impl}", {})
            if mem.get("oom"):
                lines.append(f"| {group} | {impl} | out of memory | - | - | - |")
                continue
            if impl not in rows:  # measured once, then failed while timed (see the run's log)
                lines.append(f"| {group} | {impl} | did not finish | - | - | - |")
                continue
            t = rows[impl]["stats"]["median"]
            m = mem.get("peak_extra_bytes")
            speed = f"{pml['stats']['median'] / t:.1f}x" if pml and impl != "pml" else "-"
            pml_mem = memory.get(f"{group}|pml", {}).get("peak_extra_bytes")
            mem_ratio = f"{100 * m / pml_mem:.1f}%" if pml_mem and m is not None and impl != "pml" else "-"
            lines.append(f"| {group} | {impl} | {fmt_time(t)} | {speed} | {fmt_mem(m)} | {mem_ratio} |")
    return "\n".join(lines)


def group_key(group):
    """Op name, then size in numeric order."""
    name, _, size = group.rpartition(" ")
    numbers = [int(x) for x in size.replace("N=", "").split("x") if x.isdigit()]
    return name, numbers


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bench_json")
    parser.add_argument("--memory", default=str(HERE / ".memory.json"))
    parser.add_argument("--out", default=str(HERE / "RESULTS.md"))
    args = parser.parse_args()
    data = json.loads(Path(args.bench_json).read_text())
    memory = json.loads(Path(args.memory).read_text()) if Path(args.memory).exists() else {}
    groups = defaultdict(dict)
    for bench in data["benchmarks"]:
        groups[bench["group"]][impl_of(bench)] = bench
    for key, rec in memory.items():
        groups.setdefault(rec["group"], {})
    info = data["machine_info"]
    cpu = info.get("cpu", {}).get("brand_raw", info.get("processor", "?"))
    header = [
        "# Benchmark results",
        "",
        f"- Date: {data['datetime']}",
        f"- Machine: {cpu}, {info.get('torch_threads')} torch threads; device: {info.get('device')}",
        f"- Versions: Python {info.get('python_version')}, torch {info.get('torch')}, "
        f"pytorch-metric-learning {info.get('pytorch_metric_learning')}",
        f"- Sizes: {info.get('bench_sizes')}; d = 128; N/8 classes of 8; clustered embeddings (benchmarks/conftest.py)",
        f"- Load average when the run started (1/5/15 min): {info.get('load_average_at_start')}",
        "- Time: median of the timed rounds after one warm-up; losses are forward + backward.",
        "- Memory: peak extra memory of one call (RSS growth sampled every ms after malloc_trim on CPU, "
        "torch.cuda.max_memory_allocated on CUDA). Every output was checked equal to slade_ext's before timing.",
        "",
    ]
    Path(args.out).write_text("\n".join(header) + "\n" + table(groups, memory) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
