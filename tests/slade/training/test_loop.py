"""The one training loop on a toy task: a run stopped anywhere (mid-epoch or at an epoch's end) and resumed ends
bit-identical to an uninterrupted one, random streams included; skipped batches do not count as steps; best.pt
keeps the best validation epoch; every DataLoader gets runtime.workers."""
from pathlib import Path

import pytest
import torch
from torch.utils.data import Dataset

from slade import config
from slade.data.samplers import RandomBatchSampler
from slade.runtime import checkpoint
from slade.runtime.context import RunContext
from slade.runtime.seeding import seed_everything
from slade.training.loop import Loop
from slade.training.optim import build_optimizer, build_scheduler


class Points(Dataset):
    def __init__(self, n=24):
        g = torch.Generator().manual_seed(0)
        self.x, self.y = torch.randn(n, 4, generator=g), torch.randn(n, 1, generator=g)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], int(i), i


class ToyTask:
    """A linear regression whose step also draws from the global torch generator (as augmentations do)."""
    name = "toy"

    def __init__(self, cfg, skip_small=False):
        self.dataset = Points()
        self.model = torch.nn.Linear(4, 1)
        self.optimizer = build_optimizer(self.model.parameters(), cfg.train)
        self.scheduler = build_scheduler(self.optimizer, cfg.train)
        self.sampler = RandomBatchSampler(len(self.dataset), 5, seed=0)  # 24 items: batches of 5, 5, 5, 5, 4
        self.skip_small = skip_small

    def parts(self):
        return {"model": self.model, "optimizer": self.optimizer, "scheduler": self.scheduler}

    def train(self):
        self.model.train()

    def step(self, batch, global_step):
        if self.skip_small and len(batch["indices"]) < 5:
            return None
        x = batch["images"] + 0.1 * torch.randn(batch["images"].shape)
        loss = ((self.model(x) - self.dataset.y[batch["indices"]]) ** 2).mean()
        return loss, {"noise": float(x.sum())}


def collate_points(items):
    return {"images": torch.stack([it[0] for it in items]), "labels": torch.tensor([it[1] for it in items]),
            "indices": torch.tensor([it[2] for it in items]), "skipped": []}


class Stop(Exception):
    pass


def make_loop(tmp_path, name, resume=False, checkpoint_every=2, on_step_end=(), skip_small=False, validate=None):
    cfg = config.Config()
    cfg.train.epochs, cfg.runtime.out_dir = 3, str(tmp_path / name)
    ctx = RunContext.from_config(cfg, progress=False, resume=resume)
    seed_everything(ctx.seed)
    task = ToyTask(cfg, skip_small)
    return Loop(task, ctx, Path(cfg.runtime.out_dir), 3, config.to_dict(cfg), validate=validate,
                checkpoint_every=checkpoint_every, on_step_end=on_step_end)


@pytest.fixture(autouse=True)
def plain_collate(monkeypatch):
    import slade.training.loop as loop_module

    monkeypatch.setattr(loop_module, "collate_skipping_unreadable", collate_points)


@pytest.mark.parametrize("stop_at", [3, 5, 9])  # mid-epoch 1 (after a checkpoint), end of epoch 1, mid-epoch 2
def test_resume_anywhere_equals_an_uninterrupted_run(tmp_path, stop_at):
    straight = make_loop(tmp_path, "a")
    full = straight.run()

    def stop(step, row):
        if step == stop_at:
            raise Stop

    with pytest.raises(Stop):
        make_loop(tmp_path, "b", on_step_end=[stop]).run()
    resumed = make_loop(tmp_path, "b", resume=True)
    again = resumed.run()
    assert again.steps == full.steps and [r["loss"] for r in again.history] == [r["loss"] for r in full.history]
    for key, value in straight.task.model.state_dict().items():
        assert torch.equal(value, resumed.task.model.state_dict()[key])
    strip = lambda text: [line for line in text.splitlines()]  # noqa: E731
    assert strip((tmp_path / "a" / "steps.jsonl").read_text()) == strip((tmp_path / "b" / "steps.jsonl").read_text())


def test_without_resume_a_stopped_run_starts_over(tmp_path):
    full = make_loop(tmp_path, "a").run()
    make_loop(tmp_path, "b").run()
    again = make_loop(tmp_path, "b").run()  # resume off: last.pt is ignored and overwritten
    assert again.steps == full.steps and len(again.history) == 3


def test_skipped_batches_are_not_steps(tmp_path):
    result = make_loop(tmp_path, "a", skip_small=True).run()
    assert len(result.steps) == 3 * 4 and [r["step"] for r in result.steps] == list(range(1, 13))


def test_best_checkpoint_keeps_the_best_validation_epoch(tmp_path):
    scores = iter([0.2, 0.5, 0.4])
    loop = make_loop(tmp_path, "a", validate=lambda model, skip_log: {"map_at_r": next(scores), "r_precision": 0.0,
                                                                        "precision_at_1": 0.0})
    result = loop.run()
    assert result.best == {"epoch": 2, "map_at_r": 0.5}
    best = checkpoint.load(tmp_path / "a" / "best.pt", keys=("format", "model", "epoch"))
    assert best["epoch"] == 2 and best["stage"] == "toy" and best["val"]["map_at_r"] == 0.5
    last = checkpoint.load(tmp_path / "a" / "last.pt", keys=("format", "model", "optimizer", "rng"))
    assert last["epoch"] == 3 and last["history"][1]["val"]["map_at_r"] == 0.5


def test_every_dataloader_gets_the_workers(tmp_path, monkeypatch):
    """runtime.workers reaches the training loader (and, through the context, embedding and pseudo labels: see
    test_workers_reach_every_loader in tests/e2e)."""
    import slade.training.loop as loop_module

    seen = []
    real = loop_module.DataLoader

    def spy(*args, **kwargs):
        seen.append(kwargs["num_workers"])
        return real(*args, **kwargs)

    monkeypatch.setattr(loop_module, "DataLoader", spy)
    loop = make_loop(tmp_path, "a")
    object.__setattr__(loop.ctx, "workers", 2)
    loop.run()
    assert seen == [2, 2, 2]
