"""How the extension is compiled: shared by setup.py (prebuilt `_C`) and the JIT loader.

Kept free of any import from the rest of `slade_ext` so that setup.py can load it by path.
"""
from __future__ import annotations

import glob
import os
import sys
from pathlib import Path

# Architectures compiled when neither TORCH_CUDA_ARCH_LIST nor a visible GPU says otherwise.
# nvcc 13 dropped everything below 7.5; PTX for the newest lets future GPUs JIT the kernels.
DEFAULT_CUDA_ARCHS = "7.5;8.0;8.6;8.9;9.0+PTX"


# The kernel sources, by op family: each family has a driver csrc/common/<family>.cpp (validation, tiling, the
# dispatch to a device), CPU epilogues csrc/cpu/<family>_cpu.cpp and CUDA epilogues csrc/cuda/<family>_cuda.cu.
# Shared by all: the schemas (csrc/ops.cpp), argument checks and tiling (common/checks.cpp), pair inputs
# (common/drivers.cpp). CMakeLists.txt lists the same families (SLADE_OP_FAMILIES).
OP_FAMILIES = ("basis", "mining", "losses")
SHARED_SOURCES = ("ops.cpp", "common/checks.cpp", "common/drivers.cpp")


def family_sources(csrc: Path, family: str) -> dict[str, Path]:
    """The three files of an op family: {"driver", "cpu", "cuda"}."""
    return {
        "driver": csrc / "common" / f"{family}.cpp",
        "cpu": csrc / "cpu" / f"{family}_cpu.cpp",
        "cuda": csrc / "cuda" / f"{family}_cuda.cu",
    }


def source_files(csrc: Path, with_cuda: bool) -> list[str]:
    """All kernel sources: the shared C++, each family's driver and CPU kernels, and (optionally) CUDA kernels."""
    files = [str(csrc / name) for name in SHARED_SOURCES]
    families = [family_sources(csrc, family) for family in OP_FAMILIES]
    files += [str(f[part]) for f in families for part in ("driver", "cpu")]
    if with_cuda:
        files += [str(f["cuda"]) for f in families]
    return files


def prefer_standard_cuda_home() -> None:
    """Points CUDA_HOME at /usr/local/cuda when nothing set it.

    torch guesses CUDA_HOME from nvcc's location; with nvcc in /usr/local/bin it guesses /usr/local, which holds
    no libcudart, and the link fails. Call before torch.utils.cpp_extension is imported.
    """
    if not os.environ.get("CUDA_HOME") and not os.environ.get("CUDA_PATH") and os.path.isdir("/usr/local/cuda"):
        os.environ["CUDA_HOME"] = "/usr/local/cuda"


def want_cuda(torch_module) -> bool:
    """FORCE_CUDA=1 forces the CUDA build, FORCE_CUDA=0 forces the CPU build, else: CUDA torch + nvcc."""
    force = os.environ.get("FORCE_CUDA")
    if force is not None and force.strip() != "":
        return force.strip() not in ("0", "false", "False")
    from torch.utils.cpp_extension import CUDA_HOME

    return torch_module.version.cuda is not None and CUDA_HOME is not None


def cuda_arch_list(torch_module) -> str:
    """TORCH_CUDA_ARCH_LIST if set, else the visible GPUs' architectures, else DEFAULT_CUDA_ARCHS."""
    env = os.environ.get("TORCH_CUDA_ARCH_LIST", "").strip()
    if env:
        return env
    if torch_module.cuda.is_available():
        caps = sorted({torch_module.cuda.get_device_capability(i) for i in range(torch_module.cuda.device_count())})
        return ";".join(f"{major}.{minor}" for major, minor in caps)
    return DEFAULT_CUDA_ARCHS


def cuda_include_dirs() -> list[str]:
    """Headers ATen's CUDA headers need (cuBLAS, cuSPARSE) that a bare system toolkit may lack.

    The CUDA torch wheel depends on nvidia-* wheels whose headers live in site-packages/nvidia/*/include.
    """
    dirs = []
    for entry in sys.path:
        for inc in sorted(glob.glob(os.path.join(entry, "nvidia", "*", "include"))):
            if os.path.isfile(os.path.join(inc, "cublas_v2.h")) or os.path.isfile(os.path.join(inc, "cusparse.h")):
                dirs.append(inc)
    return list(dict.fromkeys(dirs))


def compile_flags(with_cuda: bool, archs: str | None) -> dict[str, list[str]]:
    """Compiler flags (build facts travel as macros). The C++ standard is left to torch, which knows what it needs."""
    # at::parallel_for expands to OpenMP pragmas in our own translation units: without -fopenmp it runs serially.
    cxx = ["-O3", "-fopenmp"]
    macros = []
    if with_cuda:
        macros += ["-DWITH_CUDA", f'-DSLADE_CUDA_ARCHS="{archs}"']
    nvcc = ["-O3", "--expt-relaxed-constexpr", "-lineinfo"] + macros
    return {"cxx": cxx + macros, "nvcc": nvcc}


LINK_FLAGS = ["-fopenmp"]
