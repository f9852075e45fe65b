"""Self-supervised init: NT-Xent through slade_ext's NTXentLoss equals a plain torch computation (value and
gradient); the stage trains through the one loop, writes init.pt and its result, and resumes exactly."""
import pytest
import torch
import torch.nn.functional as F

from slade.stages.selfsup import nt_xent


def plain_nt_xent(z1, z2, t):
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.T / t
    sim.fill_diagonal_(float("-inf"))
    b = len(z1)
    return F.cross_entropy(sim, torch.cat([torch.arange(b, 2 * b), torch.arange(b)]))


def test_nt_xent_equals_plain_torch():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    a1, a2 = z1.clone().requires_grad_(), z2.clone().requires_grad_()
    b1, b2 = z1.clone().requires_grad_(), z2.clone().requires_grad_()
    ours, plain = nt_xent(a1, a2, 0.3), plain_nt_xent(b1, b2, 0.3)
    torch.testing.assert_close(ours, plain)
    ours.backward()
    plain.backward()
    torch.testing.assert_close(a1.grad, b1.grad)
    torch.testing.assert_close(a2.grad, b2.grad)
    views = torch.eye(6)
    assert nt_xent(views, views, 0.1) < 0.01 < 5 < nt_xent(views, views.roll(1, 0), 0.1)  # matched vs mismatched


@pytest.mark.parametrize("z2_shape,t,match", [((5, 5), 0.1, "z1 and z2"), ((6, 5), 0.0, "temperature")])
def test_nt_xent_bad_input(z2_shape, t, match):
    with pytest.raises(ValueError, match=match):
        nt_xent(torch.randn(6, 5), torch.randn(*z2_shape), t)


class Interrupted(Exception):
    pass


def test_stage_resumes_to_the_same_init_and_records_its_result(tmp_path):
    from slade.data.benchmark import build_benchmark
    from slade.runtime import checkpoint
    from slade.runtime.stage_result import StageResult
    from slade.stages.selfsup import train_selfsup
    from helpers.configs import quiet_context, tiny_selftrain_config

    straight, resumed = tiny_selftrain_config(tmp_path / "a"), tiny_selftrain_config(tmp_path / "b")
    straight.selfsup.epochs = resumed.selfsup.epochs = 2
    resumed.data.cache_dir = straight.data.cache_dir
    bench = build_benchmark(straight.data)
    full = train_selfsup(straight, bench, quiet_context(straight), tmp_path / "a" / "init")

    def stop(epoch, row):
        raise Interrupted

    with pytest.raises(Interrupted):
        train_selfsup(resumed, bench, quiet_context(resumed), tmp_path / "b" / "init", on_epoch_end=[stop])
    again = train_selfsup(resumed, bench, quiet_context(resumed, resume=True), tmp_path / "b" / "init")
    assert again.steps == full.steps and [r["loss"] for r in again.history] == [r["loss"] for r in full.history]
    for key, value in full.weights.items():
        assert torch.equal(value, again.weights[key]), key
    saved = checkpoint.load(tmp_path / "b" / "init" / "init.pt", keys=("format", "model"))["model"]
    assert all(torch.equal(saved[k], full.weights[k]) for k in saved)
    loaded = StageResult.load(tmp_path / "b" / "init", "selfsup")
    assert loaded.metrics == full.metrics and loaded.metrics["epochs"] == 2 and loaded.weights is not None
