"""Teacher training: learns on the glyphs, repeatable from its seed, and a resumed run equals an uninterrupted one."""
import json
from pathlib import Path

import pytest
import torch

from slade.data.benchmark import build_benchmark
from slade.runtime import checkpoint
from slade.stages.teacher import train_teacher
from helpers.configs import quiet_context, tiny_glyph_config


def teach(cfg, resume=False, **kwargs):
    """The teacher stage of `cfg` into its runtime.out_dir."""
    return train_teacher(cfg, build_benchmark(cfg.data), quiet_context(cfg, resume), Path(cfg.runtime.out_dir),
                         **kwargs)


class Interrupted(Exception):
    pass


def stop_after(epoch_to_stop):
    def hook(epoch, row):
        if epoch == epoch_to_stop:
            raise Interrupted

    return hook


def weights(path):
    return checkpoint.load(path)["model"]


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_resume_equals_uninterrupted_run(tmp_path):
    straight = tiny_glyph_config(tmp_path / "straight", epochs=3)
    resumed = tiny_glyph_config(tmp_path / "resumed", epochs=3)
    resumed.data.cache_dir = straight.data.cache_dir
    full = teach(straight)

    with pytest.raises(Interrupted):
        teach(resumed, on_epoch_end=[stop_after(2)])
    assert checkpoint.load(tmp_path / "resumed" / "run" / "last.pt")["epoch"] == 2
    finished = teach(resumed, resume=True)

    assert (finished.metrics, finished.best_epoch, finished.history[-1]["val"]) == (
        full.metrics, full.best_epoch, full.history[-1]["val"])
    run_a, run_b = tmp_path / "straight" / "run", tmp_path / "resumed" / "run"
    assert_same_weights(weights(run_a / "last.pt"), weights(run_b / "last.pt"))
    assert_same_weights(weights(run_a / "best.pt"), weights(run_b / "best.pt"))
    log_a = [json.loads(line) for line in (run_a / "metrics.jsonl").read_text().splitlines()]
    log_b = [json.loads(line) for line in (run_b / "metrics.jsonl").read_text().splitlines()]
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip(log_a) == strip(log_b) and [r.get("epoch") for r in log_b] == [1, 2, 3, None]


def test_options_run_and_best_epoch_is_kept(tmp_path):
    cfg = tiny_glyph_config(tmp_path, epochs=4)
    cfg.loss.name, cfg.loss.miner, cfg.train.optimizer = "contrastive", "none", "rmsprop"
    cfg.train.lr, cfg.train.warmup_epochs, cfg.train.scheduler, cfg.train.step_size = 1e-3, 2, "step", 1
    result = teach(cfg)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in rows if "epoch" in r]
    assert [r["lr"] for r in epochs] == pytest.approx([5e-4, 1e-3, 1e-3, 1e-4])  # 2 warm-up epochs, then x0.1 per epoch
    best = max(epochs, key=lambda r: r["val"]["map_at_r"])  # first of equals, as the teacher keeps it
    assert result.best_epoch == best["epoch"] == checkpoint.load(tmp_path / "run" / "best.pt")["epoch"]
    assert result.best_val_map_at_r == best["val"]["map_at_r"]
    assert rows[-1]["event"] == "test" and rows[-1]["test"] == result.metrics


def test_teacher_fits_its_training_classes(tmp_path):
    """Multi-similarity loss + miner wired to the optimizer: after training, the labeled images retrieve their own
    class far better than with the same network untrained. (Generalising to unseen classes needs more faces and
    epochs than a unit test affords; see the report's small glyph run.)"""
    from slade.data.transforms import eval_transform
    from slade.evaluation.embedding import embed
    from slade.evaluation.metrics import retrieval_metrics
    from slade.models import build_model

    cfg = tiny_glyph_config(tmp_path, epochs=3)
    cfg.train.visits_per_class = 4
    teach(cfg)
    labeled = build_benchmark(cfg.data).labeled

    def labeled_map_at_r(model):
        emb, labels, _ = embed(model, labeled, eval_transform(cfg.data, False), quiet_context(cfg))
        return retrieval_metrics(emb, labels, recall_ks=(1,))["map_at_r"]

    torch.manual_seed(0)
    model = build_model(cfg.model, cfg.data.channels, cfg.data.image_size)
    before = labeled_map_at_r(model)
    model.load_state_dict(checkpoint.load(tmp_path / "run" / "last.pt")["model"])
    assert labeled_map_at_r(model) > before + 0.2


def test_same_seed_same_run_other_seed_other_run(tmp_path):
    a = tiny_glyph_config(tmp_path / "a", epochs=1)
    b = tiny_glyph_config(tmp_path / "b", epochs=1)
    c = tiny_glyph_config(tmp_path / "c", epochs=1)
    c.runtime.seed = 7
    for cfg in (b, c):
        cfg.data.cache_dir = a.data.cache_dir
    results = [teach(cfg) for cfg in (a, b, c)]
    assert results[0].metrics == results[1].metrics and results[0].history[0]["loss"] == results[1].history[0]["loss"]
    assert_same_weights(weights(tmp_path / "a" / "run" / "last.pt"), weights(tmp_path / "b" / "run" / "last.pt"))
    assert not torch.equal(weights(tmp_path / "a" / "run" / "last.pt")["head.weight"],
                           weights(tmp_path / "c" / "run" / "last.pt")["head.weight"])
