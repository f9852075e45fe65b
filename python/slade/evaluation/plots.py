"""PNG plots of a run: training loss and validation MAP@R per epoch, and Recall@K of the final evaluation."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on training machines
import matplotlib.pyplot as plt  # noqa: E402


def plot_training_curves(history: list[dict], path: str | Path) -> None:
    """history rows: {'epoch', 'loss', 'val': {'map_at_r', 'r_precision', 'precision_at_1', ...}}."""
    epochs = [row["epoch"] for row in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [row["loss"] for row in history], marker="o")
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="loss")
    for key, label in (("map_at_r", "MAP@R"), ("r_precision", "R-Precision"), ("precision_at_1", "P@1")):
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
