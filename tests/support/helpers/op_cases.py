"""Random inputs shared by the op tests: shapes, label layouts and the awkward cases every op must survive."""
from __future__ import annotations

import torch


def embeddings(n: int, d: int = 16, seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g).to(dtype)


def labels(n: int, n_classes: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, n_classes, (n,), generator=g)


def with_ties(emb: torch.Tensor) -> torch.Tensor:
    """Every row duplicated once, so similarities tie exactly."""
    half = emb[: (emb.shape[0] + 1) // 2]
    return torch.cat([half, half])[: emb.shape[0]].contiguous()


def non_contiguous(emb: torch.Tensor) -> torch.Tensor:
    """Same values, stored with a column stride of 2."""
    wide = torch.zeros(emb.shape[0], emb.shape[1] * 2, dtype=emb.dtype)
    wide[:, ::2] = emb
    out = wide[:, ::2]
    assert not out.is_contiguous()
    return out


# (name, n, m or None for self-comparison, n_classes)
SHAPES = [
    ("single", 1, None, 1),
    ("small", 7, None, 3),
    ("many_classes", 64, None, 60),
    ("few_classes", 120, None, 2),
    ("one_class", 40, None, 1),
    ("ref_larger", 30, 200, 6),
    ("ref_smaller", 90, 20, 4),
]


def case_inputs(name, n, m, n_classes, d=16, seed=0):
    emb = embeddings(n, d, seed)
    lab = labels(n, n_classes, seed + 1)
    if m is None:
        return emb, lab, None, None
    return emb, lab, embeddings(m, d, seed + 2), labels(m, n_classes, seed + 3)


def assert_same_indices(actual, expected):
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        assert a.dtype == torch.int64, a.dtype
        assert torch.equal(a, e.to(torch.int64)), (a, e)


def miner_inputs(n, n_classes, d=16, seed=0, ties=False, dtype=torch.float32):
    """(embeddings, labels) for the PML-compatible miners; ties=True duplicates every row (exact ties)."""
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(n, d, generator=g)
    if ties:
        emb = torch.cat([emb[: (n + 1) // 2]] * 2)[:n].contiguous()
    return emb.to(dtype), torch.randint(0, n_classes, (n,), generator=g)
