"""`slade info`: the slade_ext build facts, whether its CUDA kernels will run here, the faiss build and the fonts the
glyph benchmark finds."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import slade
import slade_ext
from slade.cli import info, main


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict:
    # Run outside the checkout: `python -m` puts the working directory first on sys.path, and the checkout's
    # slade_ext (sources, no prebuilt module in a clean clone) would then be JIT-built instead of the installed one.
    env = dict(os.environ, PYTHONPATH=str(Path(slade.__file__).resolve().parents[1]))
    proc = subprocess.run([sys.executable, "-m", "slade", "info"], capture_output=True, text=True, env=env,
                          timeout=300, cwd=tmp_path_factory.mktemp("info"))
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_reports_the_build_facts(report):
    kernels = report["slade_ext"]
    facts = slade_ext.build_info()
    for key in ("cuda_compiled", "cuda_archs", "openmp", "torch_version", "backend"):
        assert kernels[key] == facts[key]
    expected = facts["cuda_compiled"] and torch.cuda.is_available()
    assert kernels["cuda_kernels_will_run"] is expected and report["cuda_kernels_will_run"] is expected


def test_reports_the_fonts(report):
    fonts = report["fonts"]
    assert fonts["source"] == "fc-list" and fonts["classes"] > 1000
    assert fonts["distinct_faces"] == len(fonts["faces"]) == len(set(fonts["faces"]))
    assert all(isinstance(name, str) and "#" in name for name in fonts["faces"])
    assert fonts["enough"] is (fonts["distinct_faces"] >= fonts["min_faces"])


def test_faiss_and_devices_still_reported(report):
    assert "uses_gpu" in report["faiss"] and report["torch"] == torch.__version__
    assert len(report["cuda_devices"]) == torch.cuda.device_count()


@pytest.mark.parametrize("compiled, gpu, expected", [(True, True, True), (True, False, False), (False, True, False)])
def test_cuda_kernels_will_run_needs_both(monkeypatch, compiled, gpu, expected):
    monkeypatch.setattr(slade_ext, "build_info", lambda: {"cuda_compiled": compiled, "backend": "prebuilt"})
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpu)
    assert info.kernels_report()["cuda_kernels_will_run"] is expected


def test_unloadable_kernels_are_reported_not_raised(monkeypatch, tmp_path, capsys):
    def broken():
        raise ImportError("slade_ext: the prebuilt kernels were built against torch 1.0")

    monkeypatch.setattr(slade_ext, "build_info", broken)
    assert main(["info", "--fonts-dir", str(tmp_path)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert "built against torch 1.0" in report["slade_ext"]["error"]
    assert report["cuda_kernels_will_run"] is False


def test_fonts_from_a_directory(tmp_path):
    empty = info.fonts_report(str(tmp_path))
    assert (empty["source"], empty["distinct_faces"], empty["faces"], empty["enough"]) == (str(tmp_path), 0, [], False)
    missing = info.fonts_report(str(tmp_path / "nope"))
    assert missing["distinct_faces"] == 0 and "not a directory" in missing["error"]
    system = info.fonts_report()
    if system["distinct_faces"] < 2:
        pytest.skip("fewer than two covering CJK faces installed")
    from slade.data.glyphs import classes
    from slade.data.glyphs.fonts import select_faces

    chars = list(classes.train_characters()) + list(classes.test_characters())
    pair = tmp_path / "two"  # a new directory: the discovery is cached per directory
    pair.mkdir()
    for face in select_faces(chars, None, 2, 0):
        (pair / os.path.basename(face.path)).symlink_to(face.path)
    two = info.fonts_report(str(pair))  # the files of two faces (a collection file may hold more)
    assert two["distinct_faces"] >= 2 and two["enough"] is (two["distinct_faces"] >= 4)
