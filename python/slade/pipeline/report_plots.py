"""PNG plots of a SLADE run: teacher vs student test metrics, pseudo-label quality, the moving averages mu+/mu-
of the basis similarity, and the number of selected pairs per student step."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on training machines
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from slade.evaluation.metrics import HEADLINE  # noqa: E402


def _save(fig, path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_comparison(test: dict[str, dict], path: str | Path) -> None:
    """Grouped bars: one group per headline metric, one bar per model ('teacher', 'student_round1', ...)."""
    names = list(test)
    fig, ax = plt.subplots(figsize=(2 + 2.2 * len(HEADLINE), 4))
    width = 0.8 / len(names)
    for j, name in enumerate(names):
        values = [test[name][key] for key, _ in HEADLINE]
        bars = ax.bar(np.arange(len(HEADLINE)) + j * width, values, width, label=name.replace("_", " "))
        ax.bar_label(bars, fmt="%.3f", fontsize=7)
    ax.set_xticks(np.arange(len(HEADLINE)) + width * (len(names) - 1) / 2, [label for _, label in HEADLINE])
    ax.set(ylabel="test", title="teacher vs student (test classes)", ylim=(0, 1))
    ax.legend()
    _save(fig, path)


def plot_pseudo_quality(qualities: list[dict], path: str | Path) -> None:
    """Per round: purity and NMI against the hidden classes (when known), and the cluster-size histogram."""
    fig, (ax_q, ax_s) = plt.subplots(1, 2, figsize=(10, 4))
    rounds = np.arange(1, len(qualities) + 1)
    if all("purity" in q for q in qualities):
        ax_q.plot(rounds, [q["purity"] for q in qualities], marker="o", label="purity")
        ax_q.plot(rounds, [q["nmi"] for q in qualities], marker="o", label="NMI")
        ax_q.legend()
    else:
        ax_q.text(0.5, 0.5, "true classes of the unlabeled set unknown", ha="center", va="center")
    ax_q.set(xlabel="round", ylabel="vs hidden classes", title="pseudo-label quality", ylim=(0, 1), xticks=rounds)
    for r, q in zip(rounds, qualities):
        ax_s.hist(q["sizes"], bins=30, alpha=0.5, label=f"round {r} (k={q['k']})")
    ax_s.set(xlabel="images per cluster", ylabel="clusters", title="cluster sizes")
    ax_s.legend()
    _save(fig, path)


def plot_basis_stats(rounds: list[list[dict]], path: str | Path) -> None:
    """mu+ and mu- (moving averages) with +-1 standard deviation bands, per student step and round."""
    fig, ax = plt.subplots(figsize=(8, 4))
    for r, steps in enumerate(rounds, start=1):
        rows = [s for s in steps if "mu_pos" in s]
        if not rows:
            continue
        x = np.array([s["step"] for s in rows])
        for key, colour in (("pos", "tab:green"), ("neg", "tab:red")):
            mu = np.array([s[f"mu_{key}"] for s in rows])
            sd = np.sqrt(np.array([s[f"var_{key}"] for s in rows]))
            ax.plot(x, mu, color=colour, alpha=1.0 / r, label=f"mu{'+' if key == 'pos' else '-'} round {r}")
            ax.fill_between(x, mu - sd, mu + sd, color=colour, alpha=0.15 / r)
        warm = [s["step"] for s in rows if s["warmup"]]
        if warm and r == 1:
            ax.axvline(max(warm), color="grey", linestyle="--", label="end of W warm-up")
    ax.set(xlabel="student step", ylabel="basis similarity", title="pseudo-pair similarity distributions")
    ax.legend(fontsize=8)
    _save(fig, path)


def plot_selected_pairs(rounds: list[list[dict]], path: str | Path) -> None:
    """Unlabeled pairs per student step (confident pairs, or the miner's pseudo-label pairs)."""
    fig, ax = plt.subplots(figsize=(8, 4))
    for r, steps in enumerate(rounds, start=1):
        rows = [s for s in steps if "pairs_pos" in s]
        x = [s["step"] for s in rows]
        ax.plot(x, [s["pairs_pos"] for s in rows], color="tab:green", alpha=1.0 / r, label=f"positive, round {r}")
        ax.plot(x, [s["pairs_neg"] for s in rows], color="tab:red", alpha=1.0 / r, label=f"negative, round {r}")
    ax.set(xlabel="student step", ylabel="pairs in the unlabeled batch", title="selected unlabeled pairs",
           yscale="symlog")
    ax.legend(fontsize=8)
    _save(fig, path)
