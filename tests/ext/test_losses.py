"""The losses family: slade_ext.losses (MultiSimilarityLoss, ContrastiveLoss) and the fused loss ops under them.

Against pytorch-metric-learning: values and gradients for all pairs, miner tuples (pairs and triplets,
duplicates), cross-batch references, half inputs; PML's edge rules; the fused ops' own backward (gradcheck,
opcheck, only the gradients asked for); and a short training loop with the same loss curve as PML's. Every
numeric check takes `device` (PML runs on the same device, float comparisons to tolerance); on CUDA the losses
also equal the CPU kernels.
"""
from __future__ import annotations

import warnings

import pytest
import torch

from helpers.cuda_cases import cuda_only
from slade_ext import loss_ops, losses, miners, reference
from slade_ext._compat import FallbackWarning

pml_losses = pytest.importorskip("pytorch_metric_learning.losses")
pml_miners = pytest.importorskip("pytorch_metric_learning.miners")
pml_distances = pytest.importorskip("pytorch_metric_learning.distances")


def make_inputs(n, n_classes, d=16, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g).to(dtype), torch.randint(0, n_classes, (n,), generator=g)


LOSSES = [
    ("MultiSimilarityLoss", {}),
    ("MultiSimilarityLoss", {"alpha": 1.0, "beta": 20.0, "base": 0.2}),
    ("MultiSimilarityLoss", {"distance": "l2"}),
    ("ContrastiveLoss", {}),
    ("ContrastiveLoss", {"pos_margin": 0.3, "neg_margin": 0.8}),
    ("ContrastiveLoss", {"pos_margin": 0.9, "neg_margin": 0.2, "distance": "cosine"}),
    ("ContrastiveLoss", {"pos_margin": 0.9, "neg_margin": 0.2, "distance": "dot normalised"}),
    ("MultiSimilarityLoss", {"distance": "dot normalised"}),
    # PML's reducers: any one on the per-anchor multi-similarity losses; per side on the contrastive pair losses
    ("MultiSimilarityLoss", {"reducer": "sum"}),
    ("MultiSimilarityLoss", {"reducer": "threshold", "distance": "l2"}),
    ("MultiSimilarityLoss", {"reducer": "avg_nonzero"}),
    ("ContrastiveLoss", {"reducer": "mean"}),
    ("ContrastiveLoss", {"reducer": "sum", "pos_margin": 0.9, "neg_margin": 0.2, "distance": "cosine"}),
    ("ContrastiveLoss", {"reducer": "avg_nonzero", "pos_margin": 0.3}),
    ("MultiSimilarityLoss", {"distance": "l2 squared", "alpha": 1.5, "beta": 20.0, "base": 1.2}),
    ("MultiSimilarityLoss", {"distance": "l2 squared", "reducer": "threshold"}),
    ("ContrastiveLoss", {"distance": "l2 squared", "pos_margin": 0.2, "neg_margin": 1.6}),
    ("ContrastiveLoss", {"distance": "l2 squared", "reducer": "mean"}),
    # unnormalised rows (norms ~4 here): dot products ~ +-16 and distances ~6, margins on their scale; beta = 50 on
    # such dot products needs the kernels' shifted log-sum-exp
    ("MultiSimilarityLoss", {"distance": "dot unnormalised"}),
    ("MultiSimilarityLoss", {"distance": "dot unnormalised", "alpha": 0.5, "beta": 2.0, "base": 1.0}),
    ("MultiSimilarityLoss", {"distance": "l2 unnormalised", "base": 5.0}),
    ("MultiSimilarityLoss", {"distance": "l2 squared unnormalised", "alpha": 0.1, "beta": 0.5, "base": 30.0}),
    ("ContrastiveLoss", {"distance": "dot unnormalised", "pos_margin": 2.0, "neg_margin": 1.0}),
    ("ContrastiveLoss", {"distance": "l2 unnormalised", "pos_margin": 4.0, "neg_margin": 6.0}),
    ("ContrastiveLoss", {"distance": "l2 squared unnormalised", "pos_margin": 20.0, "neg_margin": 40.0,
                         "reducer": "sum"}),
]
DISTANCES = {"cosine": lambda: pml_distances.CosineSimilarity(), "l2": lambda: pml_distances.LpDistance(),
             # PML's CosineSimilarity is this DotProductSimilarity: both run the fused "cosine" kernels
             "dot normalised": lambda: pml_distances.DotProductSimilarity(),
             "l2 squared": lambda: pml_distances.LpDistance(power=2),
             "dot unnormalised": lambda: pml_distances.DotProductSimilarity(normalize_embeddings=False),
             "l2 unnormalised": lambda: pml_distances.LpDistance(normalize_embeddings=False),
             "l2 squared unnormalised": lambda: pml_distances.LpDistance(normalize_embeddings=False, power=2)}


def _reducers():
    reducers = pytest.importorskip("pytorch_metric_learning.reducers")
    return {"mean": reducers.MeanReducer, "sum": reducers.SumReducer, "avg_nonzero": reducers.AvgNonZeroReducer,
            # keeps the per-anchor losses between 1 and 3: about half of them here
            "threshold": lambda: reducers.ThresholdReducer(low=1.0, high=3.0)}


def build(name, kwargs):
    kwargs = dict(kwargs)
    if "distance" in kwargs:
        kwargs["distance"] = DISTANCES[kwargs["distance"]]()
    if "reducer" in kwargs:
        kwargs["reducer"] = _reducers()[kwargs["reducer"]]()
    with warnings.catch_warnings():
        warnings.simplefilter("error", FallbackWarning)  # every option of LOSSES has the fused path
        ours = getattr(losses, name)(**kwargs)
    assert ours.fallback is None
    return ours, getattr(pml_losses, name)(**kwargs)


def to(device, x):
    if x is None:
        return None
    if isinstance(x, tuple):
        return tuple(t.to(device) for t in x)
    return x.to(device)


def compare(name, kwargs, emb, labels=None, indices_tuple=None, ref_emb=None, ref_labels=None, rtol=1e-9,
            device="cpu"):
    """Loss values and gradients (embeddings and ref_emb) of ours and PML's on copies of the same inputs."""
    ours_fn, pml_fn = build(name, kwargs)
    labels, indices_tuple, ref_labels = to(device, labels), to(device, indices_tuple), to(device, ref_labels)
    results = []
    for fn in (ours_fn, pml_fn):
        e = emb.clone().to(device).requires_grad_()
        r = None if ref_emb is None else ref_emb.clone().to(device).requires_grad_()
        loss = fn(e, labels, indices_tuple, r, ref_labels)
        loss.backward()
        results.append((loss.detach(), e.grad, None if r is None else r.grad))
    (ours, g_ours, r_ours), (theirs, g_pml, r_pml) = results
    assert ours.dtype == theirs.dtype
    torch.testing.assert_close(ours, theirs, rtol=rtol, atol=rtol)
    torch.testing.assert_close(g_ours, g_pml, rtol=rtol * 100, atol=rtol)
    if ref_emb is not None:
        torch.testing.assert_close(r_ours, r_pml, rtol=rtol * 100, atol=rtol)
    return ours


def mined(kind, emb, labels):
    if kind == "pairs":
        return pml_miners.MultiSimilarityMiner(epsilon=0.3)(emb, labels)
    if kind == "triplets":
        return pml_miners.TripletMarginMiner(margin=0.3)(emb, labels)
    a1, p, a2, n = pml_miners.PairMarginMiner(pos_margin=0.5, neg_margin=1.2)(emb, labels)
    return torch.cat([a1, a1[::2]]), torch.cat([p, p[::2]]), torch.cat([a2, a2[::3]]), torch.cat([n, n[::3]])


@pytest.mark.parametrize("name,kwargs", LOSSES)
@pytest.mark.parametrize("n,n_classes", [(40, 4), (100, 70), (90, 2)])
@pytest.mark.parametrize("tuples", [None, "pairs", "triplets", "duplicates"])
def test_loss_equals_pml(device, name, kwargs, n, n_classes, tuples):
    emb, labels = make_inputs(n, n_classes)
    indices = None if tuples is None else mined(tuples, emb, labels)
    compare(name, kwargs, emb, labels, indices, device=device)


@pytest.mark.parametrize("name,kwargs", [c for c in LOSSES if "reducer" not in c[1]][:8])
@pytest.mark.parametrize("offset", [2**31, 2**32, -2**40])
@pytest.mark.parametrize("with_ref", [False, True])
def test_labels_beyond_int32_equal_pml(name, kwargs, offset, with_ref):
    """The CPU loss epilogues compare int32 copies of the labels when every label fits: labels that do not (some
    shifted by `offset`, which truncation to 32 bits would map back onto the others) take the general loops, and
    the values and gradients stay PML's."""
    emb, labels = make_inputs(60, 6)
    ref_emb, ref_labels = make_inputs(50, 6, seed=1) if with_ref else (None, None)
    shift = lambda lab: torch.where(torch.arange(len(lab)) % 2 == 0, lab, lab + offset)  # noqa: E731
    compare(name, kwargs, emb, shift(labels), None, ref_emb, None if ref_labels is None else shift(ref_labels))


@pytest.mark.parametrize("name,kwargs", LOSSES)
@pytest.mark.parametrize("m", [150, 10])
def test_cross_batch_equals_pml(device, name, kwargs, m):
    emb, labels = make_inputs(60, 5)
    ref_emb, ref_labels = make_inputs(m, 5, seed=1)
    compare(name, kwargs, emb, labels, None, ref_emb, ref_labels, device=device)


@pytest.mark.parametrize("kwargs", [{}, {"distance": "l2 unnormalised", "pos_margin": 4.0, "neg_margin": 6.0}])
def test_l2_backward_over_several_tiles_equals_pml(device, kwargs):
    """An L2 backward runs quarter-size CPU tiles (1M values) beside the tile's reciprocal: a 64 x 20,000 reference
    is one forward tile and two backward ones, with the rows' and the references' gradients."""
    emb, labels = make_inputs(64, 5, d=4)
    ref_emb, ref_labels = make_inputs(20_000, 5, d=4, seed=1)
    compare("ContrastiveLoss", kwargs, emb, labels, None, ref_emb, ref_labels, device=device)


@pytest.mark.parametrize("name,kwargs", LOSSES[::3])
def test_float32_equals_pml(device, name, kwargs):
    emb, labels = make_inputs(128, 16, dtype=torch.float32)
    compare(name, kwargs, emb, labels, rtol=2e-5, device=device)


@pytest.mark.parametrize("name,kwargs", LOSSES[::3])
def test_half_inputs_close_to_pml(device, name, kwargs):
    """PML computes half inputs in half; we accumulate in float32 and return the embeddings' dtype."""
    emb, labels = make_inputs(64, 8, dtype=torch.float32)
    emb, labels = emb.to(device), labels.to(device)
    with torch.autocast(device, dtype=torch.float16):
        half = torch.nn.functional.linear(emb, torch.eye(16, device=device))
    ours_fn, pml_fn = build(name, kwargs)
    ours, theirs = ours_fn(half, labels), pml_fn(half, labels)
    assert ours.dtype == torch.float16
    torch.testing.assert_close(ours.float(), theirs.float(), rtol=1e-2, atol=1e-2)
    torch.testing.assert_close(ours.float(), ours_fn(half.float(), labels), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("name,kwargs", LOSSES[::3])
def test_too_few_pairs_gives_attached_zero(device, name, kwargs):
    emb, labels = make_inputs(6, 3)
    one_pair = (torch.tensor([0]), torch.tensor([1]), torch.tensor([2]), torch.tensor([3]))
    empty = tuple(torch.empty(0, dtype=torch.long) for _ in range(3))
    for indices in (one_pair, empty):
        value = compare(name, kwargs, emb, labels, indices, device=device)
        assert value.item() == 0.0
    compare(name, kwargs, emb[:2], torch.tensor([0, 0]), device=device)  # one positive pair each way, no negatives
    compare(name, kwargs, emb, torch.zeros(6, dtype=torch.long), device=device)  # positives only


def test_reference_losses_agree(device):
    emb, labels = make_inputs(50, 5)
    indices = mined("pairs", emb, labels)
    for name, ref_fn in (("MultiSimilarityLoss", reference.multi_similarity_loss),
                         ("ContrastiveLoss", reference.contrastive_loss)):
        ours = getattr(losses, name)()
        for it in (None, indices):
            got = ours(emb.to(device), labels.to(device), to(device, it))
            torch.testing.assert_close(got.cpu(), ref_fn(emb, labels, it))


def test_ms_rejects_a_pair_both_positive_and_negative():
    emb, labels = make_inputs(10, 2)
    indices = (torch.tensor([0, 1]), torch.tensor([2, 3]), torch.tensor([0, 5]), torch.tensor([2, 6]))
    with pytest.raises(ValueError, match="positive or negative"):
        losses.MultiSimilarityLoss()(emb, labels, indices)


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda f: f(torch.randn(10, 4)), "labels and indices_tuple"),
        (lambda f: f(torch.randn(10, 4), torch.zeros(8, dtype=torch.long)), "labels"),
        (lambda f: f(torch.randn(10, 4), None, (torch.tensor([0, 1]), torch.tensor([1, 12]), torch.tensor([0]))),
         r"indices_tuple\[1\]"),
        (lambda f: f(torch.randn(10, 4), None, (torch.tensor([0]), torch.tensor([1]))), "indices_tuple"),
        (lambda f: f(torch.randn(10, 4), torch.zeros(10, dtype=torch.long), None, torch.randn(4, 4)), "ref_labels"),
    ],
)
@pytest.mark.parametrize("cls", [losses.MultiSimilarityLoss, losses.ContrastiveLoss])
def test_bad_input_names_the_argument(cls, call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call(cls())


def test_unsupported_options_fall_back_once():
    reducers = pytest.importorskip("pytorch_metric_learning.reducers")
    emb, labels = make_inputs(30, 3)
    with pytest.warns(FallbackWarning, match="reducer"):  # a threshold on the pair losses needs each of them
        ours = losses.ContrastiveLoss(reducer=reducers.ThresholdReducer(low=0.1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        value = ours(emb, labels)
    torch.testing.assert_close(value, pml_losses.ContrastiveLoss(reducer=reducers.ThresholdReducer(low=0.1))(
        emb, labels))
    with pytest.warns(FallbackWarning, match="distance"):
        losses.MultiSimilarityLoss(distance=pml_distances.LpDistance(p=1))


@pytest.mark.parametrize("n_classes", [4, 40])  # 40 classes of 30 rows: too few pairs, PML's zero losses
def test_do_nothing_reducer_returns_pml_per_anchor_losses(n_classes):
    reducers = pytest.importorskip("pytorch_metric_learning.reducers")
    emb, labels = make_inputs(30, n_classes)
    if n_classes == 40:
        labels = torch.arange(30)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FallbackWarning)
        ours = losses.MultiSimilarityLoss(reducer=reducers.DoNothingReducer())(emb, labels)
    theirs = pml_losses.MultiSimilarityLoss(reducer=reducers.DoNothingReducer())(emb, labels)
    got, want = ours["loss"], theirs["loss"]
    assert got["reduction_type"] == want["reduction_type"]
    if torch.is_tensor(want["losses"]):
        torch.testing.assert_close(got["losses"], want["losses"], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(got["indices"], want["indices"])
    else:
        assert got["losses"] == want["losses"] == 0 and got["indices"] is want["indices"] is None


def test_distributed_efficient_mode_refuses_a_reducer_by_name():
    reducers = pytest.importorskip("pytorch_metric_learning.reducers")
    from slade_ext.distributed import DistributedLossWrapper

    with pytest.raises(TypeError, match="SumReducer"):
        DistributedLossWrapper(losses.MultiSimilarityLoss(reducer=reducers.SumReducer()), efficient=True)
    DistributedLossWrapper(losses.ContrastiveLoss(reducer=reducers.AvgNonZeroReducer()), efficient=True)


# ---- the fused ops themselves -----------------------------------------------------------------------------------


@pytest.mark.parametrize("op", ["multi_similarity_loss_rows", "contrastive_loss_rows"])
@pytest.mark.parametrize("with_lists", [False, True])
def test_loss_ops_gradcheck(device, op, with_lists):
    emb, labels = make_inputs(12, 3, d=5)
    ref, ref_labels = make_inputs(9, 3, d=5, seed=1)
    lists = None
    if with_lists:
        a1, p, a2, n = pml_miners.PairMarginMiner(pos_margin=0.0, neg_margin=2.0)(emb, labels, ref, ref_labels)
        lists = to(device, loss_ops.pair_lists(a1, p, a2, n, 12, 9, as_mask=op.startswith("multi")))
    emb, labels, ref, ref_labels = (t.to(device) for t in (emb, labels, ref, ref_labels))
    fn = getattr(loss_ops, op)

    def accumulators(e, r):
        return fn(e, labels, r, ref_labels, lists)[:, :2]

    torch.autograd.gradcheck(accumulators, (emb.requires_grad_(), ref.requires_grad_()))


def test_loss_ops_opcheck(device):
    emb, labels = make_inputs(10, 3, d=4, dtype=torch.float32)
    lists = to(device, loss_ops.pair_lists(*pml_miners.MultiSimilarityMiner()(emb, labels), 10, 10, as_mask=True))
    emb, labels = emb.to(device), labels.to(device)
    for args in ((emb.requires_grad_(), labels, None, None, None, None, None, None, 2.0, 50.0, 0.5, "cosine"),
                 (emb, None, None, None, *lists, 2.0, 50.0, 0.5, "l2")):
        torch.library.opcheck(torch.ops.slade.multi_similarity_loss_rows, args)
    torch.library.opcheck(
        torch.ops.slade.contrastive_loss_rows, (emb, labels, None, None, None, None, None, None, 0.0, 1.0, "l2")
    )


# ---- a training loop: miner -> loss -> backward -> step ---------------------------------------------------------


@pytest.mark.parametrize(
    "miner_name,loss_name",
    [("MultiSimilarityMiner", "MultiSimilarityLoss"), ("BatchHardMiner", "ContrastiveLoss"),
     ("PairMarginMiner", "ContrastiveLoss"), ("TripletMarginMiner", "MultiSimilarityLoss")],
)
def test_training_loop_matches_pml(device, miner_name, loss_name):
    x, y = (t.to(device) for t in make_inputs(96, 12, d=20, seed=3))
    curves = []
    for lib_miners, lib_losses in ((miners, losses), (pml_miners, pml_losses)):
        torch.manual_seed(0)
        model = torch.nn.Linear(20, 8).double().to(device)
        opt = torch.optim.SGD(model.parameters(), lr=0.5)
        miner, loss_fn = getattr(lib_miners, miner_name)(), getattr(lib_losses, loss_name)()
        curve = []
        for _ in range(6):
            emb = model(x)
            loss = loss_fn(emb, y, miner(emb, y))
            opt.zero_grad()
            loss.backward()
            opt.step()
            curve.append(loss.item())
        curves.append(curve)
    assert curves[0] == pytest.approx(curves[1], rel=1e-9, abs=1e-12)
    assert curves[0][0] != curves[0][-1]  # the loop actually trains


@pytest.mark.parametrize("name,kwargs", LOSSES[::3])
@pytest.mark.parametrize("tuples", [None, "duplicates"])
def test_loss_matches_cpu_kernels(device, name, kwargs, tuples):
    cuda_only(device)
    emb, labels = make_inputs(300, 20, dtype=torch.float32)
    indices = None if tuples is None else mined(tuples, emb, labels)
    results = []
    for dev in ("cpu", device):
        fn, _ = build(name, kwargs)
        e = emb.detach().to(dev).requires_grad_()
        it = None if indices is None else tuple(t.to(dev) for t in indices)
        loss = fn(e, labels.to(dev), it)
        loss.backward()
        results.append((loss.detach().cpu(), e.grad.cpu()))
    torch.testing.assert_close(results[1][0], results[0][0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(results[1][1], results[0][1], rtol=1e-4, atol=1e-6)


# ---- backward computes only the gradients asked for (ctx.needs_input_grad) -------------------------------------


@pytest.mark.parametrize("op", ["multi_similarity_loss_rows", "contrastive_loss_rows"])
@pytest.mark.parametrize("pattern", [(True, False), (False, True), (True, True)], ids=str)
def test_loss_ops_backward_computes_only_the_needed_gradients(device, op, pattern):
    emb, labels = (t.to(device) for t in make_inputs(12, 3, d=5))
    ref, ref_labels = (t.to(device) for t in make_inputs(9, 3, d=5, seed=1))
    fn = getattr(loss_ops, op)
    full = [emb.clone().requires_grad_(), ref.clone().requires_grad_()]
    fn(full[0], labels, full[1], ref_labels)[:, :2].sum().backward()
    partial = [t.clone().requires_grad_(wanted) for t, wanted in zip((emb, ref), pattern)]
    fn(partial[0], labels, partial[1], ref_labels)[:, :2].sum().backward()
    for leaf, reference_leaf, wanted in zip(partial, full, pattern):
        if wanted:
            torch.testing.assert_close(leaf.grad, reference_leaf.grad)
        else:
            assert leaf.grad is None


@pytest.mark.parametrize("op", ["multi_similarity_loss_rows", "contrastive_loss_rows"])
@pytest.mark.parametrize("self_comparison", [False, True])
def test_loss_backward_ops_honour_output_mask(device, op, self_comparison):
    """The kernels: a gradient not asked for is an empty [0] tensor, the others are unchanged."""
    emb, labels = (t.to(device) for t in make_inputs(12, 3, d=5))
    ref, ref_labels = (None, None) if self_comparison else (t.to(device) for t in make_inputs(9, 3, d=5, seed=1))
    params = (2.0, 50.0, 0.5, "cosine") if op.startswith("multi") else (0.0, 1.0, "l2")
    forward, backward = getattr(torch.ops.slade, op), getattr(torch.ops.slade, f"{op}_backward")
    tensors = (emb, labels, ref, ref_labels, None, None, None, None)
    rows = forward(*tensors, *params)
    rows = rows[0] if isinstance(rows, tuple) else rows  # the contrastive op also returns its (empty) record
    grad_rows = torch.randn(rows.shape, dtype=torch.float64).to(device)
    full = backward(grad_rows, rows, *tensors, *params, output_mask=[True, True])
    for mask in ([True, False], [False, True], [False, False]):
        out = backward(grad_rows, rows, *tensors, *params, output_mask=mask)
        for wanted, f, m, present in zip(mask, full, out, (True, not self_comparison)):
            if wanted and present:
                torch.testing.assert_close(m, f, rtol=0, atol=0)
            else:
                assert m.shape == (0,)


class FakeCtx:
    """What a registered backward reads from its autograd context."""

    def __init__(self, needs_input_grad, saved_tensors, params):
        self.needs_input_grad = tuple(needs_input_grad)
        self.saved_tensors = tuple(saved_tensors)
        self.params = params
        self.n_inputs = len(needs_input_grad)


@pytest.mark.parametrize("pattern", [(True, False), (False, True), (True, True)], ids=str)
def test_registered_loss_backward_returns_none_for_inputs_without_grad(device, pattern):
    emb, labels = (t.to(device) for t in make_inputs(12, 3, d=5))
    ref, ref_labels = (t.to(device) for t in make_inputs(9, 3, d=5, seed=1))
    params = (0.0, 1.0, "l2", 0, -1)  # the margins, the distance and the query rows, as the dispatcher passes them
    tensors = (emb, labels, ref, ref_labels, None, None, None, None)
    rows, *_ = torch.ops.slade.contrastive_loss_rows(*tensors, *params)
    backward = loss_ops._make_backward(torch.ops.slade.contrastive_loss_rows_backward)
    needs = (pattern[0], False, pattern[1]) + (False,) * (len(tensors) - 3 + len(params))
    out = backward(FakeCtx(needs, tensors + (rows,), params), torch.ones_like(rows))
    assert [g is not None for g in out] == [pattern[0], False, pattern[1]] + [False] * (len(needs) - 3)


@pytest.mark.parametrize("name", ["MultiSimilarityLoss", "ContrastiveLoss"])
def test_fallback_finds_pml_class_when_pml_namespace_is_patched(monkeypatch, name):
    """`pytorch_metric_learning.losses.X = slade_ext.losses.X` (adopting the drop-in by patching) must not make the
    fallback recurse: it builds PML's own X from its defining module. monkeypatch undoes the patch."""
    original = getattr(pml_losses, name)
    monkeypatch.setattr(pml_losses, name, getattr(losses, name))
    distance = pml_distances.LpDistance(p=1)
    with pytest.warns(FallbackWarning):
        ours = getattr(losses, name)(distance=distance)
    assert type(ours.fallback) is original
    g = torch.Generator().manual_seed(0)
    emb, labels = torch.randn(30, 8, generator=g), torch.randint(0, 4, (30,), generator=g)
    torch.testing.assert_close(ours(emb, labels), original(distance=distance)(emb, labels))
