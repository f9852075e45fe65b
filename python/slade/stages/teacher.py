"""Stage 2 of SLADE (docs/method.md): the teacher, backbone + embedding head trained on the labeled set with a
ranking loss through the one training loop, validated every epoch on the validation classes; the best epoch by
validation MAP@R is kept and tested.

Stage directory: config.yaml, the loop's files (last.pt, best.pt, metrics.jsonl, steps.jsonl, curves.png), the
test files (test_metrics.json, recall_at_k.png, retrievals.png) and result.json."""
from __future__ import annotations

from pathlib import Path

from slade import config
from slade.data.benchmark import Benchmark
from slade.data.samplers import MPerClassBatchSampler
from slade.data.torch_dataset import ImageDataset
from slade.data.transforms import train_transform
from slade.models import build_model
from slade.runtime.context import RunContext
from slade.runtime.stage_result import StageResult
from slade.training.optim import build_optimizer, build_scheduler
from slade.training.registry import build_loss, build_miner
from slade.training.validated import train_validate_test


class TeacherTask:
    name = "teacher"

    def __init__(self, cfg: config.Config, bench: Benchmark, ctx: RunContext, init_weights: dict | None):
        self.ctx = ctx
        self.model = ctx.trainable(build_model(cfg.model, cfg.data.channels, cfg.data.image_size))
        if init_weights is not None:
            self.model.load_state_dict(init_weights)
        self.loss_fn, self.miner = build_loss(cfg.loss), build_miner(cfg.loss)
        self.optimizer = build_optimizer(self.model.parameters(), cfg.train)
        self.scheduler = build_scheduler(self.optimizer, cfg.train)
        self.sampler = MPerClassBatchSampler(bench.labeled.labels, cfg.train.m_per_class, cfg.train.batch_size,
                                             seed=ctx.seed, visits_per_class=cfg.train.visits_per_class)
        self.dataset = ImageDataset(bench.labeled, train_transform(cfg.data, bench.photo))

    def parts(self) -> dict:
        return {"model": self.model, "optimizer": self.optimizer, "scheduler": self.scheduler}

    def train(self) -> None:
        self.model.train()

    def step(self, batch: dict, global_step: int):
        ranks, device = self.ctx.ranks, self.ctx.device
        labels = ranks.gather(batch["labels"].to(device))  # the global batch's, in rank order
        if len(labels) < 2:
            return None
        with self.ctx.autocast():
            embeddings = ranks.gather(self.model(batch["images"].to(device)), differentiable=True)
        miner = self.miner(embeddings, labels) if self.miner is not None else None
        return self.loss_fn(embeddings, labels, miner), {}


def train_teacher(cfg: config.Config, bench: Benchmark, ctx: RunContext, out: Path,
                  init_weights: dict | None = None, on_epoch_end=()) -> StageResult:
    """Trains (or with ctx.resume continues from out/last.pt). init_weights: the model weights to start from
    (SLADE's self-supervised init). The result's metrics are the test metrics of the best epoch."""
    return train_validate_test(lambda: TeacherTask(cfg, bench, ctx, init_weights), cfg, bench, ctx, out,
                               cfg.train.epochs, on_epoch_end=on_epoch_end)
