"""Which faiss is live, and whether it really reaches a GPU. faiss is an optional extra ([cpu] or [gpu]);
a GPU-built faiss without a visible GPU silently runs on the CPU, so callers ask here and say so."""
from __future__ import annotations

import importlib.metadata
import warnings
from functools import lru_cache

_FAISS_DISTRIBUTIONS = ("faiss-gpu", "faiss-gpu-cu12", "faiss-gpu-cu11", "faiss-cpu", "faiss")


@lru_cache(maxsize=1)
def load_faiss():
    """The faiss module, or None when it is not installed."""
    try:
        import faiss
    except ImportError:
        return None
    return faiss


def _distribution() -> str | None:
    for name in _FAISS_DISTRIBUTIONS:
        try:
            return f"{name} {importlib.metadata.version(name)}"
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def gpu_count() -> int:
    """GPUs faiss can use: 0 without faiss, with a CPU-only build, or when no GPU is visible."""
    faiss = load_faiss()
    if faiss is None or not hasattr(faiss, "StandardGpuResources"):
        return 0
    return int(faiss.get_num_gpus())


def faiss_report() -> dict:
    """A dict for logs and `slade info`: module version, pip distribution, GPU build, visible GPUs, GPU in use."""
    faiss = load_faiss()
    if faiss is None:
        return {"faiss": None, "distribution": None, "gpu_build": False, "gpus_visible": 0, "uses_gpu": False,
                "note": "faiss is not installed: kNN and k-means use the slower pure-torch fallbacks "
                        "(pip install 'slade_ext[cpu]' or '[gpu]')"}
    gpu_build = hasattr(faiss, "StandardGpuResources")
    gpus = gpu_count()
    report = {"faiss": faiss.__version__, "distribution": _distribution(), "gpu_build": gpu_build,
              "gpus_visible": gpus, "uses_gpu": gpus > 0}
    if gpu_build and not gpus:
        report["note"] = "GPU build of faiss but no GPU visible: it runs on the CPU"
    elif not gpu_build:
        report["note"] = "CPU build of faiss"
    return report


_FALLBACK_WARNED: set[str] = set()


def warn_fallback(operation: str) -> None:
    """The one warning of the torch fallback: once per process and operation ('kNN', 'k-means')."""
    if operation not in _FALLBACK_WARNED:
        _FALLBACK_WARNED.add(operation)
        warnings.warn(f"faiss is not installed: {operation} uses a slower pure-torch implementation "
                      "(pip install faiss-cpu or faiss-gpu)", stacklevel=3)


def want_gpu(requested: bool) -> bool:
    """True when the GPU can serve a request for it; warns (once per call site) when it cannot, instead of letting
    faiss fall back silently."""
    if not requested:
        return False
    if gpu_count() > 0:
        return True
    warnings.warn(f"faiss GPU requested but unavailable ({faiss_report().get('note', 'no GPU')}); using the CPU",
                  stacklevel=3)
    return False
