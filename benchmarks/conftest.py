"""The benchmark suites' fixtures: peak-memory measurement around each timed case, and the side file that
make_results.py reads (memory figures and out-of-memory records, which pytest-benchmark's JSON cannot hold).
Sizes, device and inputs are in cases.py.

Knob (environment): SLADE_BENCH_MEMORY, where the memory side file goes (default benchmarks/.memory.json).
"""
from __future__ import annotations

import ctypes
import json
import os
import threading
import time
from pathlib import Path

import pytest
import torch

from cases import DEVICE, SIZES

MEMORY_FILE = Path(os.environ.get("SLADE_BENCH_MEMORY", Path(__file__).parent / ".memory.json"))

class PeakMemory:
    """Peak extra memory of one call: CUDA allocator peak on GPU, else RSS growth sampled every millisecond."""

    def __init__(self):
        self.peak = 0

    @staticmethod
    def _trim():
        """Hands freed heap memory back to the OS, so that RSS growth counts only this call's allocations."""
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except OSError:
            pass

    def _rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def run(self, fn):
        if DEVICE.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            out = fn()
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated() - base
            return out
        self._trim()
        base = self._rss()
        peak = [base]
        done = threading.Event()

        def sample():
            while not done.is_set():
                peak[0] = max(peak[0], self._rss())
                time.sleep(0.001)

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        try:
            out = fn()
        finally:
            done.set()
            thread.join()
        self.peak = max(peak[0], self._rss()) - base
        return out


_records: dict = {}


def _sync():
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


@pytest.fixture
def run_case(benchmark, request):
    """run_case(group, impl, fn, check): measures fn's peak memory once, checks its output with check(output)
    (comparison against slade_ext's), then times it. Out-of-memory is recorded, not raised."""

    def run(group: str, impl: str, fn, check=None, rounds: int = 3):
        benchmark.group = group
        key = f"{group}|{impl}"
        mem = PeakMemory()
        try:
            out = mem.run(lambda: (fn(), _sync())[0])
        except (torch.OutOfMemoryError, MemoryError, RuntimeError) as e:
            if "memory" not in str(e).lower() and not isinstance(e, (torch.OutOfMemoryError, MemoryError)):
                raise
            _records[key] = {"group": group, "impl": impl, "oom": True}
            pytest.skip(f"{impl} ran out of memory at {group}")
        if check is not None:
            check(out)
        del out
        _records[key] = {"group": group, "impl": impl, "peak_extra_bytes": mem.peak}
        benchmark.extra_info["peak_extra_bytes"] = mem.peak
        benchmark.pedantic(lambda: (fn(), _sync()), rounds=rounds, iterations=1, warmup_rounds=1)

    return run


def pytest_sessionfinish(session, exitstatus):
    if _records:
        old = json.loads(MEMORY_FILE.read_text()) if MEMORY_FILE.exists() else {}
        old.update(_records)
        MEMORY_FILE.write_text(json.dumps(old, indent=1, sort_keys=True))


def pytest_benchmark_update_machine_info(config, machine_info):
    """Versions and threads travel in the JSON, for RESULTS.md."""
    machine_info["torch"] = torch.__version__
    machine_info["torch_threads"] = torch.get_num_threads()
    machine_info["device"] = torch.cuda.get_device_name() if DEVICE.type == "cuda" else "cpu"
    try:
        import pytorch_metric_learning

        machine_info["pytorch_metric_learning"] = pytorch_metric_learning.__version__
    except ImportError:
        machine_info["pytorch_metric_learning"] = "not installed"
    machine_info["bench_sizes"] = SIZES
    machine_info["load_average_at_start"] = os.getloadavg()
