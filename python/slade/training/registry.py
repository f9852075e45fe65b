"""The one place that picks the ranking loss and the miner: slade_ext's fused, pytorch-metric-learning-compatible
classes (`loss(embeddings, labels, indices_tuple=None)`, `miner(embeddings, labels)`)."""
from __future__ import annotations



def build_loss(cfg):
    """cfg: a validated config.LossConfig (loss.name in schema.LossName)."""
    from slade_ext import losses

    if cfg.name == "multi_similarity":
        return losses.MultiSimilarityLoss(alpha=cfg.alpha, beta=cfg.beta, base=cfg.base)
    return losses.ContrastiveLoss(pos_margin=cfg.pos_margin, neg_margin=cfg.neg_margin)


def build_miner(cfg):
    """None when cfg.miner is 'none' (the loss then uses all pairs of the batch)."""
    if cfg.miner == "none":
        return None
    from slade_ext import miners

    return miners.MultiSimilarityMiner(epsilon=cfg.miner_epsilon)
