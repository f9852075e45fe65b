"""The build fitted to the machine and the loader's guards: which kernels the build compiles (FORCE_CUDA, a visible
GPU), the recorded torch of a prebuilt module, the isolated-build advice, and the JIT build directory's lock.

Nothing here compiles or loads a second extension: the JIT tests fake torch's `load`, and the prebuilt-mismatch
test runs a copy of the package with a fake `_C` in a subprocess (stopped before anything is imported)."""
from __future__ import annotations

import json
import os
import runpy
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from slade_ext import _build_config, _loader

ROOT = Path(__file__).resolve().parents[2]


def fake_torch(cuda: str | None, gpus: list[tuple[int, int]]):
    return SimpleNamespace(
        __version__="2.14.1",
        version=SimpleNamespace(cuda=cuda),
        cuda=SimpleNamespace(is_available=lambda: bool(gpus), device_count=lambda: len(gpus),
                             get_device_capability=lambda i: gpus[i]),
    )


# --- which kernels the build compiles --------------------------------------------------------------------------------
@pytest.mark.parametrize("force, cuda, gpus, cuda_home, expected", [
    (None, "13.0", [], "/usr/local/cuda", False),  # CUDA torch and nvcc but no GPU: the CPU build (the new default)
    (None, "13.0", [(9, 0)], "/usr/local/cuda", True),  # a visible GPU
    (None, "13.0", [(9, 0)], None, False),  # a GPU but no nvcc
    (None, None, [], "/usr/local/cuda", False),  # CPU torch
    ("1", "13.0", [], "/usr/local/cuda", True),  # FORCE_CUDA=1 without a GPU (CI)
    ("0", "13.0", [(9, 0)], "/usr/local/cuda", False),  # FORCE_CUDA=0 with a GPU
    ("", "13.0", [], "/usr/local/cuda", False),  # empty counts as unset
])
def test_want_cuda(monkeypatch, force, cuda, gpus, cuda_home, expected):
    import torch.utils.cpp_extension as cpp_extension

    monkeypatch.setattr(cpp_extension, "CUDA_HOME", cuda_home)
    if force is None:
        monkeypatch.delenv("FORCE_CUDA", raising=False)
    else:
        monkeypatch.setenv("FORCE_CUDA", force)
    assert _build_config.want_cuda(fake_torch(cuda, gpus)) is expected


def test_cuda_arch_list(monkeypatch):
    monkeypatch.delenv("TORCH_CUDA_ARCH_LIST", raising=False)
    assert _build_config.cuda_arch_list(fake_torch("13.0", [(9, 0)])) == "9.0"  # the visible GPU's only
    assert _build_config.cuda_arch_list(fake_torch("13.0", [(9, 0), (8, 0), (9, 0)])) == "8.0;9.0"
    assert _build_config.cuda_arch_list(fake_torch("13.0", [])) == _build_config.DEFAULT_CUDA_ARCHS  # FORCE_CUDA=1
    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", "9.0")
    assert _build_config.cuda_arch_list(fake_torch("13.0", [(8, 6)])) == "9.0"


# --- the torch a prebuilt module was built against -------------------------------------------------------------------
def write_meta(folder: Path, version: str, source_dir: str | None = None, editable: bool = False) -> None:
    meta = _build_config.build_meta(torch, False, None, source_dir or str(ROOT), editable)
    meta["torch_version"] = version
    (folder / _build_config.META_FILE).write_text(json.dumps(meta))


def test_build_meta_mismatch_names_both_versions_and_the_command(tmp_path):
    write_meta(tmp_path, "2.11.0+cpu", editable=True)
    with pytest.raises(ImportError) as err:
        _loader.check_build_meta(tmp_path, running_version="2.14.1+cu130")
    message = str(err.value)
    assert "2.11.0+cpu" in message and "2.14.1+cu130" in message
    assert f"pip install --no-build-isolation -e {ROOT}" in message
    write_meta(tmp_path, "2.11.0+cpu", source_dir="/nonexistent/checkout")
    with pytest.raises(ImportError, match=r"pip install --no-build-isolation <the slade_ext checkout>"):
        _loader.check_build_meta(tmp_path, running_version="2.14.1")


def test_build_meta_match_or_absent_passes(tmp_path):
    _loader.check_build_meta(tmp_path)  # no metadata (an older build): the import itself decides
    write_meta(tmp_path, torch.__version__)
    _loader.check_build_meta(tmp_path)


def test_prebuilt_module_under_another_torch_is_a_clear_error(tmp_path):
    """A copy of the package whose `_C` (a fake: it is never imported) records another torch: importing slade_ext
    stops before the module is loaded, naming both versions and the reinstall command."""
    package = tmp_path / "slade_ext"
    package.mkdir()
    for source in (ROOT / "slade_ext").glob("*.py"):
        shutil.copy(source, package / source.name)
    (package / f"_C{sysconfig.get_config_var('EXT_SUFFIX')}").write_bytes(b"not a real module")
    write_meta(package, "1.13.0")
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    proc = subprocess.run([sys.executable, "-P", "-c", "import slade_ext"], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=120)
    assert proc.returncode != 0
    assert "built against torch 1.13.0" in proc.stderr and f"runs torch {torch.__version__}" in proc.stderr
    assert "pip install --no-build-isolation" in proc.stderr
    assert "undefined symbol" not in proc.stderr and "invalid ELF" not in proc.stderr


def test_setup_py_without_torch_stops_with_the_advice(monkeypatch, capsys):
    """An isolated build (pyproject does not list torch) cannot import torch: setup.py stops with the advice instead
    of compiling against some other torch."""
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ImportError
    monkeypatch.setattr(sys, "argv", ["setup.py", "--version"])
    with pytest.raises(SystemExit) as stop:
        runpy.run_path(str(ROOT / "setup.py"), run_name="__main__")
    assert "--no-build-isolation" in str(stop.value) and "isolated build environment" in str(stop.value)


def test_isolated_build_env_detection():
    overlay = "/tmp/pip-build-env-abc123/overlay/lib/python3.11/site-packages/torch/__init__.py"
    assert _build_config.in_isolated_build_env(overlay)
    assert not _build_config.in_isolated_build_env(torch.__file__)


# --- the JIT build directory's lock ----------------------------------------------------------------------------------
def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def write_owner(build_dir: Path, pid: int) -> None:
    (build_dir / _loader.OWNER_FILE).write_text(json.dumps({"pid": pid, "host": _loader.socket.gethostname()}))


def age(build_dir: Path, seconds: float) -> None:
    past = time.time() - seconds
    for path in [build_dir, *build_dir.iterdir()]:
        os.utime(path, (past, past))


@pytest.fixture
def flock_holder(tmp_path):
    """A live process holding an flock on tmp_path/lock, as torch's FileLock does during a build."""
    code = ("import fcntl, os, sys, time\n"
            "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "print('held', flush=True)\n"
            "time.sleep(120)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "lock")], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    yield proc
    proc.kill()
    proc.wait()


def test_lock_of_a_gone_builder_is_stale_and_cleared(tmp_path, capsys):
    (tmp_path / "lock").touch()
    pid = dead_pid()
    write_owner(tmp_path, pid)
    state, why = _loader.lock_state(tmp_path, stale_after=1200)
    assert state == "stale" and f"pid {pid}" in why
    _loader.await_build_lock(tmp_path, stale_after=1200, sleep=pytest.fail)
    err = capsys.readouterr().err
    assert str(tmp_path / "lock") in err and "stale" in err
    assert not (tmp_path / _loader.OWNER_FILE).exists()
    assert _loader.lock_state(tmp_path, stale_after=1200)[0] == "free"


def test_leftover_lock_file_without_holder_is_free(tmp_path):
    """torch's FileLock leaves the file in place after every build; only an flock on it blocks."""
    (tmp_path / "lock").touch()
    assert _loader.lock_state(tmp_path, stale_after=1200)[0] == "free"


def test_live_builder_is_waited_for(tmp_path, flock_holder, capsys):
    assert _loader.lock_state(tmp_path, stale_after=1200)[0] == "held"
    naps = []

    def sleep(seconds):  # the builder finishes during the first wait
        naps.append(seconds)
        flock_holder.kill()
        flock_holder.wait()

    _loader.await_build_lock(tmp_path, stale_after=1200, sleep=sleep)
    assert len(naps) == 1
    assert "waiting for another process" in capsys.readouterr().err


def test_builder_without_progress_is_an_error_naming_the_lock(tmp_path, flock_holder):
    age(tmp_path, 3600)
    with pytest.raises(RuntimeError) as err:
        _loader.await_build_lock(tmp_path, stale_after=600, sleep=pytest.fail)
    assert str(tmp_path / "lock") in str(err.value) and "delete the lock" in str(err.value)


def test_existence_based_torch_lock(tmp_path, monkeypatch):
    """Older torch waits while the file exists: an ownerless lock is stale once nothing changed for a while, and
    clearing it removes the file."""
    monkeypatch.setattr(_loader, "_torch_lock_is_existence_based", lambda: True)
    (tmp_path / "lock").touch()
    assert _loader.lock_state(tmp_path, stale_after=600)[0] == "held"  # fresh: a build may be running
    write_owner(tmp_path, os.getppid())  # a live owner on this host
    age(tmp_path, 3600)
    assert _loader.lock_state(tmp_path, stale_after=600)[0] == "held"
    (tmp_path / _loader.OWNER_FILE).unlink()
    age(tmp_path, 3600)
    assert _loader.lock_state(tmp_path, stale_after=600)[0] == "stale"
    _loader.await_build_lock(tmp_path, stale_after=600, sleep=pytest.fail)
    assert not (tmp_path / "lock").exists()


def test_jit_load_clears_a_stale_lock_and_says_it_compiles(tmp_path, monkeypatch, capsys):
    """_jit_load with torch's `load` faked: the stale lock of an interrupted build is cleared, the build message names
    the build directory, and the owner record is gone afterwards."""
    import torch.utils.cpp_extension as cpp_extension

    monkeypatch.setenv("SLADE_EXT_BUILD_DIR", str(tmp_path))
    monkeypatch.setenv("FORCE_CUDA", "0")
    monkeypatch.setattr(_loader, "_CSRC", Path(__file__).resolve().parents[2] / "csrc")  # also when installed
    build_dir = _loader._jit_build_dir(False, None)
    (build_dir / "lock").touch()
    write_owner(build_dir, dead_pid())
    calls = []

    def fake_load(**kwargs):
        calls.append(kwargs)
        assert json.loads((build_dir / _loader.OWNER_FILE).read_text())["pid"] == os.getpid()
        return "module"

    monkeypatch.setattr(cpp_extension, "load", fake_load)
    assert _loader._jit_load() == "module"
    assert calls[0]["build_directory"] == str(build_dir) and calls[0]["with_cuda"] is False
    err = capsys.readouterr().err
    assert "stale" in err and "compiling the CPU kernels" in err and str(build_dir) in err and "min" in err
    assert not (build_dir / _loader.OWNER_FILE).exists()


def test_build_message_and_estimate(tmp_path):
    sources = ["a.cpp"] * 9 + ["x.cu"] * 3
    message = _loader.build_message(tmp_path, True, "8.0;9.0", sources)
    assert str(tmp_path) in message and "CUDA kernels (for 8.0;9.0)" in message
    cpu_minutes = _loader.estimated_build_minutes(9, 0, 0, cores=2)
    cuda_minutes = _loader.estimated_build_minutes(12, 3, 2, cores=2)
    assert 1 <= cpu_minutes < cuda_minutes
