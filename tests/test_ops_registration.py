"""The ops are well-formed custom ops: torch.library.opcheck passes and torch.compile(fullgraph=True) runs them."""
import pytest
import torch

import slade_ext
from helpers.op_cases import embeddings, labels
from slade_ext import ops

EMB, LAB, W = embeddings(24, 8), labels(24, 4), embeddings(5, 8, seed=3)
REF, REF_LAB = embeddings(30, 8, seed=4), labels(30, 4, seed=4)


def opcheck_cases():
    grad = lambda t: t.clone().requires_grad_()  # noqa: E731
    return [
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
    ]


@pytest.mark.parametrize("name,args", opcheck_cases(), ids=[c[0] for c in opcheck_cases()])
def test_opcheck(name, args):
    torch.library.opcheck(getattr(torch.ops.slade, name), args)


def test_compile_fullgraph_runs_every_op():
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
    eager = step(EMB, W, LAB)
    got = compiled(EMB, W, LAB)
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
