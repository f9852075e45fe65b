"""`slade run` under torchrun (two gloo processes on this machine) against one process with the same global batch:
the same pseudo labels, loss curves equal up to float reduction order, the same test metrics within a small
tolerance; a two-process run killed on one rank in the middle of the student stage resumes to the very result of
an uninterrupted one.

The runs train without a miner (loss.miner=none) and without confident-pair selection (student.selection=none,
the basis still trains): with the multi-similarity miner, a pair whose similarity sits within float rounding of the
miner's epsilon margin is taken by one run and not the other, and the loss curves then drift apart by a few per cent
over a handful of steps (measured: up to 6% by the ninth student step here). The selection's thresholds
(s >= mu+) are the same kind of edge: with the 44 faces found since the full font list is installed, one flipped
pair moved the seventh student step's loss by 0.16%."""
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from slade import config
from helpers.configs import tiny_selftrain_config

pytestmark = pytest.mark.skipif(not torch.distributed.is_gloo_available(), reason="needs torch.distributed's gloo")

STAGES = ("init", "teacher", "round1/student")


def command(cfg_file, out, processes, *extra):
    """The command line; run it outside the checkout (cwd), so that the installed slade_ext is the one imported."""
    slade = ["-m", "slade", "run", "--config", str(cfg_file), "--runtime.out_dir", str(out), "--no-progress", *extra]
    if processes == 1:
        return [sys.executable, *slade]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}", *slade]


def run(cfg_file, out, processes, *extra):
    proc = subprocess.run(command(cfg_file, out, processes, *extra), capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, OMP_NUM_THREADS="1"), cwd=out.parent)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def losses(out, stage):
    return [s["loss"] for s in json.loads((out / stage / "result.json").read_text())["steps"]]


def pseudo_labels(out):
    return torch.load(out / "round1" / "pseudo" / "pseudo_labels.pt", weights_only=True)["labels"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("torchrun")
    cfg = tiny_selftrain_config(root, student_epochs=3)
    cfg.loss.miner = "none"
    cfg.student.selection = "none"
    cfg_file = root / "tiny.yaml"
    config.save(cfg, cfg_file)
    one, two = root / "one", root / "two"
    run(cfg_file, one, 1)
    printed = run(cfg_file, two, 2).stdout
    return root, cfg_file, one, two, printed


def test_two_processes_equal_one_up_to_reduction_order(runs):
    _, _, one, two, printed = runs
    assert printed.count('"seconds"') == 1  # one report per job, from rank 0
    assert torch.equal(pseudo_labels(one), pseudo_labels(two))
    for stage in STAGES:
        a, b = losses(one, stage), losses(two, stage)
        assert len(a) == len(b) and b == pytest.approx(a, rel=1e-3), stage
    test_one = json.loads((one / "report.json").read_text())["test"]
    test_two = json.loads((two / "report.json").read_text())["test"]
    for model in test_one:
        for key in ("map_at_r", "r_precision", "precision_at_1"):
            assert test_two[model][key] == pytest.approx(test_one[model][key], abs=0.05), (model, key)


def test_two_process_run_killed_on_one_rank_resumes_to_the_same_result(runs):
    root, cfg_file, _, two, _ = runs
    out = root / "killed"
    proc = subprocess.Popen(command(cfg_file, out, 2), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=dict(os.environ, OMP_NUM_THREADS="1"), start_new_session=True, cwd=root)
    checkpoint = out / "round1" / "student" / "last.pt"
    deadline = time.time() + 300
    while not checkpoint.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.kill(_rank_pid(proc.pid, rank=1), signal.SIGKILL)  # one rank dies; torchrun then stops the other
    proc.wait(timeout=120)
    assert proc.returncode != 0 and not (out / "report.json").exists()

    run(cfg_file, out, 2, "--resume")
    assert json.loads((out / "report.json").read_text())["test"] == json.loads((two / "report.json").read_text())["test"]
    for stage in STAGES:
        assert losses(out, stage) == losses(two, stage), stage


def _rank_pid(launcher: int, rank: int) -> int:
    """The pid of the worker with RANK=rank under the torchrun launcher `launcher`."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            stat = (entry / "stat").read_text().split()
        except OSError:
            continue
        if f"RANK={rank}".encode() in environ and int(stat[3]) == launcher:
            return int(entry.name)
    raise AssertionError(f"no worker of rank {rank} under {launcher}")


def test_an_error_on_the_ranks_names_the_rank_and_stops_the_job(tmp_path):
    cfg_file = tmp_path / "tiny.yaml"
    config.save(tiny_selftrain_config(tmp_path), cfg_file)
    proc = subprocess.run(command(cfg_file, tmp_path / "bad", 2, "--student.epochs", "-1"), capture_output=True,
                          text=True, timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"), cwd=tmp_path)
    assert proc.returncode != 0
    # Both ranks fail; torchrun stops the job at the first failure, so the other rank may be killed before it
    # prints (a clean-clone CI run saw only rank 0's line once). Each line that is printed names its rank.
    named = re.findall(r"slade run \(rank ([01]) of 2\): error: invalid config: student\.epochs: got -1", proc.stderr)
    assert named, proc.stderr[-2000:]
