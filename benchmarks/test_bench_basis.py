"""SLADE's basis ops (no PML twin): slade_ext vs the pure-PyTorch reference."""
from __future__ import annotations

import pytest
import torch

from cases import DEVICE, DIM, SQUARE, clustered, expect_close, expect_same_pairs

from slade_ext import ops, reference

IMPLS = ["slade_ext", "reference"]


def basis_for(n):
    g = torch.Generator().manual_seed(7)
    return torch.randn(max(n // 8, 1), DIM, generator=g).to(DEVICE)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("n", SQUARE)
def test_basis_similarity(run_case, n, impl):
    emb, _ = clustered(n)
    basis = basis_for(n)
    lib = ops if impl == "slade_ext" else reference
    check = None if impl == "slade_ext" else expect_close(ops.basis_similarity(emb, basis))
    run_case(f"basis_similarity N={n}", impl, lambda: lib.basis_similarity(emb, basis), check)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("n", SQUARE)
def test_basis_pair_stats(run_case, n, impl):
    emb, labels = clustered(n)
    basis = basis_for(n)
    lib = ops if impl == "slade_ext" else reference
    check = None if impl == "slade_ext" else expect_close(ops.basis_pair_stats(emb, basis, labels)[:4])
    run_case(f"basis_pair_stats N={n}", impl, lambda: lib.basis_pair_stats(emb, basis, labels)[:4], check)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("mode", ["literal", "agree"])
@pytest.mark.parametrize("n", SQUARE)
def test_confident_selection(run_case, n, mode, impl):
    emb, labels = clustered(n)
    basis = basis_for(n)
    mu_pos, _, mu_neg, _, _, _ = ops.basis_pair_stats(emb, basis, labels)
    args = (emb, basis, float(mu_pos), float(mu_neg), labels, mode)
    lib = ops if impl == "slade_ext" else reference
    check = None if impl == "slade_ext" else expect_same_pairs(ops.select_confident_pairs(*args))
    run_case(f"select_confident_pairs({mode}) N={n}", impl, lambda: lib.select_confident_pairs(*args), check)
