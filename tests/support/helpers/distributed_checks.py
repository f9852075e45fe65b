"""The per-rank checks of tests/ext/test_distributed.py, in an importable module so that spawned ranks can run them:
each rank compares what the distributed wrappers give it with a single-process computation on the concatenated
batch."""
from __future__ import annotations

import os
import sys
import warnings

import torch
import torch.distributed as dist
from pytorch_metric_learning import distances as pml_distances

from slade_ext import losses, miners
from slade_ext._compat import FallbackWarning
from slade_ext.basis import FeatureBasis
from slade_ext.distributed import DistributedFeatureBasis, DistributedLossWrapper, DistributedMinerWrapper, gather_global

WORLD = 2
SIZES = (5, 7)  # rows per rank: unequal on purpose
LARGE_SIZES = (13, 17)  # a global batch over 25 rows: torch.cdist's matrix-product form, as PML's distances use it
D = 8


def global_batch(seed=0, sizes=SIZES):
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(sum(sizes), D, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 3, (sum(sizes),), generator=g)
    return emb, labels


def local_slice(rank, sizes=SIZES):
    start = sum(sizes[:rank])
    return slice(start, start + sizes[rank])


# The miners and losses take **options (a PML distance); the ConfidentPairMiner compares basis projections only.
MINERS = {
    "multi_similarity": lambda **o: miners.MultiSimilarityMiner(epsilon=0.1, **o),
    "pair_margin": lambda **o: miners.PairMarginMiner(pos_margin=0.2, neg_margin=0.8, **o),
    "batch_hard": lambda **o: miners.BatchHardMiner(**o),
    "triplet_margin": lambda **o: miners.TripletMarginMiner(margin=0.2, type_of_triplets="semihard", **o),
    "confident": lambda: miners.ConfidentPairMiner(_basis_weight(), t_pos=0.2, t_neg=-0.2, mode="agree"),
}

# PML distance options besides each class's default, all on the fused path.
DISTANCES = {
    "l2": lambda: pml_distances.LpDistance(),
    "l2 squared": lambda: pml_distances.LpDistance(power=2),
    "unnormalised l2": lambda: pml_distances.LpDistance(normalize_embeddings=False),
    "unnormalised l2 squared": lambda: pml_distances.LpDistance(normalize_embeddings=False, power=2),
    "unnormalised dot": lambda: pml_distances.DotProductSimilarity(normalize_embeddings=False),
}


def _basis_weight():
    return torch.randn(4, D, generator=torch.Generator().manual_seed(7), dtype=torch.float64)


def _local_indices(single, mine):
    """The single-process indices restricted to this rank's anchors, the anchors counted from its first row: what
    the efficient miner returns."""
    out = list(single)
    for a, partner in ((0, 1), (2, 3)) if len(single) == 4 else ((0, None),):
        keep = (single[a] >= mine.start) & (single[a] < mine.stop)
        out[a] = single[a][keep] - mine.start
        for k in ((partner,) if partner is not None else (1, 2)):
            out[k] = single[k][keep]
    return tuple(out)
LOSSES = {
    "multi_similarity": lambda **o: losses.MultiSimilarityLoss(alpha=2, beta=50, base=0.5, **o),
    "contrastive": lambda **o: losses.ContrastiveLoss(pos_margin=0.0, neg_margin=1.0, **o),
}


def _check_miners(rank, efficient, sizes=SIZES, options=dict):
    """options() gives each class its options, fresh objects each time: {} (the defaults), or a distance for every
    miner but the ConfidentPairMiner."""
    emb, labels = global_batch(sizes=sizes)
    mine = local_slice(rank, sizes)
    for name, make in MINERS.items():
        if name == "confident" and options():
            continue
        build = lambda: make(**options())  # noqa: E731
        got = DistributedMinerWrapper(build(), efficient=efficient)(emb[mine], labels[mine])
        want = build()(emb, labels)
        if efficient:
            want = _local_indices(want, mine)
        assert len(got) == len(want) and all(torch.equal(a, b) for a, b in zip(got, want)), f"miner {name}"


def _check_losses(rank, efficient, sizes=SIZES, options=dict):
    """options() as in _check_miners, for the losses and their miners."""
    emb, labels = global_batch(sizes=sizes)
    mine = local_slice(rank, sizes)
    for name, make in LOSSES.items():
        for miner_name in (None, "multi_similarity", "batch_hard"):
            local = emb[mine].clone().requires_grad_()
            tuples = None if miner_name is None else DistributedMinerWrapper(
                MINERS[miner_name](**options()), efficient=efficient)(local, labels[mine])
            loss = DistributedLossWrapper(make(**options()), efficient=efficient)(local, labels[mine], tuples)
            loss.backward()
            full = emb.clone().requires_grad_()
            single = make(**options())(
                full, labels, None if miner_name is None else MINERS[miner_name](**options())(full, labels))
            single.backward()
            case = f"loss {name} with miner {miner_name}, efficient={efficient}, options {options()}"
            torch.testing.assert_close(loss, WORLD * single, rtol=1e-12, atol=1e-12, msg=case)
            torch.testing.assert_close(local.grad, WORLD * full.grad[mine], rtol=1e-10, atol=1e-12, msg=case)


def _check_losses_with_ref_emb(rank, efficient):
    """A separate reference set (ref_emb, ref_labels), gathered too: both sides get their gradients."""
    emb, labels = global_batch()
    ref, ref_labels = global_batch(seed=3)
    mine = local_slice(rank)
    for name, make in LOSSES.items():
        local, local_ref = emb[mine].clone().requires_grad_(), ref[mine].clone().requires_grad_()
        loss = DistributedLossWrapper(make(), efficient=efficient)(local, labels[mine], None, local_ref,
                                                                   ref_labels[mine])
        loss.backward()
        full, full_ref = emb.clone().requires_grad_(), ref.clone().requires_grad_()
        single = make()(full, labels, None, full_ref, ref_labels)
        single.backward()
        case = f"loss {name} with ref_emb, efficient={efficient}"
        torch.testing.assert_close(loss, WORLD * single, rtol=1e-12, atol=1e-12, msg=case)
        torch.testing.assert_close(local.grad, WORLD * full.grad[mine], rtol=1e-10, atol=1e-12, msg=case)
        torch.testing.assert_close(local_ref.grad, WORLD * full_ref.grad[mine], rtol=1e-10, atol=1e-12, msg=case)


def _check_miners_and_losses(rank):
    for efficient in (False, True):
        _check_miners(rank, efficient)
        _check_losses(rank, efficient)
        _check_losses_with_ref_emb(rank, efficient)


def _check_distance_options(rank):
    """Every PML distance option on the fused path (none may fall back), over LARGE_SIZES."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", FallbackWarning)
        for efficient in (False, True):
            for make_distance in DISTANCES.values():
                options = lambda: {"distance": make_distance()}  # noqa: E731 (a fresh object per class)
                _check_miners(rank, efficient, LARGE_SIZES, options)
                _check_losses(rank, efficient, LARGE_SIZES, options)


def _check_feature_basis(rank):
    """ce_loss and two sd_loss steps (seeding, then moving the averages) of the global batch: values world x,
    each rank's rows world x their gradient, W's gradient averaged over ranks, the same averages on every rank."""
    emb, labels = global_batch(seed=2)
    pseudo = labels.clone()
    pseudo[::5] = -1  # unknown pseudo labels take part in no pair
    mine = local_slice(rank)
    torch.manual_seed(0)
    single = FeatureBasis(num_classes=3, dim=D).double()
    shared = FeatureBasis(num_classes=3, dim=D).double()
    shared.load_state_dict(single.state_dict())
    basis = DistributedFeatureBasis(shared)
    for step in range(2):
        shared.weight.grad = single.weight.grad = None
        local = (emb[mine] * (1 + step)).clone().requires_grad_()
        loss = basis.ce_loss(local, labels[mine]) + basis.sd_loss(local, pseudo[mine])
        loss.backward()
        full = (emb * (1 + step)).clone().requires_grad_()
        want = single.ce_loss(full, labels) + single.sd_loss(full, pseudo)
        want.backward()
        case = f"feature basis, step {step}"
        torch.testing.assert_close(loss, WORLD * want, rtol=1e-10, atol=1e-12, msg=case)
        torch.testing.assert_close(local.grad, WORLD * full.grad[mine], rtol=1e-9, atol=1e-12, msg=case)
        grad_w = shared.weight.grad.clone()
        dist.all_reduce(grad_w)
        torch.testing.assert_close(grad_w / WORLD, single.weight.grad, rtol=1e-9, atol=1e-12, msg=case)
        for name in ("mu_pos", "var_pos", "mu_neg", "var_neg", "num_updates"):
            torch.testing.assert_close(getattr(shared, name), getattr(single, name), rtol=1e-10, atol=1e-12,
                                       msg=f"{case}: {name}")


def _check_ddp_parameter_gradients(rank):
    emb, labels = global_batch(seed=1)
    for efficient in (False, True):
        torch.manual_seed(0)
        model = torch.nn.Linear(D, D).double()
        reference = torch.nn.Linear(D, D).double()
        reference.load_state_dict(model.state_dict())
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        mine = local_slice(rank)
        out = ddp(emb[mine])
        tuples = DistributedMinerWrapper(MINERS["multi_similarity"](), efficient=efficient)(out, labels[mine])
        loss_fn = DistributedLossWrapper(LOSSES["multi_similarity"](), efficient=efficient)
        loss_fn(out, labels[mine], tuples).backward()  # DDP averages
        full = reference(emb)
        LOSSES["multi_similarity"]()(full, labels, MINERS["multi_similarity"]()(full, labels)).backward()
        for (name, p), q in zip(model.named_parameters(), reference.parameters()):
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-10, atol=1e-12, msg=f"{name}, efficient={efficient}")


def _check_gather(rank):
    weights = torch.arange(1, sum(SIZES) + 1, dtype=torch.float32)[:, None]
    for differentiable in (False, True):
        x = torch.full((SIZES[rank], 3), float(rank), requires_grad=True)
        gathered = gather_global(x, differentiable=differentiable)
        assert gathered.shape == (sum(SIZES), 3)
        assert torch.equal(gathered[: SIZES[0]], torch.zeros(SIZES[0], 3))
        assert torch.equal(gathered[SIZES[0]:], torch.ones(SIZES[1], 3))
        (gathered * weights).sum().backward()  # the same loss on every rank
        # Without: only this rank's copy reaches x; with: the copies of both ranks are summed at the owner.
        expected = (WORLD if differentiable else 1) * weights[local_slice(rank)].expand(-1, 3)
        assert torch.equal(x.grad, expected), differentiable


CHECKS = {"miners_and_losses": _check_miners_and_losses, "distance_options": _check_distance_options,
          "ddp": _check_ddp_parameter_gradients, "gather": _check_gather, "feature_basis": _check_feature_basis}


def run_rank(rank, store_path, check):
    """One rank of a two-process gloo group (a FileStore: no network) running CHECKS[check]. A failed check raises
    (torch.multiprocessing.spawn reports it); a passed one waits for the other rank and leaves at once: tearing the
    gloo group down at interpreter exit now and then aborted a rank after every check had passed."""
    dist.init_process_group("gloo", init_method=f"file://{store_path}", rank=rank, world_size=WORLD)
    torch.set_num_threads(1)
    CHECKS[check](rank)
    dist.barrier()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
