"""The `slade` command line end to end: train-teacher on a tiny glyph run, evaluate its checkpoint, info."""
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

import slade
from slade import config
from slade.cli.main import main
from helpers.configs import tiny_glyph_config

RUN_FILES = {"config.yaml", "metrics.jsonl", "last.pt", "best.pt", "curves.png", "test_metrics.json",
             "recall_at_k.png", "retrievals.png"}


def test_train_teacher_then_evaluate(tmp_path, capsys):
    cfg = tiny_glyph_config(tmp_path, epochs=2)
    cfg_file = tmp_path / "teacher.yaml"
    config.save(cfg, cfg_file)
    out = tmp_path / "cli_run"
    code = main(["train-teacher", "--config", str(cfg_file), "--set", "train.lr=2e-3", "--runtime.out_dir", str(out),
                 "--runtime.seed", "3", "--no-progress"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert RUN_FILES <= {p.name for p in out.iterdir()}
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["train"]["lr"] == 2e-3 and saved["runtime"]["seed"] == 3 and saved["runtime"]["out_dir"] == str(out)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r.get("epoch") for r in rows] == [1, 2, None]
    assert json.loads((out / "test_metrics.json").read_text()) == result["test"]
    for png in ("curves.png", "recall_at_k.png", "retrievals.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    code = main(["evaluate", "--checkpoint", str(out / "best.pt"), "--eval.clustering", "false", "--no-progress"])
    assert code == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["epoch"] == result["best_epoch"]
    for key in ("map_at_r", "r_precision", "precision_at_1", "recall_at_1", "recall_at_2"):
        assert evaluated["test"][key] == result["test"][key]
    assert "nmi" not in evaluated["test"]
    assert {"test_metrics.json", "retrievals.png", "config.yaml"} <= {p.name for p in (out / "eval").iterdir()}


def test_resume_flag_continues_the_run(tmp_path, capsys):
    cfg = tiny_glyph_config(tmp_path, epochs=1)
    cfg_file = tmp_path / "c.json"
    cfg_file.write_text(json.dumps(config.to_dict(cfg)))
    log = Path(cfg.runtime.out_dir) / "metrics.jsonl"
    assert main(["train-teacher", "--config", str(cfg_file), "--no-progress"]) == 0
    first_epoch = json.loads(log.read_text().splitlines()[0])
    assert main(["train-teacher", "--config", str(cfg_file), "--train.epochs=2", "--resume", "--no-progress"]) == 0
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r.get("epoch") for r in rows] == [1, 2, None]
    assert rows[0] == first_epoch  # epoch 1 comes from the checkpoint, not from training it again


def test_bad_config_is_a_clear_error(tmp_path, capsys):
    assert main(["train-teacher", "--set", "train.lrr=1", "--no-progress"]) == 2
    assert "unknown config field 'train.lrr'" in capsys.readouterr().err
    assert main(["train-teacher", "--train.epochs", "many"]) == 2
    assert "train.epochs: expected int" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  backbone: resnet9000\n")
    assert main(["train-teacher", "--config", str(bad), "--out-dir", str(tmp_path / "x"), "--data.cache_dir",
                 str(tmp_path / "cache"), "--no-progress"]) == 2
    assert "model.backbone" in capsys.readouterr().err


def test_info_runs_as_a_module(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(Path(slade.__file__).resolve().parents[1]))
    # Outside the checkout, so that the installed slade_ext is imported (test_info.py says why).
    proc = subprocess.run([sys.executable, "-m", "slade", "info"], capture_output=True, text=True, env=env,
                          timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert "uses_gpu" in report["faiss"] and report["torch"]


def test_evaluate_takes_paths_from_the_user_not_the_checkpoint(tmp_path, capsys):
    """A crafted checkpoint cannot choose where files are read or written: path fields come from the command line
    (or its config), everything else from the checkpoint's config."""
    import torch

    cfg = tiny_glyph_config(tmp_path, epochs=1)
    cfg_file = tmp_path / "teacher.yaml"
    config.save(cfg, cfg_file)
    assert main(["train-teacher", "--config", str(cfg_file), "--no-progress"]) == 0
    capsys.readouterr()
    best = Path(cfg.runtime.out_dir) / "best.pt"
    state = torch.load(best, weights_only=True)
    evil = tmp_path / "evil"
    state["config"]["data"]["cache_dir"] = str(evil / "cache")
    state["config"]["runtime"]["out_dir"] = str(evil / "out")
    state["config"]["eval"]["recall_ks"] = [1, 3]  # a non-path field: taken from the checkpoint
    crafted = tmp_path / "crafted.pt"
    torch.save(state, crafted)
    assert main(["evaluate", "--checkpoint", str(crafted), "--config", str(cfg_file), "--no-progress"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert not evil.exists()
    assert "recall_at_3" in evaluated["test"]
    saved = yaml.safe_load((tmp_path / "eval" / "config.yaml").read_text())
    assert saved["data"]["cache_dir"] == cfg.data.cache_dir


def test_damaged_checkpoint_is_a_clear_cli_error(tmp_path, capsys):
    bad = tmp_path / "best.pt"
    bad.write_bytes(b"")
    assert main(["evaluate", "--checkpoint", str(bad), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "is empty (0 bytes)" in err and "Traceback" not in err


def test_damaged_last_checkpoint_on_resume_names_the_file(tmp_path, capsys):
    cfg = tiny_glyph_config(tmp_path, epochs=1)
    cfg_file = tmp_path / "teacher.yaml"
    config.save(cfg, cfg_file)
    assert main(["train-teacher", "--config", str(cfg_file), "--no-progress"]) == 0
    last = Path(cfg.runtime.out_dir) / "last.pt"
    last.write_bytes(last.read_bytes()[:100])  # a write cut short (what a crash of an older version could leave)
    capsys.readouterr()
    assert main(["train-teacher", "--config", str(cfg_file), "--train.epochs", "2", "--resume", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"{last}: is not a readable teacher checkpoint (truncated or corrupt" in err
    assert "delete it to redo its stage, or run without --resume" in err
