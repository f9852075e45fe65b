"""The ops are well-formed custom ops on every device: torch.library.opcheck passes (forward ops with their fake
kernels and autograd, backward ops with every output_mask) and torch.compile(fullgraph=True) runs them."""
import pytest
import torch

import slade_ext
from helpers.op_cases import embeddings, labels
from slade_ext import loss_ops, ops  # noqa: F401  (loss_ops registers the loss ops' fake kernels)

EMB, LAB, W = embeddings(24, 8), labels(24, 4), embeddings(5, 8, seed=3)
REF, REF_LAB = embeddings(30, 8, seed=4), labels(30, 4, seed=4)


def opcheck_cases():
    grad = lambda t: t.clone().requires_grad_()  # noqa: E731
    sim_grad = torch.randn(24, 30, generator=torch.Generator().manual_seed(1))
    stats = torch.stack([t.double() for t in ops.basis_pair_stats(EMB, W, LAB, REF, REF_LAB)])
    grad_stats = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64)
    masks = [[True, True, True], [True, False, False], [False, True, False], [False, False, True]]
    backward_cases = [("basis_similarity_backward", (sim_grad, EMB, W, REF, mask)) for mask in masks]
    backward_cases += [("basis_similarity_backward", (sim_grad[:, :24], EMB, W, None, [True, False, False]))]
    backward_cases += [
        ("basis_pair_stats_backward", (grad_stats, EMB, W, LAB, REF, REF_LAB, stats, 0, -1, mask)) for mask in masks
    ]
    loss_tensors = (EMB, LAB, REF, REF_LAB, None, None, None, None)
    ms_params, c_params = (2.0, 50.0, 0.5, "cosine"), (0.0, 1.0, "l2")
    ms_rows = torch.ops.slade.multi_similarity_loss_rows(*loss_tensors, *ms_params)[0]
    c_rows = torch.ops.slade.contrastive_loss_rows(*loss_tensors, *c_params)[0]
    grad_rows = torch.randn(24, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    for mask in ([True, True], [True, False], [False, True]):
        backward_cases += [
            ("multi_similarity_loss_rows_backward", (grad_rows, ms_rows, *loss_tensors, *ms_params, 0, -1, mask)),
            ("contrastive_loss_rows_backward", (grad_rows, c_rows, *loss_tensors, *c_params, 0, -1, mask)),
        ]
    # the distances' own backward (through -|x - y| and its square, unnormalised rows)
    for distance in ("euclidean", "l2sq"):
        d_params = (0.5, 4.0, distance)
        d_rows = torch.ops.slade.contrastive_loss_rows(*loss_tensors, *d_params)[0]
        backward_cases += [
            ("contrastive_loss_rows_backward", (grad_rows, d_rows, *loss_tensors, *d_params, 0, -1, [True, True])),
        ]
    # the contrastive backward from its forward's record of active pairs (few here: 24 classes of 1 or 2 rows)
    sparse_lab = torch.arange(24) // 2
    s_tensors = (EMB, sparse_lab, None, None, None, None, None, None)
    s_params = (0.0, 0.9, "l2", 0, -1)
    s_rows, *record = torch.ops.slade.contrastive_loss_rows(*s_tensors, *s_params, True)
    assert record[0].numel() == 2 * 24 + 1
    backward_cases += [
        ("contrastive_loss_rows_backward", (grad_rows, s_rows, *s_tensors, *s_params, [True, True], *record)),
        ("contrastive_loss_rows", (grad(EMB), sparse_lab, None, None, None, None, None, None, *s_params, True)),
    ]
    # the multi-similarity backward from its forward's rows' gradients (references without a gradient)
    g_rows, row_grads = torch.ops.slade.multi_similarity_loss_rows(*loss_tensors, *ms_params, 0, -1, True)
    assert row_grads.numel() == 24 * 2 * 8
    backward_cases += [
        ("multi_similarity_loss_rows_backward", (grad_rows, g_rows, *loss_tensors, *ms_params, 0, -1, [True, False],
                                                 row_grads)),
        ("multi_similarity_loss_rows", (grad(EMB), LAB, REF, REF_LAB, None, None, None, None, *ms_params, 0, -1,
                                        True)),
    ]
    # query_rows (0, -1 = all rows; a slice otherwise): the loss state has the slice's rows
    q_rows = torch.ops.slade.multi_similarity_loss_rows(*loss_tensors[:2], None, None, *loss_tensors[4:], *ms_params,
                                                        5, 17)[0]
    backward_cases += [
        ("multi_similarity_loss_rows_backward", (grad_rows[5:17], q_rows, EMB, LAB, None, None, None, None, None,
                                                 None, *ms_params, 5, 17, [True, False])),
        ("basis_pair_stats_backward", (grad_stats, EMB, W, LAB, None, None, stats, 3, 20, [True, True, False])),
    ]
    backward_cases += [
        ("multi_similarity_loss_rows", (grad(EMB), LAB, None, None, None, None, None, None, *ms_params, 5, 17)),
        ("contrastive_loss_rows", (grad(EMB), LAB, None, None, None, None, None, None, *c_params, 0, 9)),
        ("basis_pair_stats", (grad(EMB), grad(W), LAB, None, None, 4, 11)),
        ("mine_multi_similarity", (EMB, LAB, None, None, 0.1, "cosine", 3, 19)),
        ("mine_batch_hard", (EMB, LAB, None, None, "l2", 0, 7)),
        ("mine_triplet_margin", (EMB, LAB, None, None, 0.2, "all", -1, "cosine", 10, 24)),
        ("select_confident_pairs", (EMB, W, 0.3, -0.2, LAB, "agree", 2, 13)),
    ]
    return backward_cases + [
        ("basis_similarity", (grad(EMB), grad(W), None)),
        ("basis_similarity", (grad(EMB), grad(W), grad(REF))),
        ("basis_pair_stats", (grad(EMB), grad(W), LAB, None, None)),
        ("basis_pair_stats", (grad(EMB), grad(W), LAB, grad(REF), REF_LAB)),
        ("mine_multi_similarity", (EMB, LAB, None, None, 0.1, "cosine")),
        ("mine_multi_similarity", (EMB, LAB, REF, REF_LAB, 0.1, "l2")),
        ("mine_pair_margin", (EMB, LAB, None, None, 0.2, 0.1, "cosine")),
        ("mine_batch_hard", (EMB, LAB, REF, REF_LAB, "cosine")),
        ("mine_triplet_margin", (EMB, LAB, None, None, 0.2, "semihard", 3, "cosine")),
        ("select_confident_pairs", (EMB, W, 0.3, -0.2, LAB, "agree")),
        ("select_confident_pairs", (EMB, W, 0.3, -0.2, None, "literal")),
        ("select_confident_pairs_tensor_thresholds",
         (EMB, W, torch.tensor(0.3, dtype=torch.float64), torch.tensor(-0.2), LAB, "agree", 0, -1, 500)),
        ("mine_pair_margin", (EMB, LAB, None, None, 0.2, 0.1, "euclidean", 0, -1, 10_000)),
        ("mine_multi_similarity", (EMB, LAB, REF, REF_LAB, 0.1, "dot")),
        ("mine_triplet_margin", (EMB, LAB, REF, REF_LAB, 0.2, "hard", -1, "sqeuclidean")),
    ]


def on_device(args, device):
    """The case's tensors on `device`, keeping which ones require grad."""
    def move(a):
        if not isinstance(a, torch.Tensor):
            return a
        return a.detach().to(device).requires_grad_(a.requires_grad)
    return tuple(move(a) for a in args)


@pytest.mark.parametrize("name,args", opcheck_cases(), ids=[c[0] for c in opcheck_cases()])
def test_opcheck(device, name, args):
    torch.library.opcheck(getattr(torch.ops.slade, name), on_device(args, device))


def test_compile_fullgraph_runs_every_op(device):
    def step(emb, basis, lab):
        sim = ops.basis_similarity(emb, basis)
        stats = ops.basis_pair_stats(emb, basis, lab)
        ms = ops.mine_multi_similarity(emb, lab)
        bh = ops.mine_batch_hard(emb, lab)
        pm = ops.mine_pair_margin(emb, lab)
        tm = ops.mine_triplet_margin(emb, lab, type_of_triplets="hard")
        sel = ops.select_confident_pairs(emb, basis, 0.3, -0.2, lab, "agree")
        return sim.sum() + stats[0] - stats[2], ms, bh, pm, tm, sel

    compiled = torch.compile(step, fullgraph=True, backend="inductor")
    emb, w, lab = EMB.to(device), W.to(device), LAB.to(device)
    eager = step(emb, w, lab)
    got = compiled(emb, w, lab)
    torch.testing.assert_close(got[0], eager[0])
    for g, e in zip(got[1:], eager[1:]):
        for a, b in zip(g, e):
            assert torch.equal(a, b)


def test_build_info_reports_the_live_backend():
    info = slade_ext.build_info()
    assert info["backend"] in ("prebuilt", "jit")
    assert isinstance(info["cuda_compiled"], bool)
    assert info["torch_version"].split("+")[0] == torch.__version__.split("+")[0]
    if info["cuda_compiled"]:
        assert info["cuda_archs"]
    if "site-packages" in slade_ext.__file__:  # an installed package loads the module pip built, never a JIT build
        assert info["backend"] == "prebuilt", info


def test_compile_backward_honours_needs_input_grad(device):
    """Under torch.compile the registered backwards see needs_input_grad too: a basis that does not require grad
    gets none, and the embeddings' gradient equals eager's."""
    def loss(emb, basis, lab):
        stats = ops.basis_pair_stats(emb, basis, lab)
        return ops.basis_similarity(emb, basis).sum() + stats[0] - stats[2]

    compiled = torch.compile(loss, fullgraph=True, backend="aot_eager")
    grads = []
    for fn in (loss, compiled):
        emb, w = EMB.to(device).requires_grad_(), W.to(device)
        fn(emb, w, LAB.to(device)).backward()
        assert w.grad is None
        grads.append(emb.grad)
    torch.testing.assert_close(grads[1], grads[0])


def test_kernel_sources_pair_by_op_family():
    """Every family has its driver, CPU and CUDA files; the build lists compile exactly the files in csrc/, and
    CMakeLists.txt names the same families as slade_ext/_build_config.py."""
    import re
    from pathlib import Path

    from slade_ext import _build_config

    root = Path(__file__).resolve().parents[2]  # the checkout these tests belong to (slade_ext may be installed)
    csrc = root / "csrc"
    for family in _build_config.OP_FAMILIES:
        for part, path in _build_config.family_sources(csrc, family).items():
            assert path.is_file(), f"{family}: missing {part} file {path.relative_to(root)}"
    on_disk = {p for pattern in ("*.cpp", "*/*.cpp", "*/*.cu") for p in csrc.glob(pattern)}
    assert {Path(f) for f in _build_config.source_files(csrc, with_cuda=True)} == on_disk
    assert {Path(f) for f in _build_config.source_files(csrc, with_cuda=False)} == {
        p for p in on_disk if p.suffix == ".cpp"
    }
    cmake = (root / "CMakeLists.txt").read_text()
    families = re.search(r"set\(SLADE_OP_FAMILIES ([^)]*)\)", cmake).group(1).split()
    assert tuple(families) == _build_config.OP_FAMILIES
