"""PNG plots of a run: training loss and validation MAP@R per epoch, and Recall@K of the final evaluation."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on training machines
import matplotlib.pyplot as plt  # noqa: E402

from slade.evaluation.metrics import HEADLINE  # noqa: E402


def plot_training_curves(history: list[dict], path: str | Path) -> None:
    """history rows: {'epoch', 'loss', 'val': {'map_at_r', 'r_precision', 'precision_at_1', ...}}; a stage without
    validation (no 'val') gets the loss panel alone."""
    epochs = [row["epoch"] for row in history]
    validated = all("val" in row for row in history)
    fig, axes = plt.subplots(1, 2 if validated else 1, figsize=(10 if validated else 5, 4), squeeze=False)
    ax_loss = axes[0][0]
    ax_loss.plot(epochs, [row["loss"] for row in history], marker="o")
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="loss")
    if validated:
        ax_acc = axes[0][1]
        for key, label in HEADLINE:
            ax_acc.plot(epochs, [row["val"][key] for row in history], marker="o", label=label)
        ax_acc.set(xlabel="epoch", ylabel="validation", title="validation retrieval", ylim=(0, 1))
        ax_acc.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_recall_at_k(metrics: dict, ks, path: str | Path, title: str = "Recall@K") -> None:
    ks = sorted(ks)
    values = [metrics[f"recall_at_{k}"] for k in ks]
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot(ks, values, marker="o")
    for k, v in zip(ks, values):
        ax.annotate(f"{v:.3f}", (k, v), textcoords="offset points", xytext=(0, 6), ha="center")
    ax.set(xlabel="K", ylabel="Recall@K", title=title, ylim=(0, 1.05), xticks=ks)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
