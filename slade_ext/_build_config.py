"""How the extension is compiled: shared by setup.py (prebuilt `_C`) and the JIT loader.

Kept free of any import from the rest of `slade_ext` so that setup.py can load it by path.
"""
from __future__ import annotations

import glob
import os
import sys
from pathlib import Path

# Architectures compiled by FORCE_CUDA=1 when neither TORCH_CUDA_ARCH_LIST nor a visible GPU says otherwise.
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


def force_cuda() -> bool | None:
    """FORCE_CUDA from the environment: True (1/true/yes), False (0/false/no), None when unset or empty."""
    force = os.environ.get("FORCE_CUDA", "").strip().lower()
    if not force:
        return None
    return force not in ("0", "false", "no", "off")


def want_cuda(torch_module) -> bool:
    """Whether to compile the CUDA kernels (the convention of pytorch_scatter and friends).

    FORCE_CUDA=1 forces the CUDA build (for the TORCH_CUDA_ARCH_LIST or DEFAULT_CUDA_ARCHS), FORCE_CUDA=0 forces
    the CPU build; otherwise CUDA only when a GPU is visible to a CUDA torch and nvcc is there (CUDA_HOME): on a
    GPU-less machine the CUDA kernels could not run, and compiling them costs most of the install.
    """
    force = force_cuda()
    if force is not None:
        return force
    if torch_module.version.cuda is None or not torch_module.cuda.is_available():
        return False
    from torch.utils.cpp_extension import CUDA_HOME

    return CUDA_HOME is not None


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
    # Python's CFLAGS bring -g: debug info for torch's templates makes each C++ file compile ~2.5x slower (30 s of
    # CPU against 12 s for csrc/cpu/basis_cpu.cpp) and the module ~20 MB larger. SLADE_EXT_DEBUG=1 keeps it.
    if os.environ.get("SLADE_EXT_DEBUG") != "1":
        cxx.append("-g0")
    macros = []
    if with_cuda:
        macros += ["-DWITH_CUDA", f'-DSLADE_CUDA_ARCHS="{archs}"']
    nvcc = ["-O3", "--expt-relaxed-constexpr", "-lineinfo"] + macros
    return {"cxx": cxx + macros, "nvcc": nvcc}


LINK_FLAGS = ["-fopenmp"]


# --- which torch the build compiled against -------------------------------------------------------------------------
# setup.py writes META_FILE next to the built `_C`; the loader compares it with the torch it runs under before it
# imports `_C` (a module built against another torch fails with an undefined-symbol trace otherwise).
META_FILE = "_build_meta.json"


def reinstall_command(source_dir: str | None = None, editable: bool = False) -> str:
    """The command that rebuilds the extension against the torch of the current environment."""
    target = source_dir or "."
    return f"pip install --no-build-isolation {'-e ' if editable else ''}{target}"


def build_meta(torch_module, with_cuda: bool, archs: str | None, source_dir: str, editable: bool) -> dict:
    return {
        "torch_version": torch_module.__version__,
        "torch_cuda": torch_module.version.cuda,
        "cuda_compiled": bool(with_cuda),
        "cuda_archs": archs or "",
        "source_dir": source_dir,
        "editable": bool(editable),
        "python": "%d.%d" % sys.version_info[:2],
    }


def torch_mismatch_message(meta: dict, running_version: str) -> str | None:
    """None when the recorded build torch is the running one, else the error a user should see."""
    built = meta.get("torch_version")
    if built == running_version:
        return None
    source = meta.get("source_dir")
    if not source or not os.path.isdir(source):
        source = "<the slade_ext checkout>"
    command = reinstall_command(source, meta.get("editable", False))
    return (
        f"slade_ext: the prebuilt kernels (slade_ext._C) were built against torch {built}, but this environment runs "
        f"torch {running_version}; a compiled extension only loads under the torch it was built with. Rebuild it "
        f"against this torch: `{command}` (or `bash scripts/install.sh` in the checkout)."
    )


ISOLATED_BUILD_ADVICE = (
    "slade_ext compiles its kernels against the torch it will run with, so it must be built in the environment it is "
    "installed into, not in pip's isolated build environment (which would hold a different torch, or none). Install "
    "torch first (e.g. `pip install torch==2.14.1`), then `pip install --no-build-isolation .` (or run "
    "`bash scripts/install.sh`, which does both)."
)


def in_isolated_build_env(torch_file: str) -> bool:
    """Whether this torch comes from pip's isolated build environment (pip-build-env-*) instead of the target's."""
    return "pip-build-env-" in os.path.realpath(torch_file)
