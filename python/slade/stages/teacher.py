"""Supervised (teacher) training: backbone + embedding head on the labeled set with a ranking loss, evaluated on
the validation classes every epoch; the best epoch by validation MAP@R is kept and finally tested.

Run directory: config.yaml, metrics.jsonl, last.pt (every epoch, full state), best.pt (weights), curves.png,
test_metrics.json, recall_at_k.png, retrievals.png."""
from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from slade import config
from slade.runtime import checkpoint
from slade.data.benchmark import build_benchmark
from slade.data.samplers import MPerClassBatchSampler
from slade.data.torch_dataset import ImageDataset, SkipLog, collate_skipping_unreadable
from slade.data.transforms import EvalTransform, TrainTransform
from slade.runtime.devices import autocast, resolve_device
from slade.runtime.metrics_log import MetricsLog
from slade.models import build_model
from slade.training.registry import build_loss, build_miner
from slade.training.optim import build_optimizer, build_scheduler
from slade.evaluation.plots import plot_recall_at_k, plot_training_curves
from slade.evaluation.retrieval import evaluate_role
from slade.evaluation.grid import save_retrieval_grid
from slade.runtime.seeding import seed_everything

CHECKPOINT_FORMAT = 1


def eval_transform(cfg: config.Config, photo: bool) -> EvalTransform:
    return EvalTransform(cfg.data.image_size, cfg.data.channels, photo)


def _train_epoch(model, loader, loss_fn, miner, optimizer, scaler, device, amp, skip_log, progress, epoch) -> float:
    model.train()
    total, steps = 0.0, 0
    bar = tqdm(loader, desc=f"epoch {epoch}", leave=False, disable=not progress)
    for batch in bar:
        skip_log.add("labeled", batch["skipped"])
        if len(batch["labels"]) < 2:
            continue
        labels = batch["labels"].to(device)
        with autocast(device, amp):
            embeddings = model(batch["images"].to(device))
        loss = loss_fn(embeddings, labels, miner(embeddings, labels) if miner is not None else None)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        total += loss.item()
        steps += 1
        bar.set_postfix(loss=f"{total / steps:.4f}")
    return total / max(1, steps)


def finish(model, bench, cfg: config.Config, device, amp: bool, out: Path, skip_log: SkipLog, progress: bool) -> dict:
    """Test metrics (with NMI/AMI), Recall@K plot and retrieval grid of `model`, written to `out`."""
    result = evaluate_role(model, bench, "test", eval_transform(cfg, bench.photo), device, cfg.eval, amp=amp,
                           skip_log=skip_log, clustering=cfg.eval.clustering, progress=progress)
    (out / "test_metrics.json").write_text(json.dumps(result.metrics, indent=2), encoding="utf-8")
    plot_recall_at_k(result.metrics, cfg.eval.recall_ks, out / "recall_at_k.png", title=f"{bench.name} test")
    if cfg.eval.grid_queries > 0:
        save_retrieval_grid(result, out / "retrievals.png", n_queries=cfg.eval.grid_queries, seed=cfg.train.seed)
    return result.metrics


def train_teacher(cfg: config.Config, resume: bool = False, progress: bool = True, on_epoch_end=(),
                  init_state: dict | None = None, bench=None) -> dict:
    """Trains, or with resume=True continues from out_dir/last.pt. on_epoch_end: callables (epoch, row) run after
    each epoch's checkpoint is written. init_state: model weights to start from (SLADE's self-supervised init);
    bench: a prepared Benchmark (default: built from cfg.data). Returns {'best_epoch', 'best_val_map_at_r',
    'test': metrics}."""
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config.save(cfg, out / "config.yaml")
    device = resolve_device(cfg.train.device)
    amp = cfg.train.amp and device.type == "cuda"
    # The cheap parts first, so that a config mistake surfaces before minutes of data preparation.
    seed_everything(cfg.train.seed)
    model = build_model(cfg.model, cfg.data.channels, cfg.data.image_size).to(device)
    if init_state is not None:
        model.load_state_dict(init_state)
    loss_fn, miner = build_loss(cfg.loss), build_miner(cfg.loss)
    optimizer = build_optimizer(model.parameters(), cfg.train)
    scheduler = build_scheduler(optimizer, cfg.train)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    bench = bench if bench is not None else build_benchmark(cfg.data)
    val_role = "val"
    if bench.val is None:
        warnings.warn("no validation classes (data.val_fraction=0): the best epoch is chosen on the test set",
                      stacklevel=2)
        val_role = "test"
    sampler = MPerClassBatchSampler(bench.labeled.labels, cfg.train.m_per_class, cfg.train.batch_size,
                                    seed=cfg.train.seed, visits_per_class=cfg.train.visits_per_class)
    train_tf = (TrainTransform(cfg.data.image_size, cfg.data.channels) if bench.photo
                else eval_transform(cfg, photo=False))
    loader = DataLoader(ImageDataset(bench.labeled, train_tf), batch_sampler=sampler, num_workers=cfg.data.workers,
                        collate_fn=collate_skipping_unreadable)

    history, best, start = [], None, 0
    log = MetricsLog(out / "metrics.jsonl")
    last_path = out / "last.pt"
    if resume and last_path.is_file():
        state = checkpoint.load(last_path)
        checkpoint.restore(state, model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler)
        history, best, start = state["history"], state["best"], state["epoch"]
    elif resume:
        warnings.warn(f"--resume: no {last_path} yet, starting from scratch", stacklevel=2)
    log.restart(history)

    skip_log = SkipLog()
    for epoch in range(start, cfg.train.epochs):
        began = time.time()
        seed_everything(cfg.train.seed, epoch + 1)  # each epoch's randomness depends only on (seed, epoch)
        sampler.set_epoch(epoch)
        lr = optimizer.param_groups[0]["lr"]
        loss = _train_epoch(model, loader, loss_fn, miner, optimizer, scaler, device, amp, skip_log, progress,
                            epoch + 1)
        scheduler.step()
        val = evaluate_role(model, bench, val_role, eval_transform(cfg, bench.photo), device, cfg.eval, amp=amp,
                            skip_log=skip_log, progress=progress).metrics
        row = {"epoch": epoch + 1, "loss": loss, "lr": lr, "val": val, "seconds": round(time.time() - began, 2)}
        history.append(row)
        if best is None or val["map_at_r"] > best["map_at_r"]:
            best = {"epoch": epoch + 1, "map_at_r": val["map_at_r"]}
            checkpoint.save_atomic({"format": CHECKPOINT_FORMAT, "epoch": epoch + 1, "model": model.state_dict(),
                                    "config": config.to_dict(cfg), "val": val}, out / "best.pt")
        checkpoint.save_atomic({"format": CHECKPOINT_FORMAT, "epoch": epoch + 1, "model": model.state_dict(),
                                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                                "scaler": scaler.state_dict(), "history": history, "best": best,
                                "config": config.to_dict(cfg)}, last_path)
        log.append(row)
        plot_training_curves(history, out / "curves.png")
        if progress:
            tqdm.write(f"epoch {epoch + 1}/{cfg.train.epochs}  loss {loss:.4f}  val MAP@R {val['map_at_r']:.4f}  "
                       f"P@1 {val['precision_at_1']:.4f}  ({row['seconds']} s)")
        for hook in on_epoch_end:
            hook(epoch + 1, row)

    if best is None:
        raise ValueError(f"train.epochs={cfg.train.epochs}: nothing was trained")
    model.load_state_dict(checkpoint.load(out / "best.pt")["model"])
    test = finish(model, bench, cfg, device, amp, out, skip_log, progress)
    log.append({"event": "test", "best_epoch": best["epoch"], "test": test, "skipped": skip_log.counts()})
    skip_log.report(bench.sets())
    return {"best_epoch": best["epoch"], "best_val_map_at_r": best["map_at_r"], "test": test}
