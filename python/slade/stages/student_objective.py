"""The student's objective (docs/method.md, "Objective and schedule"):

    L = L_rank(labeled) + lambda1 * L_rank(unlabeled pairs) + lambda2 * (L_CE + L_SD)

with its ablation switches: `basis=False` drops the feature basis and trains on plain pseudo-label pairs;
`selection="none"` keeps the basis but still takes the pseudo-label pairs; "literal" / "agree" take the confident
pairs of the basis similarity (thresholds mu+ / mu-, the moving averages), picked by slade_ext.
`selection_negatives="pseudo"` keeps the selection's positives but takes the plain variant's negatives instead of
those under T2 = mu- (results/ABLATION.md: the T2 negatives are the easy half, and with them alone the embedding
collapses); with `selection="veto"` those are the plain variant's negatives that the basis does not veto
(s >= T1). `ce_detach` keeps L_CE from pulling the embedding (W alone learns from it). Every step logs
ce_ratio = L_CE / log K (1: W has learned nothing) and basis_gap = mu+ - mu-."""
from __future__ import annotations

import math

import torch

from slade_ext.basis import FeatureBasis
from slade_ext.miners import ConfidentPairMiner



def build_basis(student_cfg, num_classes: int, dim: int) -> FeatureBasis | None:
    """W [K, d] with K = number of labeled classes; None when the basis is switched off."""
    if not student_cfg.basis:
        return None
    return FeatureBasis(num_classes, dim, beta=student_cfg.sd_beta, margin=student_cfg.sd_margin,
                        lambda_var=student_cfg.sd_lambda_var, grad_mode=student_cfg.sd_grad,
                        ce_scale=student_cfg.ce_scale, ce_logits=student_cfg.basis_logits)


class StudentObjective:
    def __init__(self, student_cfg, loss_fn, miner, basis: FeatureBasis | None):
        """student_cfg: a validated config.StudentConfig (a selection needs the basis: config.validate says so)."""
        self.loss_fn, self.miner, self.basis = loss_fn, miner, basis
        self.lambda1, self.lambda2 = student_cfg.lambda1, student_cfg.lambda2
        self.selector, self.negatives = None, student_cfg.selection_negatives
        self.ce_detach = student_cfg.ce_detach
        if student_cfg.selection != "none":
            quantiles = None
            if student_cfg.t_pos_quantile is not None:
                quantiles = (student_cfg.t_pos_quantile, student_cfg.t_neg_quantile)
            self.selector = ConfidentPairMiner(basis, mode=student_cfg.selection, quantiles=quantiles)

    def _ranking(self, emb, labels):
        return self.loss_fn(emb, labels, self.miner(emb, labels) if self.miner is not None else None)

    def unlabeled_pairs(self, f_u: torch.Tensor, p_u: torch.Tensor):
        """(a1, p, a2, n) of the unlabeled batch: the confident pairs, or the miner's pseudo-label pairs (all of
        them without a miner: None)."""
        if self.selector is None:
            return self.miner(f_u, p_u) if self.miner is not None else None
        a1, p, a2, n = self.selector(f_u.detach(), p_u)
        if self.negatives == "pseudo" and self.selector.active():
            a2, n = self._pseudo_negatives(f_u, p_u, (a1, p), (a2, n))
        return a1, p, a2, n

    def _pseudo_negatives(self, f_u, p_u, positives, negatives):
        """The plain variant's negatives (the miner's pseudo-label negatives; every pair of different pseudo labels
        without a miner): with veto, those among the selection's negatives (the ones the basis does not veto);
        otherwise less the pairs the selection took as positives (literal mode may pick such pairs)."""
        if self.miner is not None:
            a2, n = self.miner(f_u, p_u)[2:]
        else:
            a2, n = (p_u[:, None] != p_u[None, :]).nonzero(as_tuple=True)
        key = a2 * len(p_u) + n
        if self.selector.mode == "veto":
            keep = torch.isin(key, negatives[0] * len(p_u) + negatives[1])
        else:
            keep = ~torch.isin(key, positives[0] * len(p_u) + positives[1])
        return a2[keep], n[keep]

    def basis_loss(self, f_l, y_l, f_u, p_u) -> tuple[torch.Tensor, torch.Tensor]:
        """(L_CE on the labeled samples, L_SD on the pseudo pairs); L_SD also moves the averages mu+/mu-/v+/v-."""
        return self.basis.ce_loss(f_l.detach() if self.ce_detach else f_l, y_l), self.basis.sd_loss(f_u, p_u)

    def warmup(self, f_l, y_l, f_u, p_u):
        """L_Basis on detached embeddings: only W learns. Returns (loss, stats, None)."""
        ce, sd = self.basis_loss(f_l.detach(), y_l, f_u.detach(), p_u)
        return ce + sd, self._basis_stats(ce, sd), None

    def __call__(self, f_l, y_l, f_u, p_u):
        """(loss, stats, the unlabeled pairs or None when the loss took all pseudo-label pairs)."""
        rank_l = self._ranking(f_l, y_l)
        stats = {"rank_l": rank_l.item()}
        loss = rank_l
        if self.basis is not None:
            ce, sd = self.basis_loss(f_l, y_l, f_u, p_u)  # first, so the thresholds include this batch
            loss = loss + self.lambda2 * (ce + sd)
            stats.update(self._basis_stats(ce, sd))
        pairs = self.unlabeled_pairs(f_u, p_u)
        rank_u = self.loss_fn(f_u, p_u if pairs is None else None, pairs)  # listed pairs: labels play no part
        loss = loss + self.lambda1 * rank_u
        stats["rank_u"] = rank_u.item()
        if pairs is not None:
            stats.update(pairs_pos=len(pairs[0]), pairs_neg=len(pairs[2]))
        return loss, stats, pairs

    def _basis_stats(self, ce, sd) -> dict:
        b = self.basis
        averages = {"mu_pos": float(b.mu_pos), "mu_neg": float(b.mu_neg), "var_pos": float(b.var_pos),
                    "var_neg": float(b.var_neg)}
        classes = b.weight.shape[0]
        return {"ce": ce.item(), "sd": sd.item(), "ce_ratio": ce.item() / math.log(classes) if classes > 1 else 0.0,
                "basis_gap": averages["mu_pos"] - averages["mu_neg"], **averages}
