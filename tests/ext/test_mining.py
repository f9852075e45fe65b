"""The mining family: mine_multi_similarity, mine_pair_margin, mine_batch_hard, mine_triplet_margin and the four
PML-compatible miners of slade_ext.miners.

Every op check takes `device`. On the CPU the ops equal the pure-PyTorch reference exactly (same pairs, same
order); on CUDA they equal the CPU kernels exactly on exact inputs (tests/support/helpers/cuda_cases.py). Parity
with pytorch-metric-learning (ops and miners) lives in test_mining_pml.py, the only place it is tested.
"""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from helpers.cuda_cases import (
    CUDA_TILE_ELEMS,
    EXACT_SHAPES,
    MEDIUM_SHAPES,
    assert_indices_match,
    clustered,
    column_major,
    cuda_only,
    exact_case_inputs,
    gaussian,
    sign_embeddings,
    skip_inexact_on_cuda,
    strided,
)
from helpers.op_cases import SHAPES, assert_same_indices, case_inputs, embeddings, labels, with_ties
from slade_ext import miners, ops, reference

# The configurations every op-level check runs (the first four are the defaults of the original CPU checks).
MINERS = {
    "multi_similarity": dict(epsilon=0.1),
    "pair_margin": dict(pos_margin=0.2, neg_margin=0.1),
    "batch_hard": dict(),
    "triplet_margin": dict(margin=0.2, type_of_triplets="all"),
}
BASIC_CONFIGS = list(MINERS.items())
MINER_CONFIGS = [
    ("multi_similarity", dict(epsilon=0.1)),
    ("pair_margin", dict(pos_margin=0.2, neg_margin=0.1)),
    ("batch_hard", dict()),
    ("triplet_margin", dict(margin=0.2, type_of_triplets="all", max_triplets_per_anchor=5)),
    ("triplet_margin", dict(margin=-0.3, type_of_triplets="hard")),
    ("triplet_margin", dict(margin=0.3, type_of_triplets="semihard")),
    ("triplet_margin", dict(margin=0.1, type_of_triplets="easy", max_triplets_per_anchor=50)),
]
MINER_IDS = [f"{name}-{i}" for i, (name, _) in enumerate(MINER_CONFIGS)]
TOO_LARGE_FOR_REFERENCE = (
    "the reference's O(N * M^2) triplet tensor is too large at this size; the CPU triplets are checked against it "
    "on the smaller shapes"
)


def op(name):
    return getattr(ops, f"mine_{name}")


def ref_op(name):
    return getattr(reference, f"mine_{name}")


def assert_miner_matches(device, name, *args, **kwargs):
    return assert_indices_match(device, op(name), ref_op(name), *args, **kwargs)


# ---- every rule, shape and distance ----------------------------------------------------------------------------


def spec_cases():
    """(kind, shape, config): continuous float32 with the basic configs on the small shapes (CPU only), exact
    inputs with every config on the small and medium shapes, and uncapped "all" triplets of sign inputs."""
    cases = [("float32", s, c) for s in SHAPES for c in BASIC_CONFIGS]
    cases += [(kind, s, c) for kind in ("sign32", "float64") for s in EXACT_SHAPES for c in MINER_CONFIGS]
    cases += [("sign32", s, ("triplet_margin", dict(margin=0.2))) for s in SHAPES]
    return cases


def spec_id(case):
    kind, shape, (name, kwargs) = case
    return f"{kind}-{shape[0]}-{name}-" + "-".join(f"{k}={v}" for k, v in kwargs.items())


@pytest.mark.parametrize("case", spec_cases(), ids=[spec_id(c) for c in spec_cases()])
@pytest.mark.parametrize("distance", ["cosine", "l2"])
def test_miner_matches_spec(device, distance, case):
    kind, shape, (name, kwargs) = case
    if kind == "float32":
        skip_inexact_on_cuda(device)
        inputs = case_inputs(*shape)
    else:
        inputs = exact_case_inputs(kind, *shape)
    if device == "cpu" and name == "triplet_margin" and shape in MEDIUM_SHAPES:
        pytest.skip(TOO_LARGE_FOR_REFERENCE)
    assert_miner_matches(device, name, *inputs, distance=distance, **kwargs)


@pytest.mark.parametrize("miner", list(MINERS))
@pytest.mark.parametrize("seed", [3, 4, 5])
def test_miner_fresh_random_inputs(device, miner, seed):
    skip_inexact_on_cuda(device)
    g = torch.Generator().manual_seed(seed)
    n = int(torch.randint(2, 150, (1,), generator=g))
    emb = embeddings(n, int(torch.randint(2, 40, (1,), generator=g)), seed)
    lab = labels(n, int(torch.randint(1, 20, (1,), generator=g)), seed)
    assert_miner_matches(device, miner, emb, lab, **MINERS[miner])


@pytest.mark.parametrize("type_of_triplets", ["all", "hard", "semihard", "easy"])
@pytest.mark.parametrize("distance", ["cosine", "l2"])
def test_triplet_types(device, type_of_triplets, distance):
    skip_inexact_on_cuda(device)
    emb, lab = embeddings(50), labels(50, 5)
    assert_miner_matches(device, "triplet_margin", emb, lab, margin=0.3, type_of_triplets=type_of_triplets,
                         distance=distance)


# (kind, cap): continuous float32 on 40 rows; sign inputs on 600 rows (rows longer than a CUDA block).
CAP_CASES = [("float32", 1), ("float32", 7), ("float32", 100), ("sign32", 1), ("sign32", 3), ("sign32", 1000)]


@pytest.mark.parametrize("kind,cap", CAP_CASES)
def test_triplet_cap_keeps_first_k_per_anchor(device, kind, cap):
    if kind == "float32":
        skip_inexact_on_cuda(device)
        emb, lab, kwargs = embeddings(40), labels(40, 4), {}
    else:
        if device == "cpu":
            pytest.skip(TOO_LARGE_FOR_REFERENCE)
        emb, lab, kwargs = sign_embeddings(600), labels(600, 7), dict(margin=0.2)
    got = assert_miner_matches(device, "triplet_margin", emb, lab, max_triplets_per_anchor=cap, **kwargs)
    assert torch.bincount(got[0]).max() <= cap


# ---- ties, labels, dtypes, layouts, empty inputs ---------------------------------------------------------------


def kind_configs(kinds_configs):
    return [(kind, c) for kind, configs in kinds_configs for c in configs]


def kind_config_id(case):
    kind, (name, kwargs) = case
    return f"{kind}-{name}-" + "-".join(f"{k}={v}" for k, v in kwargs.items())


TIES_CASES = kind_configs([("float32", BASIC_CONFIGS), ("float64", MINER_CONFIGS)])


@pytest.mark.parametrize("case", TIES_CASES, ids=[kind_config_id(c) for c in TIES_CASES])
def test_miner_ties(device, case):
    # Duplicated rows tie exactly, so batch hard must pick the smallest index on every device.
    kind, (name, kwargs) = case
    if kind == "float32":
        skip_inexact_on_cuda(device)
        emb, lab = with_ties(embeddings(40)), labels(40, 4)
    else:
        emb, lab = with_ties(gaussian(300)), labels(300, 4)
    assert_miner_matches(device, name, emb, lab, **kwargs)
    assert_miner_matches(device, name, emb, lab, emb.clone(), lab.clone(), **kwargs)


def test_batch_hard_ties_pick_smallest_index(device):
    # Anchor 0 has two identical positives (1, 2) and two identical negatives (3, 4).
    emb = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [1.0, 0.1], [1.0, 0.1]], device=device)
    lab = torch.tensor([0, 0, 0, 1, 1], device=device)
    a, p, n = ops.mine_batch_hard(emb, lab)
    assert (int(a[0]), int(p[0]), int(n[0])) == (0, 1, 3)


MINUS_ONE_CASES = kind_configs([("float32", BASIC_CONFIGS), ("sign32", MINER_CONFIGS)])


@pytest.mark.parametrize("case", MINUS_ONE_CASES, ids=[kind_config_id(c) for c in MINUS_ONE_CASES])
def test_miner_label_minus_one_is_an_ordinary_label(device, case):
    kind, (name, kwargs) = case
    if kind == "float32":
        skip_inexact_on_cuda(device)
        emb, lab = embeddings(50), labels(50, 3) - 1  # labels in {-1, 0, 1}: PML gives -1 no special meaning
    else:
        emb, lab = sign_embeddings(200), labels(200, 3) - 1
    got = assert_miner_matches(device, name, emb, lab, **kwargs)
    assert any(t.numel() for t in got)


HALF_AND_DOUBLE = (torch.float16, torch.bfloat16, torch.float64)
DTYPE_CASES = [("gaussian", dtype, c) for dtype in HALF_AND_DOUBLE for c in BASIC_CONFIGS]
DTYPE_CASES += [("sign", dtype, c) for dtype in (torch.float32,) + HALF_AND_DOUBLE for c in MINER_CONFIGS]
DTYPE_IDS = [f"{kind}-{str(dtype)[6:]}{kind_config_id(('', c))}" for kind, dtype, c in DTYPE_CASES]


@pytest.mark.parametrize("case", DTYPE_CASES, ids=DTYPE_IDS)
def test_miner_dtypes(device, case):
    kind, dtype, (name, kwargs) = case
    if kind == "gaussian":
        skip_inexact_on_cuda(device)
        assert_miner_matches(device, name, embeddings(60, dtype=dtype), labels(60, 5), **kwargs)
        return
    emb, lab = sign_embeddings(150, dtype=dtype), labels(150, 5)
    ref, ref_lab = sign_embeddings(170, seed=4, dtype=dtype), labels(170, 5, seed=4)
    assert_miner_matches(device, name, emb, lab, **kwargs)
    assert_miner_matches(device, name, emb, lab, ref, ref_lab, **kwargs)


LAYOUT_CASES = kind_configs([("float32", BASIC_CONFIGS), ("sign32", MINER_CONFIGS)])


@pytest.mark.parametrize("layout", [strided, column_major])
@pytest.mark.parametrize("case", LAYOUT_CASES, ids=[kind_config_id(c) for c in LAYOUT_CASES])
def test_miner_non_contiguous_and_int32_labels(device, case, layout):
    kind, (name, kwargs) = case
    if kind == "float32":  # against itself
        skip_inexact_on_cuda(device)
        emb, lab = embeddings(45), labels(45, 5)
        want = ref_op(name)(emb, lab, **kwargs)
        got = op(name)(layout(emb, device), lab.to(device, torch.int32), **kwargs)
    else:  # against a reference set
        emb, lab = sign_embeddings(120), labels(120, 5)
        ref, ref_lab = sign_embeddings(90, seed=6), labels(90, 5, seed=6)
        spec = ref_op(name) if device == "cpu" else op(name)
        want = spec(emb, lab, ref, ref_lab, **kwargs)
        got = op(name)(layout(emb, device), lab.to(device, torch.int32), layout(ref, device), ref_lab.to(device),
                       **kwargs)
    assert_same_indices([t.cpu() for t in got], want)


@pytest.mark.parametrize("config", MINER_CONFIGS, ids=MINER_IDS)
def test_miner_empty_inputs_and_one_class(device, config):
    name, kwargs = config
    empty, no_labels = torch.zeros(0, 16), torch.zeros(0, dtype=torch.long)
    # Empty outputs (the reference cannot reduce over nothing: the CPU kernels are the spec on both devices).
    for d in (8, 16):
        got = assert_indices_match(device, op(name), op(name), empty[:, :d], no_labels, **kwargs)
        assert all(t.numel() == 0 and t.dtype == torch.int64 for t in got)
    # An empty reference set: nothing to pair with.
    for emb, lab in ((sign_embeddings(5), labels(5, 2)), (embeddings(5, 8), labels(5, 2))):
        got = assert_indices_match(device, op(name), op(name), emb, lab, empty[:, : emb.shape[1]], no_labels,
                                   **kwargs)
        assert all(t.numel() == 0 for t in got)
    # One class: positives only, so nothing but pair-margin/multi-similarity positives can be selected.
    assert_miner_matches(device, name, sign_embeddings(300), torch.zeros(300, dtype=torch.long), **kwargs)


def test_self_pair_rule_follows_identity(device):
    emb, lab = embeddings(20).to(device), labels(20, 3).to(device)
    same_object = ops.mine_pair_margin(emb, lab, emb, lab, pos_margin=2.0, neg_margin=-2.0)
    copy = ops.mine_pair_margin(emb, lab, emb.clone(), lab.clone(), pos_margin=2.0, neg_margin=-2.0)
    # With a copy as reference set, (i, i) is a positive pair; with the same object it is excluded.
    assert copy[0].numel() == same_object[0].numel() + 20
    assert not torch.any(same_object[0] == same_object[1])


# ---- several tiles, determinism, devices -----------------------------------------------------------------------


def test_outputs_span_several_cpu_tiles(device):
    if device != "cpu":
        pytest.skip("CPU tiling (4M values per tile); the CUDA tiling is test_miner_spanning_several_cuda_tiles")
    # M = 5000 refs: the CPU tile budget (4M values) holds 838 rows, so 2000 rows need 3 tiles.
    emb, lab = embeddings(2000, 8), labels(2000, 50)
    ref_emb, ref_lab = embeddings(5000, 8, seed=9), labels(5000, 50, seed=9)
    for miner in ("multi_similarity", "batch_hard"):
        assert_miner_matches(device, miner, emb, lab, ref_emb, ref_lab, **MINERS[miner])


@pytest.mark.parametrize("name,kwargs", [("multi_similarity", dict(epsilon=0.1, distance="cosine")),
                                         ("pair_margin", dict(pos_margin=1.5, neg_margin=1.8, distance="l2"))])
def test_dense_outputs_span_several_cpu_tiles_and_ignore_threads(device, name, kwargs):
    if device != "cpu":
        pytest.skip("CPU tiling and threads; the CUDA tiling is test_miner_spanning_several_cuda_tiles")
    # Random unit vectors, as an untrained model gives: most pairs qualify (millions of the 6.25M), over two
    # CPU tiles (4M values hold 1677 rows of M = 2500), so the outputs of each tile are gathered.
    g = torch.Generator().manual_seed(3)
    emb = torch.nn.functional.normalize(torch.randn(2500, 16, generator=g), dim=1)
    lab = torch.randint(0, 300, (2500,), generator=g)
    got = assert_miner_matches(device, name, emb, lab, None, None, **kwargs)
    assert got[2].numel() > 0.8 * 2500 * 2500
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one_thread = op(name)(emb, lab, None, None, **kwargs)
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(a, b) for a, b in zip(got, one_thread))


def test_dense_and_sparse_cpu_tiles_in_one_output(device):
    if device != "cpu":
        pytest.skip("CPU tiling: a tile selecting one pair in 16 or more keeps verdict bytes, a sparser one indices")
    # 5000 rows against M = 2500 refs: 3 CPU tiles of up to 1677 rows. Random rows select about half their pairs
    # (dense: written late, straight into the op's outputs); the zero rows of the middle tile have dot product 0
    # with every reference, so only their few same-label positives qualify (sparse: the tile's own outputs, copied).
    g = torch.Generator().manual_seed(5)
    emb = torch.nn.functional.normalize(torch.randn(5000, 16, generator=g), dim=1)
    emb[1677:3354] = 0
    lab = torch.randint(0, 300, (5000,), generator=g)
    ref_emb = torch.nn.functional.normalize(torch.randn(2500, 16, generator=g), dim=1)
    ref_lab = torch.randint(0, 300, (2500,), generator=g)
    kwargs = dict(pos_margin=0.5, neg_margin=0.0, distance="dot")
    got = assert_miner_matches(device, "pair_margin", emb, lab, ref_emb, ref_lab, **kwargs)
    middle_neg = (got[2] >= 1677) & (got[2] < 3354)
    middle_pos = (got[0] >= 1677) & (got[0] < 3354)
    assert not middle_neg.any() and 0 < middle_pos.sum() < 1677 * 2500 / 16
    assert got[2].numel() > 0.4 * 3323 * 2500


def test_output_larger_than_the_memory_budget_stops_before_taking_it(device, monkeypatch):
    if device != "cpu":
        pytest.skip("the output budget is checked on the CPU (host memory)")
    # Dense output over two CPU tiles (as above): ~6M pairs, ~190 MB of indices with their concatenation.
    g = torch.Generator().manual_seed(3)
    emb = torch.nn.functional.normalize(torch.randn(2500, 16, generator=g), dim=1)
    lab = torch.randint(0, 300, (2500,), generator=g)
    monkeypatch.setenv("SLADE_EXT_MAX_OUTPUT_BYTES", str(50 << 20))
    with pytest.raises(torch.OutOfMemoryError, match=r"mine_multi_similarity: the selected indices of the first 1 of 2"):
        ops.mine_multi_similarity(emb, lab, epsilon=0.1)
    basis = torch.randn(8, 16, generator=g)
    with pytest.raises(torch.OutOfMemoryError, match="select_confident_pairs: .* more than the 0.0488281 GiB"):
        ops.select_confident_pairs(emb, basis, 0.5, 0.4)  # nearly every pair is a positive or a negative
    # Under the budget the same call runs, and a sparse output of the same inputs fits a small budget.
    monkeypatch.setenv("SLADE_EXT_MAX_OUTPUT_BYTES", str(400 << 20))
    assert ops.mine_multi_similarity(emb, lab, epsilon=0.1)[2].numel() > 0
    monkeypatch.setenv("SLADE_EXT_MAX_OUTPUT_BYTES", str(1 << 20))
    assert ops.mine_batch_hard(emb, lab)[0].numel() > 2400  # one triplet per anchor that has a positive
    monkeypatch.setenv("SLADE_EXT_MAX_OUTPUT_BYTES", "lots")
    with pytest.raises(ValueError, match='SLADE_EXT_MAX_OUTPUT_BYTES must be a number of bytes >= 0, got "lots"'):
        ops.mine_batch_hard(emb, lab)


MAX_PAIRS_CALLS = {
    "multi_similarity": lambda e, l, w, **k: ops.mine_multi_similarity(e, l, epsilon=0.1, **k),
    "pair_margin": lambda e, l, w, **k: ops.mine_pair_margin(e, l, pos_margin=0.9, neg_margin=0.0, **k),
    "triplet_margin": lambda e, l, w, **k: ops.mine_triplet_margin(e, l, margin=0.1, **k),
    "confident": lambda e, l, w, **k: ops.select_confident_pairs(e, w, 0.5, -0.5, **k),
}


@pytest.mark.parametrize("op", list(MAX_PAIRS_CALLS))
def test_max_pairs_caps_the_output_with_an_error(device, op):
    """max_pairs: a call selecting more stops with an error naming it, on any device; exactly enough passes."""
    g = torch.Generator().manual_seed(4)
    emb, lab, basis = torch.randn(300, 16, generator=g), torch.randint(0, 30, (300,), generator=g), torch.randn(8, 16)
    call = MAX_PAIRS_CALLS[op]
    full = call(emb.to(device), lab.to(device), basis.to(device))
    selected = full[0].numel() + (full[2].numel() if len(full) == 4 else 0)
    assert selected > 10
    capped = call(emb.to(device), lab.to(device), basis.to(device), max_pairs=selected)
    assert all(torch.equal(a, b) for a, b in zip(capped, full))
    what = "triplets" if len(full) == 3 else "pairs"
    with pytest.raises(ValueError, match=rf"the first 1 of 1 row tiles already select {selected} {what}, more than "
                                         rf"max_pairs = {selected - 1}"):
        call(emb.to(device), lab.to(device), basis.to(device), max_pairs=selected - 1)
    for bad in (-1, 2.5, True):
        with pytest.raises(ValueError, match="max_pairs must be None or an integer >= 0"):
            call(emb, lab, basis, max_pairs=bad)


def test_max_pairs_stops_at_the_first_tile_past_it():
    """Over several CPU tiles the call stops at the tile that passes the cap, before collecting the rest."""
    g = torch.Generator().manual_seed(5)
    emb = torch.randn(2500, 16, generator=g)  # 2500 x 2500 > one CPU tile of 4M values: 2 tiles
    a1, _, a2, _ = ops.select_confident_pairs(emb, torch.randn(8, 16, generator=g), 0.5, -0.5)
    with pytest.raises(ValueError, match=r"select_confident_pairs: the first 1 of 2 row tiles already select"):
        ops.select_confident_pairs(emb, torch.randn(8, 16, generator=torch.Generator().manual_seed(5)), 0.5, -0.5,
                                   max_pairs=1000)
    assert a1.numel() + a2.numel() > 1000


def test_confident_pair_miner_max_pairs():
    g = torch.Generator().manual_seed(6)
    emb, lab, basis = torch.randn(200, 16, generator=g), torch.randint(0, 5, (200,), generator=g), torch.randn(8, 16)
    for mode in ("literal", "agree", "veto"):
        full = miners.ConfidentPairMiner(basis, 0.5, -0.5, mode=mode)(emb, lab)
        total = full[0].numel() + full[2].numel()
        kept = miners.ConfidentPairMiner(basis, 0.5, -0.5, mode=mode, max_pairs=total)(emb, lab)
        assert all(torch.equal(a, b) for a, b in zip(kept, full))
        with pytest.raises(ValueError, match="more than max_pairs"):
            miners.ConfidentPairMiner(basis, 0.5, -0.5, mode=mode, max_pairs=total - 1)(emb, lab)
    with pytest.raises(ValueError, match="max_pairs must be None or an integer >= 0"):
        miners.ConfidentPairMiner(basis, 0.5, -0.5, max_pairs=-3)


# Several CUDA tiles: rows_per_tile = 2^26 // M < N, so the second tile starts at row_begin > 0 (and, against
# itself, excludes (i, i) by global index).
LARGE_CASES = [("ref_40000", 2048, 40_000, 4000), ("self_10000", 10_000, None, 2000)]
LARGE_CONFIGS = [
    ("multi_similarity", dict(epsilon=0.1)),
    ("pair_margin", dict(pos_margin=0.9, neg_margin=0.7)),
    ("batch_hard", dict()),
    ("triplet_margin", dict(margin=0.1, type_of_triplets="semihard")),
    ("triplet_margin", dict(margin=1.0, type_of_triplets="all", max_triplets_per_anchor=7)),
    ("triplet_margin", dict(margin=0.05, type_of_triplets="hard")),
]
LARGE_IDS = [f"{n}-{i}" for i, (n, _) in enumerate(LARGE_CONFIGS)]


@pytest.mark.parametrize("config", LARGE_CONFIGS, ids=LARGE_IDS)
@pytest.mark.parametrize("distance", ["cosine", "l2"])
@pytest.mark.parametrize("case", LARGE_CASES, ids=[c[0] for c in LARGE_CASES])
def test_miner_spanning_several_cuda_tiles(device, case, distance, config):
    cuda_only(device)
    _, n, m, n_classes = case
    assert CUDA_TILE_ELEMS // (m or n) < n
    name, kwargs = config
    emb, lab, ref, ref_lab = clustered(n, m, n_classes)
    got = assert_miner_matches(device, name, emb, lab, ref, ref_lab, distance=distance, **kwargs)
    assert got[0].numel() > 0


@pytest.mark.parametrize("config", LARGE_CONFIGS, ids=LARGE_IDS)
def test_mining_is_deterministic(device, config):
    cuda_only(device, "CUDA-only check: the CPU kernels' outputs do not depend on threads by construction")
    name, kwargs = config
    emb, lab, ref, ref_lab = (t.to(device) for t in clustered(2048, 40_000, 4000))
    first = op(name)(emb, lab, ref, ref_lab, **kwargs)
    second = op(name)(emb, lab, ref, ref_lab, **kwargs)
    assert all(torch.equal(a, b) for a, b in zip(first, second))


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_second_cuda_device(device):
    cuda_only(device)
    emb, lab, ref, ref_lab = exact_case_inputs("float64", "medium_ref", 300, 1000, 30)
    for name, kwargs in MINER_CONFIGS:
        assert_indices_match("cuda:1", op(name), op(name), emb, lab, ref, ref_lab, **kwargs)


# ---- slade_ext.miners: the PML-compatible modules --------------------------------------------------------------


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda m: m(torch.randn(10), torch.zeros(10, dtype=torch.long)), "embeddings"),
        (lambda m: m(torch.randn(10, 4), torch.zeros(9, dtype=torch.long)), "labels"),
        (lambda m: m(torch.randn(10, 4), torch.zeros(10)), "labels"),
        (lambda m: m(torch.randn(10, 4), torch.zeros(10, dtype=torch.long), torch.randn(5, 4)), "ref_labels"),
        (lambda m: m(torch.randn(10, 4), torch.zeros(10, dtype=torch.long), torch.randn(5, 3),
                     torch.zeros(5, dtype=torch.long)), "ref_emb"),
        (lambda m: m(torch.full((10, 4), float("nan")), torch.zeros(10, dtype=torch.long)), "NaN"),
    ],
)
def test_miner_bad_input_names_the_argument(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call(miners.MultiSimilarityMiner())


def test_bad_triplet_type_names_the_argument():
    with pytest.raises(ValueError, match="type_of_triplets"):
        miners.TripletMarginMiner(type_of_triplets="hardest")


def test_imports_and_mines_without_pml(tmp_path):
    code = (
        "import sys; sys.modules['pytorch_metric_learning'] = None\n"
        "import torch\n"
        "from slade_ext import miners, losses\n"
        "emb, labels = torch.randn(20, 8), torch.arange(20) % 4\n"
        "assert len(miners.MultiSimilarityMiner()(emb, labels)) == 4\n"
        "assert losses.ContrastiveLoss()(emb, labels).ndim == 0\n"
        "try:\n"
        "    miners.BatchHardMiner(distance=object())\n"
        "except ValueError as e:\n"
        "    assert 'not installed' in str(e)\n"
        "else:\n"
        "    raise SystemExit('expected ValueError')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)  # the installed slade_ext, not the checkout
