"""Loads the compiled kernels: the prebuilt `slade_ext._C` if it exists, else a JIT build of csrc/.

Exactly one of the two is ever loaded. Both register the TORCH_LIBRARY namespace `slade`, and registering it
twice aborts the interpreter, so the JIT path is taken only when no prebuilt module is present at all.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
from pathlib import Path

import torch

from . import _build_config

_PACKAGE_DIR = Path(__file__).resolve().parent
_CSRC = _PACKAGE_DIR.parent / "csrc"

_module = None
_backend = None


def _jit_build_dir(with_cuda: bool, archs: str | None) -> Path:
    """A cache directory per source tree, torch version and CUDA setup; ninja rebuilds what changed inside it."""
    key = f"{_CSRC}|{torch.__version__}|{with_cuda}|{archs}"
    root = os.environ.get("SLADE_EXT_BUILD_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "slade_ext"
    )
    path = Path(root) / hashlib.sha256(key.encode()).hexdigest()[:16]
    path.mkdir(parents=True, exist_ok=True)
    return path


def _jit_load():
    if not (_CSRC / "ops.cpp").is_file():
        raise ImportError(
            "slade_ext: no prebuilt slade_ext._C and no csrc/ sources to build it from; "
            "reinstall with `pip install --no-build-isolation .`"
        )
    _build_config.prefer_standard_cuda_home()
    from torch.utils.cpp_extension import load

    with_cuda = _build_config.want_cuda(torch) and torch.cuda.is_available()
    archs = _build_config.cuda_arch_list(torch) if with_cuda else None
    if with_cuda:
        os.environ["TORCH_CUDA_ARCH_LIST"] = archs
    sources = _build_config.source_files(_CSRC, with_cuda)
    flags = _build_config.compile_flags(with_cuda, archs)
    return load(
        name="slade_ext_jit",
        sources=sources,
        extra_include_paths=[str(_CSRC / "include")] + (_build_config.cuda_include_dirs() if with_cuda else []),
        extra_cflags=flags["cxx"],
        extra_cuda_cflags=flags["nvcc"],
        extra_ldflags=_build_config.LINK_FLAGS,
        build_directory=str(_jit_build_dir(with_cuda, archs)),
        with_cuda=with_cuda,
        verbose=os.environ.get("SLADE_EXT_VERBOSE_BUILD") == "1",
    )


def load():
    """Returns the loaded pybind module (idempotent)."""
    global _module, _backend
    if _module is None:
        if importlib.util.find_spec("slade_ext._C") is not None:
            _module = importlib.import_module("slade_ext._C")
            _backend = "prebuilt"
        else:
            _module = _jit_load()
            _backend = "jit"
    return _module


def build_info() -> dict:
    """Which backend is live (prebuilt or jit), whether CUDA kernels are compiled in, and for which archs."""
    module = load()
    facts = dict(module.build_facts())
    facts["backend"] = _backend
    facts["module_file"] = getattr(module, "__file__", None)
    facts["cuda_available"] = torch.cuda.is_available()
    return facts
