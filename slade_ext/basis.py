"""SLADE's feature basis (docs/method.md, "Feature basis learning"): W [K, d], its cross-entropy on labeled samples, and
the similarity-distribution loss L_SD on pseudo-labeled pairs, built on the fused `ops.basis_pair_stats`.

    basis = FeatureBasis(num_classes=K, dim=d)
    loss = basis.ce_loss(f_labeled, y) + basis.sd_loss(f_unlabeled, pseudo_labels)   # L_Basis
    miner = ConfidentPairMiner(basis)   # thresholds T1 = mu+, T2 = mu- (the moving averages)
"""
from __future__ import annotations

from statistics import NormalDist

import torch
import torch.nn.functional as F

from . import ops
from .ops import check_number

__all__ = ["FeatureBasis"]


@torch.compiler.assume_constant_result  # a number of the settings: torch.compile need not trace statistics' C code
def _normal_quantile(q: float) -> float:
    """The standard normal distribution's q quantile z(q)."""
    return NormalDist().inv_cdf(q)


class FeatureBasis(torch.nn.Module):
    """W [K, d] plus moving averages mu+/mu-/v+/v- (buffers) of the basis similarity over pseudo pairs.

    grad_mode="paper" (default): L_SD uses the moving averages, so its gradient flows through the batch part only
    (scaled by 1 - beta). grad_mode="batch": L_SD uses the batch statistics; the averages only serve as thresholds.
    The averages start from the first batch's statistics (our choice: docs/method.md gives no initial value); a side
    without pairs in a batch leaves its averages unchanged. `restart_averages()` makes the next batch seed them
    again: after a warm-up that moved W, averages carried over from it lag far behind the current similarities.
    L_CE's logits: ce_logits="linear" (default) is the paper's W f times ce_scale (1 = the paper's); "cosine" is
    ce_scale * cos(w_k, f), the normalised softmax of the proxy losses (ce_scale about 16-32): on L2-normalised
    embeddings with W at std d^-1/2 the linear logits all sit near 0, the softmax is near uniform and W hardly learns.
    """

    def __init__(self, num_classes: int, dim: int, beta: float = 0.99, margin: float = 0.5, lambda_var: float = 1.0,
                 grad_mode: str = "paper", ce_scale: float = 1.0, ce_logits: str = "linear"):
        super().__init__()
        if num_classes < 1 or dim < 1:
            raise ValueError(f"num_classes and dim must be positive, got {num_classes}, {dim}")
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"beta must be in [0, 1), got {beta}")
        if grad_mode not in ("paper", "batch"):
            raise ValueError(f'grad_mode must be "paper" or "batch", got {grad_mode!r}')
        beta = check_number(beta, "beta")
        margin = check_number(margin, "margin")
        lambda_var = check_number(lambda_var, "lambda_var")
        if lambda_var < 0:
            raise ValueError(f"lambda_var must be >= 0, got {lambda_var}")
        ce_scale = check_number(ce_scale, "ce_scale", positive=True)
        if ce_logits not in ("linear", "cosine"):
            raise ValueError(f'ce_logits must be "linear" or "cosine", got {ce_logits!r}')
        self.weight = torch.nn.Parameter(torch.empty(num_classes, dim))
        torch.nn.init.normal_(self.weight, std=dim**-0.5)
        self.beta, self.margin, self.lambda_var, self.grad_mode = beta, margin, lambda_var, grad_mode
        self.ce_scale, self.ce_logits = ce_scale, ce_logits
        for name in ("mu_pos", "var_pos", "mu_neg", "var_neg"):
            self.register_buffer(name, torch.zeros(()))
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.int64))

    def logits(self, emb: torch.Tensor) -> torch.Tensor:
        """The class scores of L_CE: ce_scale * W f, or ce_scale * cos(w_k, f) (ce_logits="cosine")."""
        if self.ce_logits == "cosine":
            return self.ce_scale * (F.normalize(emb, dim=-1) @ F.normalize(self.weight, dim=-1).t())
        return self.ce_scale * (emb @ self.weight.t())

    def ce_loss(self, emb: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """L_CE over the labeled samples (label >= 0); 0 when there are none. No data-dependent branch or shape,
        so torch.compile(fullgraph=True) traces it."""
        return self.ce_from_parts(emb, *self.ce_parts(emb, labels))

    def ce_parts(self, emb: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(sum of the labeled samples' cross-entropies, their count): L_CE is their ratio, so that ranks can sum
        the counts (slade_ext.distributed.DistributedFeatureBasis)."""
        _check_finite(emb, "emb")
        keep = labels >= 0
        per_sample = F.cross_entropy(self.logits(emb), torch.where(keep, labels, 0).long(), reduction="none")
        return torch.where(keep, per_sample, 0.0).sum(), keep.sum()

    @staticmethod
    def ce_from_parts(emb: torch.Tensor, total: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
        """total / count, or 0 attached to emb's graph without labeled samples."""
        return torch.where(count > 0, total / count.clamp(min=1).to(total.dtype), (emb * 0).sum().to(total.dtype))

    def similarity(self, emb: torch.Tensor, ref_emb: torch.Tensor | None = None) -> torch.Tensor:
        """s_ij = cos(W f_i, W g_j)."""
        return ops.basis_similarity(emb, self.weight, ref_emb)

    def restart_averages(self) -> None:
        """The next sd_loss seeds mu+/mu-/v+/v- from its batch; thresholds() is None until then."""
        self.num_updates.zero_()

    def threshold_tensors(self, quantiles: tuple[float, float] | None = None):
        """(ready, T1, T2) as 0-dim tensors, without a data-dependent branch (torch.compile traces it): ready is
        whether the averages have been updated yet; T1, T2 (float64) are (mu+, mu-), the paper's, or with
        quantiles=(q+, q-) the q+ quantile of the positive pairs' similarity and the q- quantile of the negatives',
        each side's moving distribution read as a normal one: mu + z(q) sqrt(v)."""
        sides = ((self.mu_pos, self.var_pos), (self.mu_neg, self.var_neg))
        if quantiles is None:
            t_pos, t_neg = (mu.double() for mu, _ in sides)
        else:
            t_pos, t_neg = (mu.double() + _normal_quantile(q) * var.double().sqrt() for (mu, var), q in
                            zip(sides, quantiles))
        return self.num_updates > 0, t_pos, t_neg

    def thresholds(self, quantiles: tuple[float, float] | None = None):
        """threshold_tensors' (T1, T2) as floats, or None before the first update."""
        ready, t_pos, t_neg = self.threshold_tensors(quantiles)
        return (float(t_pos), float(t_neg)) if bool(ready) else None

    def sd_loss(self, emb: torch.Tensor, pseudo_labels: torch.Tensor) -> torch.Tensor:
        """L_SD = max(mu- - mu+ + m, 0) + lambda_var (v+ + v-) on the batch's pseudo pairs; updates the averages
        when training. Written without data-dependent branches (tensor conditions), so that
        torch.compile(fullgraph=True) traces it; the values are those of the branching form."""
        return self.sd_loss_from_stats(*ops.basis_pair_stats(emb, self.weight, pseudo_labels))

    def sd_loss_from_stats(self, mu_p, var_p, mu_n, var_n, n_pos, n_neg) -> torch.Tensor:
        """sd_loss given the batch's pair statistics (ops.basis_pair_stats' outputs): the statistics may come from
        elsewhere, e.g. reduced over ranks (slade_ext.distributed.DistributedFeatureBasis)."""
        batch = {"mu_pos": mu_p, "var_pos": var_p, "mu_neg": mu_n, "var_neg": var_n}
        has = {"pos": n_pos > 0, "neg": n_neg > 0}
        first = self.num_updates == 0
        stats = {}
        for name, value in batch.items():
            buffer = getattr(self, name)
            present = has[name.split("_")[1]]
            kept = buffer.detach().clone().to(value.dtype)
            old = torch.where(first, value.detach(), kept)
            ema = (1 - self.beta) * value + self.beta * old
            used = value if self.grad_mode == "batch" else ema
            stats[name] = torch.where(present, used, kept)  # a side without pairs keeps its averages
            if self.training:
                buffer.copy_(torch.where(present, ema.detach(), kept))
        if self.training:
            self.num_updates += (has["pos"] | has["neg"]).to(self.num_updates.dtype)
        gap = torch.clamp(stats["mu_neg"] - stats["mu_pos"] + self.margin, min=0)
        return gap + self.lambda_var * (stats["var_pos"] + stats["var_neg"])


def _check_finite(x: torch.Tensor, name: str) -> None:
    """ValueError naming `name` when x holds NaN or Inf (eagerly; skipped while torch.compile traces)."""
    if torch.compiler.is_compiling():
        return
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or Inf")
