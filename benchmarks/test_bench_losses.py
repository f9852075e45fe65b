"""Losses, forward + backward: slade_ext vs pytorch-metric-learning vs the pure-PyTorch reference."""
from __future__ import annotations

import pytest

from cases import (CROSS, DISTANCE_OPTIONS, FLOOR, IMPLS, NTXENT, NTXENT_LARGE, SQUARE, TRIPLET, clustered,
                   cross_batch, expect_close, matrix_products, two_views, unnormalised_distance)

from slade_ext import losses, reference

pml_losses = pytest.importorskip("pytorch_metric_learning.losses")

REFERENCE = {"MultiSimilarityLoss": reference.multi_similarity_loss, "ContrastiveLoss": reference.contrastive_loss}


def fwd_bwd(name, impl, emb, labels, ref_emb=None, ref_labels=None, **options):
    """A function returning (loss, grad of embeddings) for one fresh leaf copy of the inputs."""
    if impl == "reference":
        loss_fn = lambda *a: REFERENCE[name](a[0], a[1], None, a[2], a[3])
    else:
        loss_fn = getattr(losses if impl == "slade_ext" else pml_losses, name)(**options)

    def run():
        e = emb.detach().clone().requires_grad_()
        r = None if ref_emb is None else ref_emb.detach().clone().requires_grad_()
        loss = loss_fn(e, labels, None, r, ref_labels) if impl != "reference" else loss_fn(e, labels, r, ref_labels)
        loss.backward()
        return loss.detach(), e.grad

    return run


def run_loss(run_case, group, name, impl, *inputs, **options):
    expected = fwd_bwd(name, "slade_ext", *inputs, **options)()
    check = None if impl == "slade_ext" else expect_close(expected, rtol=1e-3, atol=1e-6)
    run_case(group, impl, fwd_bwd(name, impl, *inputs, **options), check)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("n", SQUARE)
@pytest.mark.parametrize("name", ["MultiSimilarityLoss", "ContrastiveLoss"])
def test_loss(run_case, name, n, impl):
    run_loss(run_case, f"{name} fwd+bwd N={n}", name, impl, *clustered(n))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("n,m", CROSS)
def test_ms_loss_cross_batch(run_case, n, m, impl):
    emb, labels, ref_emb, ref_labels = cross_batch(n, m)
    run_loss(run_case, f"MultiSimilarityLoss fwd+bwd {n}x{m}", "MultiSimilarityLoss", impl, emb, labels, ref_emb,
             ref_labels)


@pytest.mark.parametrize("impl", ["slade_ext", "pml"])  # no reference: PML's NTXentLoss is the plain-torch one
@pytest.mark.parametrize("n", NTXENT)
def test_ntxent_loss(run_case, n, impl):
    run_loss(run_case, f"NTXentLoss fwd+bwd N={n} (two views)", "NTXentLoss", impl, *two_views(n))


@pytest.mark.parametrize("impl", ["slade_ext"])  # PML's would need ~10 TB here
@pytest.mark.parametrize("n", NTXENT_LARGE)
def test_ntxent_loss_at_simclr_batch(run_case, n, impl):
    run_case(f"NTXentLoss fwd+bwd N={n} (two views)", impl, fwd_bwd("NTXentLoss", impl, *two_views(n)))


@pytest.mark.parametrize("impl", ["slade_ext", "pml"])  # PML's N x M x M triplet mask bounds N
@pytest.mark.parametrize("n", TRIPLET)
def test_triplet_margin_loss(run_case, n, impl):
    run_loss(run_case, f"TripletMarginLoss fwd+bwd N={n} (all triplets)", "TripletMarginLoss", impl, *clustered(n))


@pytest.mark.parametrize("impl", ["slade_ext", "pml"])
@pytest.mark.parametrize("n", TRIPLET)
@pytest.mark.parametrize("option", ["smooth_loss", "swap"])
def test_triplet_margin_loss_options(run_case, option, n, impl):
    run_loss(run_case, f"TripletMarginLoss({option}=True) fwd+bwd N={n} (all triplets)", "TripletMarginLoss", impl,
             *clustered(n), **{option: True})


def cross_batch_memory_step(name, impl, emb, labels, memory, memory_labels):
    """A function returning (loss, grad of embeddings) for one training step of a CrossBatchMemory whose memory
    is already full (it stays full: each step overwrites the oldest rows)."""
    module = losses if impl == "slade_ext" else pml_losses
    xbm = module.CrossBatchMemory(getattr(module, name)(), memory.shape[1], memory_size=memory.shape[0]).to(
        memory.device)
    xbm.embedding_memory, xbm.label_memory = memory.clone(), memory_labels.clone()
    xbm.has_been_filled = True

    def run():
        e = emb.detach().clone().requires_grad_()
        loss = xbm(e, labels)
        loss.backward()
        return loss.detach(), e.grad

    return run


@pytest.mark.parametrize("impl", ["slade_ext", "pml"])
@pytest.mark.parametrize("n,m", CROSS)
@pytest.mark.parametrize("name", ["MultiSimilarityLoss", "ContrastiveLoss"])
def test_cross_batch_memory(run_case, name, n, m, impl):
    inputs = cross_batch(n, m)
    expected = cross_batch_memory_step(name, "slade_ext", *inputs)()
    check = None if impl == "slade_ext" else expect_close(expected, rtol=1e-3, atol=1e-6)
    run_case(f"CrossBatchMemory({name}) fwd+bwd {n} x memory {m}", impl,
             cross_batch_memory_step(name, impl, *inputs), check)


@pytest.mark.parametrize("impl", [FLOOR])
@pytest.mark.parametrize("n,m", CROSS)
@pytest.mark.parametrize("name,distance", [("MultiSimilarityLoss", "cosine"), ("ContrastiveLoss", "l2")])
def test_cross_batch_memory_matrix_products(run_case, name, distance, n, m, impl):
    """One step's two GEMMs alone (the batch against the memory, then the batch's gradient), in its group."""
    emb, _, memory, _ = cross_batch(n, m)
    run_case(f"CrossBatchMemory({name}) fwd+bwd {n} x memory {m}", impl,
             matrix_products(emb, memory, distance, gradient=True))


# Unnormalised embeddings (PML's normalize_embeddings=False) on the fused path: the distance each class is timed with
UNNORMALISED = {"MultiSimilarityLoss": "dot", "ContrastiveLoss": "L2"}


@pytest.mark.parametrize("impl", ["slade_ext", "pml"])  # the reference takes distance names, not PML objects
@pytest.mark.parametrize("n", DISTANCE_OPTIONS)
@pytest.mark.parametrize("name", list(UNNORMALISED))
def test_loss_unnormalised(run_case, name, n, impl):
    kind = UNNORMALISED[name]
    assert getattr(losses, name)(distance=unnormalised_distance(kind)).fallback is None  # the fused path, not PML's
    run_loss(run_case, f"{name}(unnormalised {kind}) fwd+bwd N={n}", name, impl, *clustered(n),
             distance=unnormalised_distance(kind))
