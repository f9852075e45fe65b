"""The SLADE pipeline end to end: `slade run` through the CLI on a tiny glyph set, a run interrupted in the middle of
the student stage that resumes to the same final metrics, rounds with the 4-fold protocol, and the refusal of more
clusters than unlabeled images."""
import json
from pathlib import Path

import pytest
import torch

from slade import config
from slade.runtime import checkpoint
from slade.cli.main import main
from slade.pipeline.selftrain import run_selftrain
from slade_ext.basis import FeatureBasis
from helpers.configs import quiet_context, tiny_selftrain_config
from helpers.images import write_image

STAGE_FILES = {"init": {"init.pt", "last.pt", "result.json"},
               "teacher": {"best.pt", "last.pt", "result.json", "test_metrics.json"},
               "round1/pseudo": {"pseudo_labels.pt", "quality.json", "result.json"},
               "round1/student": {"best.pt", "last.pt", "result.json", "steps.jsonl", "test_metrics.json"}}
PLOTS = ("compare.png", "pseudo_labels.png", "basis_stats.png", "selected_pairs.png")


class Interrupted(Exception):
    pass


def pipeline(cfg, resume=False, on_step_end=()):
    return run_selftrain(cfg, quiet_context(cfg, resume), on_step_end=on_step_end)


def test_slade_run_through_the_cli(tmp_path, capsys):
    cfg = tiny_selftrain_config(tmp_path)
    cfg_file = tmp_path / "slade.yaml"
    config.save(cfg, cfg_file)
    out = tmp_path / "cli"
    assert main(["run", "--config", str(cfg_file), "--out-dir", str(out), "--student.selection", "agree",
                 "--no-progress"]) == 0
    printed = json.loads(capsys.readouterr().out)
    for stage, files in STAGE_FILES.items():
        assert files <= {p.name for p in (out / stage).iterdir()}, stage
    for png in PLOTS:
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads((out / "report.json").read_text())
    assert report["config"]["student"]["selection"] == "agree"
    assert set(report["test"]) == {"teacher", "student_round1"} and report["test"] == printed["test"]
    assert report["test"]["teacher"] == json.loads((out / "teacher" / "test_metrics.json").read_text())
    pseudo = report["runs"][0]["rounds"][0]["pseudo"]
    assert pseudo["k"] == cfg.pseudo.k and 0 < pseudo["purity"] <= 1
    steps = [json.loads(line) for line in (out / "round1" / "student" / "steps.jsonl").read_text().splitlines()]
    assert steps[0]["warmup"] and not steps[-1]["warmup"] and "pairs_pos" in steps[-1]
    assert all(0 < s["mu_pos"] <= 1 for s in steps)
    trained = [s for s in steps if not s["warmup"] and s["pairs_pos"]]
    assert trained and all(0 <= s["pos_precision"] <= 1 for s in trained)
    pairs = report["runs"][0]["rounds"][0]["pairs"]
    assert pairs["pairs_pos"] == pytest.approx(sum(s["pairs_pos"] for s in steps if not s["warmup"])
                                               / sum(not s["warmup"] for s in steps))
    md = (out / "report.md").read_text()
    assert "| teacher |" in md and "| student round1 |" in md and "selection agree" in md


def test_cli_refuses_more_clusters_than_unlabeled_images(tmp_path, capsys):
    cfg = tiny_selftrain_config(tmp_path)
    cfg.pseudo.k = 10_000
    cfg_file = tmp_path / "k.yaml"
    config.save(cfg, cfg_file)
    assert main(["run", "--config", str(cfg_file), "--no-progress"]) == 2
    assert "pseudo.k=10000 clusters but the unlabeled set has only" in capsys.readouterr().err
    assert not (tmp_path / "run" / "init").exists()  # refused before any training
    assert main(["run", "--config", str(cfg_file), "--pseudo.k", "3", "--no-progress"]) == 2
    assert "student.unlabeled_batch / student.unlabeled_m = 4 clusters per batch" in capsys.readouterr().err


def test_resume_in_the_middle_of_the_student_equals_an_uninterrupted_run(tmp_path):
    straight = tiny_selftrain_config(tmp_path / "a", student_epochs=3)
    resumed = tiny_selftrain_config(tmp_path / "b", student_epochs=3)
    resumed.data.cache_dir = straight.data.cache_dir
    full = pipeline(straight)

    def stop(step, row):
        if step == 4:  # step 1 of epoch 2 (three steps per epoch), after its mid-epoch checkpoint
            raise Interrupted

    with pytest.raises(Interrupted):
        pipeline(resumed, on_step_end=[stop])
    saved = checkpoint.load(tmp_path / "b" / "run" / "round1" / "student" / "last.pt")
    assert (saved["epoch"], saved["step_in_epoch"], saved["global_step"]) == (1, 1, 4)
    assert not (tmp_path / "b" / "run" / "round1" / "student" / "result.json").exists()
    finished = pipeline(resumed, resume=True)

    assert finished["test"] == full["test"]
    a, b = (tmp_path / x / "run" / "round1" / "student" for x in ("a", "b"))
    for name in ("best.pt", "last.pt"):
        wa, wb = checkpoint.load(a / name)["model"], checkpoint.load(b / name)["model"]
        assert all(torch.equal(wa[k], wb[k]) for k in wa), name
    strip = lambda text: [{k: v for k, v in json.loads(line).items() if k != "seconds"}  # noqa: E731
                          for line in text.splitlines()]
    assert strip((a / "steps.jsonl").read_text()) == strip((b / "steps.jsonl").read_text())
    assert strip((a / "metrics.jsonl").read_text()) == strip((b / "metrics.jsonl").read_text())


@pytest.mark.parametrize("restart", [True, False])
def test_averages_restart_once_when_the_warmup_ends(tmp_path, monkeypatch, restart):
    cfg = tiny_selftrain_config(tmp_path, student_epochs=1)
    cfg.student.warmup_steps, cfg.student.restart_averages = 2, restart
    steps_done, restarted_after = [0], []
    original = FeatureBasis.restart_averages

    def spy(self):
        restarted_after.append(steps_done[0])
        original(self)

    monkeypatch.setattr(FeatureBasis, "restart_averages", spy)
    pipeline(cfg, on_step_end=[lambda step, row: steps_done.__setitem__(0, step)])
    assert steps_done[0] > 2
    assert restarted_after == ([2] if restart else [])


@pytest.mark.parametrize("fraction", [0.25, 1.0])
def test_the_warmup_takes_at_most_its_share_of_the_students_steps(tmp_path, fraction):
    cfg = tiny_selftrain_config(tmp_path, student_epochs=2)
    cfg.student.warmup_steps, cfg.student.warmup_max_fraction = 100, fraction
    pipeline(cfg)
    rows = [json.loads(line) for line in (tmp_path / "run" / "round1" / "student" / "steps.jsonl").open()]
    warm = [row["step"] for row in rows if row["warmup"]]
    assert len(rows) > 4 and warm == list(range(1, len(warm) + 1))
    assert len(warm) == min(100, int(fraction * len(rows)))


def test_rounds_and_folds_concatenate_the_fold_models(tmp_path):
    cfg = tiny_selftrain_config(tmp_path, student_epochs=1)
    cfg.selftrain.rounds, cfg.selftrain.folds = 2, 2
    cfg.train.epochs, cfg.student.init = 1, "teacher"
    cfg.student.labeled_batch = 8  # two classes x 4 per batch: each fold trains on half the labeled classes
    report = pipeline(cfg)
    out = tmp_path / "run"
    assert set(report["test"]) == {"teacher", "student_round1", "student_round2"}
    assert len(report["runs"]) == 2 and all(len(run["rounds"]) == 2 for run in report["runs"])
    for fold in ("fold1", "fold2"):
        assert (out / fold / "round2" / "student" / "best.pt").is_file()
    # Round 2 clusters with round 1's student, not with the teacher.
    r1 = torch.load(out / "fold1" / "round1" / "pseudo" / "pseudo_labels.pt")["labels"]
    r2 = torch.load(out / "fold1" / "round2" / "pseudo" / "pseudo_labels.pt")["labels"]
    assert not torch.equal(r1, r2)
    single = json.loads((out / "fold1" / "teacher" / "test_metrics.json").read_text())
    assert report["test"]["teacher"] != single  # the concatenated embedding, not fold 1's alone


@pytest.mark.parametrize("path", sorted(Path(__file__).resolve().parents[2].glob("configs/*.yaml")))
def test_shipped_configs_load(path):
    cfg = config.validate(config.load(path), filesystem=False)
    assert cfg.pseudo.k > 0 and cfg.runtime.out_dir.startswith("runs/")


def test_photo_folders_with_an_unlabeled_folder(tmp_path):
    """The photo path (3 channels, crop/flip transforms, flipped views) on a folder-per-class tree plus an
    unlabeled image folder, the layout of CompCars / Fashion-200k."""
    for c in range(8):
        for i in range(4):
            write_image(tmp_path / "labeled" / f"class{c}" / f"{i}.png", seed=10 * c + i)
    for i in range(12):
        write_image(tmp_path / "unlabeled" / f"{i}.png", seed=100 + i)
    cfg = tiny_selftrain_config(tmp_path, student_epochs=1)
    cfg.data.name, cfg.data.root = "folders", str(tmp_path / "labeled")
    cfg.data.unlabeled_root = str(tmp_path / "unlabeled")
    cfg.data.channels, cfg.data.image_size, cfg.data.val_fraction = 3, 16, 0.0
    cfg.train.epochs, cfg.train.batch_size, cfg.student.labeled_batch, cfg.pseudo.k = 1, 8, 8, 3
    cfg.selfsup.batch_size, cfg.student.unlabeled_batch = 16, 8  # 4 labeled classes x 4 + 12 unlabeled images
    with pytest.warns(UserWarning, match="chosen on the test set"):
        report = pipeline(cfg)
    assert report["benchmark"] == "folders" and report["sizes"]["unlabeled"] == 12
    assert "purity" not in report["runs"][0]["rounds"][0]["pseudo"]  # no hidden labels: nothing to compare with


def test_slade_run_defaults_to_the_cpu_glyph_preset(monkeypatch, capsys):
    import slade.pipeline.selftrain

    seen = {}

    def fake_run(cfg, ctx):
        seen.update(cfg=cfg, ctx=ctx)
        return {"test": {}, "seconds": 0.0}

    monkeypatch.setattr(slade.pipeline.selftrain, "run_selftrain", fake_run)
    assert main(["run", "--student.epochs", "3", "--resume"]) == 0
    cfg, preset = seen["cfg"], config.preset("glyphs_cpu")
    assert cfg.data.n_novel_classes == preset.data.n_novel_classes and cfg.model.width == preset.model.width == 16
    assert cfg.student.epochs == 3 and cfg.runtime.out_dir == "runs/slade" and seen["ctx"].resume
    assert seen["ctx"].progress
    assert json.loads(capsys.readouterr().out)["out_dir"] == "runs/slade"


def test_workers_reach_every_loader(tmp_path, monkeypatch):
    """runtime.workers reaches every DataLoader of a run: the training loops, validation and test embedding, and
    the embedding of the unlabeled set for the pseudo labels."""
    from torch.utils.data import DataLoader

    cfg = tiny_selftrain_config(tmp_path, student_epochs=1)
    cfg.runtime.workers, cfg.train.epochs = 1, 1
    made = []
    real_init = DataLoader.__init__

    def spy(self, *args, **kwargs):
        made.append((kwargs.get("num_workers"), type(kwargs.get("batch_sampler")).__name__))
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(DataLoader, "__init__", spy)
    pipeline(cfg)
    assert len(made) >= 6 and all(workers == 1 for workers, _ in made), made


def test_unreadable_unlabeled_images_are_reported_by_path(tmp_path):
    from helpers.images import write_corrupt

    for c in range(8):
        for i in range(4):
            write_image(tmp_path / "labeled" / f"class{c}" / f"{i}.png", seed=10 * c + i)
    for i in range(12):
        write_image(tmp_path / "unlabeled" / f"{i}.png", seed=100 + i)
    bad = write_corrupt(tmp_path / "unlabeled" / "broken.png")
    cfg = tiny_selftrain_config(tmp_path, student_epochs=1)
    cfg.data.name, cfg.data.root, cfg.data.unlabeled_root = "folders", str(tmp_path / "labeled"), str(tmp_path / "unlabeled")
    cfg.data.channels, cfg.data.image_size, cfg.data.val_fraction = 3, 16, 0.25
    cfg.train.epochs, cfg.train.batch_size, cfg.student.labeled_batch, cfg.pseudo.k = 1, 8, 8, 3
    cfg.selfsup.batch_size, cfg.student.unlabeled_batch = 16, 8
    with pytest.warns(UserWarning, match=rf"pseudo labels: skipped 1 unreadable image\(s\) in 'unlabeled': {bad}"):
        report = pipeline(cfg)
    assert report["sizes"]["unlabeled"] == 12  # the readable ones: 13 listed, 1 broken
    assert report["skipped"]["pseudo_labels"] == {"unlabeled": [str(bad)]}
    assert report["runs"][0]["rounds"][0]["pseudo"]["n"] == 12
    assert "Readable images:" in (tmp_path / "run" / "report.md").read_text()
