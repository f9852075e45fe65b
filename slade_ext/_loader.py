"""Loads the compiled kernels: the prebuilt `slade_ext._C` if it exists, else a JIT build of csrc/.

Exactly one of the two is ever loaded. Both register the TORCH_LIBRARY namespace `slade`, and registering it
twice aborts the interpreter, so the JIT path is taken only when no prebuilt module is present at all.

The prebuilt module is checked against the torch it was built with (slade_ext/_build_meta.json, written by
setup.py) before it is imported. The JIT build directory's `lock` is checked before torch's builder waits on it:
a lock whose builder is gone is cleared, a builder that makes no progress for SLADE_EXT_LOCK_TIMEOUT seconds
(default 1200) is an error naming the lock.
"""
from __future__ import annotations

import errno
import hashlib
import importlib
import importlib.util
import json
import os
import socket
import sys
import time
from pathlib import Path

import torch

from . import _build_config

_PACKAGE_DIR = Path(__file__).resolve().parent
_CSRC = _PACKAGE_DIR.parent / "csrc"
_JIT_NAME = "slade_ext_jit"

LOCK_TIMEOUT_S = 1200.0  # no file in the build directory changed for this long: the builder is stuck
OWNER_FILE = "lock.owner"  # who is building: {"pid", "host", "started"}, written by this loader around load()

_module = None
_backend = None


# --- the prebuilt module ---------------------------------------------------------------------------------------------
def _read_meta(folder: Path) -> dict | None:
    try:
        return json.loads((folder / _build_config.META_FILE).read_text())
    except (OSError, ValueError):
        return None


def check_build_meta(folder: Path, running_version: str | None = None) -> None:
    """Raises ImportError when the `_C` in folder was built against another torch than the running one."""
    meta = _read_meta(folder)
    if meta is None:
        return  # built before the metadata existed (or by hand): the import below reports what it can
    message = _build_config.torch_mismatch_message(meta, running_version or torch.__version__)
    if message:
        raise ImportError(message)


def _import_prebuilt(spec):
    folder = Path(spec.origin).resolve().parent
    check_build_meta(folder)
    try:
        return importlib.import_module("slade_ext._C")
    except ImportError as exc:
        if "undefined symbol" not in str(exc):
            raise
        raise ImportError(
            f"slade_ext: the prebuilt kernels ({spec.origin}) do not match torch {torch.__version__} (an undefined "
            f"symbol: they were built against another torch). Rebuild them against this torch: "
            f"`{_build_config.reinstall_command()}` in the slade_ext checkout (or `bash scripts/install.sh`)."
        ) from exc


# --- the JIT build ---------------------------------------------------------------------------------------------------
def _jit_build_dir(with_cuda: bool, archs: str | None) -> Path:
    """A cache directory per source tree, torch version and CUDA setup; ninja rebuilds what changed inside it."""
    key = f"{_CSRC}|{torch.__version__}|{with_cuda}|{archs}"
    root = os.environ.get("SLADE_EXT_BUILD_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "slade_ext"
    )
    path = Path(root) / hashlib.sha256(key.encode()).hexdigest()[:16]
    path.mkdir(parents=True, exist_ok=True)
    return path


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _flock_held(lock: Path) -> bool:
    """Whether another process holds an OS lock (flock, as torch's FileLock takes) on the lock file."""
    try:
        import fcntl
    except ImportError:
        return False
    try:
        fd = os.open(lock, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        return exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK)
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def _read_owner(build_dir: Path) -> dict | None:
    try:
        owner = json.loads((build_dir / OWNER_FILE).read_text())
        return owner if isinstance(owner.get("pid"), int) else None
    except (OSError, ValueError, AttributeError):
        return None


def _last_progress(build_dir: Path) -> float:
    """The newest modification time of anything in the build directory (ninja writes objects and .ninja_log)."""
    newest = 0.0
    for root, _dirs, files in os.walk(build_dir):
        for name in files + [""]:
            try:
                newest = max(newest, os.stat(os.path.join(root, name)).st_mtime)
            except OSError:
                pass
    return newest


def _torch_lock_is_existence_based() -> bool:
    """Older torch (FileBaton) waits while the lock file merely exists; newer torch takes an flock on it."""
    from torch.utils import cpp_extension

    return not hasattr(cpp_extension, "FileLock")


def lock_state(build_dir: Path, stale_after: float, now: float | None = None) -> tuple[str, str]:
    """("free" | "held" | "stale", why) for build_dir/lock.

    held: another live process is building (it holds the flock, or it is the recorded owner on this host);
    stale: the recorded builder is gone, or (no owner recorded, a torch that waits on the file) nothing changed in
    the build directory for stale_after seconds.
    """
    lock = build_dir / "lock"
    if not lock.exists():
        return "free", "no lock"
    owner = _read_owner(build_dir)
    same_host = owner is not None and owner.get("host") == socket.gethostname()
    if _flock_held(lock):
        who = f"pid {owner['pid']}" if owner else "another process"
        return "held", f"{who} holds it"
    if owner is not None and owner["pid"] != os.getpid() and same_host and not _pid_alive(owner["pid"]):
        return "stale", f"an interrupted build: its builder, pid {owner['pid']}, is gone"
    if not _torch_lock_is_existence_based():
        return "free", "no process holds the lock"
    if owner is not None and owner["pid"] != os.getpid():
        return "held", f"pid {owner['pid']} on {owner.get('host')} is building"
    idle = (time.time() if now is None else now) - _last_progress(build_dir)
    if idle > stale_after:
        return "stale", f"no builder recorded and nothing in {build_dir} changed for {idle:.0f} s"
    return "held", "a build without a recorded owner is in progress"


def _lock_timeout() -> float:
    try:
        return float(os.environ.get("SLADE_EXT_LOCK_TIMEOUT", LOCK_TIMEOUT_S))
    except ValueError:
        return LOCK_TIMEOUT_S


def await_build_lock(build_dir: Path, stale_after: float | None = None, poll_s: float = 2.0, sleep=time.sleep,
                     clock=time.time) -> None:
    """Returns once building in build_dir may start: waits while a live builder makes progress, clears a stale lock,
    raises RuntimeError naming the lock when the builder makes no progress for stale_after seconds."""
    stale_after = _lock_timeout() if stale_after is None else stale_after
    lock = build_dir / "lock"
    announced = False
    while True:
        state, why = lock_state(build_dir, stale_after, now=clock())
        if state == "free":
            return
        if state == "stale":
            print(f"slade_ext: the build lock {lock} is stale ({why}): clearing it and rebuilding", file=sys.stderr,
                  flush=True)
            # A torch that flocks the file keeps it in place (unlinking it could split two waiters): only the owner
            # record goes. A torch that waits on the file's existence needs the file gone.
            stale = [lock] if _torch_lock_is_existence_based() else []
            for path in stale + [build_dir / OWNER_FILE]:
                try:
                    path.unlink()
                except FileNotFoundError:
                    pass
            return
        idle = clock() - _last_progress(build_dir)
        if idle > stale_after:
            raise RuntimeError(
                f"slade_ext: the kernel build in {build_dir} is locked ({why}) but nothing there changed for "
                f"{idle:.0f} s (SLADE_EXT_LOCK_TIMEOUT={stale_after:.0f}). If no build is running, delete the lock "
                f"file {lock} and import again."
            )
        if not announced:
            print(f"slade_ext: waiting for another process to finish compiling the kernels in {build_dir} ({why}; "
                  f"lock {lock})", file=sys.stderr, flush=True)
            announced = True
        sleep(poll_s)


def _write_owner(build_dir: Path) -> None:
    owner = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
    tmp = build_dir / f"{OWNER_FILE}.{os.getpid()}"
    tmp.write_text(json.dumps(owner))
    os.replace(tmp, build_dir / OWNER_FILE)


def _clear_owner(build_dir: Path) -> None:
    owner = _read_owner(build_dir)
    if owner is not None and owner["pid"] == os.getpid():
        try:
            (build_dir / OWNER_FILE).unlink()
        except FileNotFoundError:
            pass


def estimated_build_minutes(n_sources: int, n_cuda_sources: int, n_archs: int, cores: int | None = None) -> int:
    """A rough figure for the build message: ~15 s of one core per C++ file (the CPU build's 9 files took 124 s of
    CPU on a 2-core machine), ~60 s per .cu file and architecture, spread over the cores ninja uses (MAX_JOBS, else
    the CPU count)."""
    cores = cores or int(os.environ.get("MAX_JOBS") or 0) or os.cpu_count() or 1
    core_seconds = 15 * (n_sources - n_cuda_sources) + 60 * n_cuda_sources * max(n_archs, 1)
    parallel = max(1, min(cores, n_sources))
    return max(1, round(core_seconds / parallel / 60 + 0.4))


def build_message(build_dir: Path, with_cuda: bool, archs: str | None, sources: list[str]) -> str:
    n_cuda = sum(s.endswith(".cu") for s in sources)
    n_archs = len([a for a in (archs or "").split(";") if a.strip()])
    what = f"the CPU and CUDA kernels (for {archs})" if with_cuda else "the CPU kernels"
    minutes = estimated_build_minutes(len(sources), n_cuda, n_archs)
    return (f"slade_ext: no prebuilt module, compiling {what} from {_CSRC} into {build_dir} "
            f"(once per source tree and torch; roughly {minutes} min on {os.cpu_count()} cores; "
            f"SLADE_EXT_VERBOSE_BUILD=1 shows the compiler)")


def _needs_build(build_dir: Path, sources: list[str]) -> bool:
    built = [p for p in build_dir.glob(f"{_JIT_NAME}*.so")]
    if not built:
        return True
    newest_build = max(p.stat().st_mtime for p in built)
    return any(os.stat(s).st_mtime > newest_build for s in sources)


def _jit_load():
    if not (_CSRC / "ops.cpp").is_file():
        raise ImportError(
            "slade_ext: no prebuilt slade_ext._C and no csrc/ sources to build it from; "
            f"reinstall with `{_build_config.reinstall_command()}`"
        )
    _build_config.prefer_standard_cuda_home()
    from torch.utils.cpp_extension import load

    with_cuda = _build_config.want_cuda(torch) and torch.cuda.is_available()
    archs = _build_config.cuda_arch_list(torch) if with_cuda else None
    if with_cuda:
        os.environ["TORCH_CUDA_ARCH_LIST"] = archs
    sources = _build_config.source_files(_CSRC, with_cuda)
    flags = _build_config.compile_flags(with_cuda, archs)
    build_dir = _jit_build_dir(with_cuda, archs)
    await_build_lock(build_dir)
    if _needs_build(build_dir, sources):
        print(build_message(build_dir, with_cuda, archs, sources), file=sys.stderr, flush=True)
    _write_owner(build_dir)
    try:
        return load(
            name=_JIT_NAME,
            sources=sources,
            extra_include_paths=[str(_CSRC / "include")] + (_build_config.cuda_include_dirs() if with_cuda else []),
            extra_cflags=flags["cxx"],
            extra_cuda_cflags=flags["nvcc"],
            extra_ldflags=_build_config.LINK_FLAGS,
            build_directory=str(build_dir),
            with_cuda=with_cuda,
            verbose=os.environ.get("SLADE_EXT_VERBOSE_BUILD") == "1",
        )
    finally:
        _clear_owner(build_dir)


def load():
    """Returns the loaded pybind module (idempotent)."""
    global _module, _backend
    if _module is None:
        spec = importlib.util.find_spec("slade_ext._C")
        if spec is not None:
            _module = _import_prebuilt(spec)
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
