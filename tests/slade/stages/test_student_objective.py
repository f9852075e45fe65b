"""The student's objective against a hand computation (L_rank + lambda1 L_rank(unlabeled) + lambda2 (L_CE + L_SD)
with the moving averages), the warm-up that trains W alone, the 0.01 gradient scale of the paper-faithful L_SD,
confident-pair selection equal to slade_ext's reference, the restart of the averages, the logit scale of L_CE and
the pseudo-label negatives."""
import math

import pytest
import torch
import torch.nn.functional as F

from slade import config
from slade.training.registry import build_loss, build_miner
from slade.stages.student_objective import StudentObjective, build_basis
from slade_ext import reference


def embeddings(n, d=8, seed=0):
    return F.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64), dim=1)


def clustered(labels, d=8, seed=0, noise=0.5):
    """Embeddings near one centre per label, so that same-label pairs are more similar (mu+ > mu-)."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(int(labels.max()) + 2, d, generator=g, dtype=torch.float64)
    return F.normalize(centres[labels] + noise * torch.randn(len(labels), d, generator=g, dtype=torch.float64), dim=1)


def student_cfg(**overrides):
    cfg = config.StudentConfig()
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return cfg


def make_objective(cfg, dim=8, classes=3, seed=1):
    loss_cfg = config.LossConfig(miner="none")
    basis = build_basis(cfg, classes, dim)
    if basis is not None:
        basis.double()
        with torch.no_grad():
            basis.weight.copy_(torch.randn(classes, dim, generator=torch.Generator().manual_seed(seed)))
    return StudentObjective(cfg, build_loss(loss_cfg), build_miner(loss_cfg), basis)


def hand_pair_moments(f, w, labels):
    """Means and population variances of cos(W f_i, W f_j) over same / different pseudo-label pairs, i != j."""
    r = [w @ x for x in f]
    pos, neg = [], []
    for i in range(len(f)):
        for j in range(len(f)):
            if i != j:
                s = float(r[i] @ r[j] / (r[i].norm() * r[j].norm()))
                (pos if labels[i] == labels[j] else neg).append(s)

    def moments(v):
        mean = sum(v) / len(v)
        return mean, sum((x - mean) ** 2 for x in v) / len(v)

    return moments(pos), moments(neg)


def hand_ms_loss(f, labels, alpha=2.0, beta=50.0, base=0.5):
    """PML's multi-similarity loss over all pairs, one anchor at a time."""
    total = 0.0
    for i in range(len(f)):
        pos = [float(f[i] @ f[j]) for j in range(len(f)) if j != i and labels[j] == labels[i]]
        neg = [float(f[i] @ f[j]) for j in range(len(f)) if labels[j] != labels[i]]
        total += math.log1p(sum(math.exp(-alpha * (s - base)) for s in pos)) / alpha if pos else 0.0
        total += math.log1p(sum(math.exp(beta * (s - base)) for s in neg)) / beta if neg else 0.0
    return total / len(f)


def test_objective_equals_hand_computation_over_two_steps():
    cfg = student_cfg(selection="none", sd_margin=0.7, sd_lambda_var=2.0, lambda1=0.5, lambda2=0.25)
    objective = make_objective(cfg)
    w = objective.basis.weight.detach().clone()
    y_l = torch.tensor([0, 0, 1, 1, 2, 2])
    p_u = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2])
    averages = None
    for step in range(2):
        f_l, f_u = embeddings(6, seed=10 + step), embeddings(8, seed=20 + step)
        loss, stats, _ = objective(f_l, y_l, f_u, p_u)
        (mu_p, var_p), (mu_n, var_n) = hand_pair_moments(f_u, w, p_u)
        batch = (mu_p, var_p, mu_n, var_n)
        # The averages start at the first batch's statistics, then mu <- 0.01 mu_batch + 0.99 mu.
        averages = batch if averages is None else tuple(0.01 * b + 0.99 * a for a, b in zip(averages, batch))
        sd = max(averages[2] - averages[0] + 0.7, 0.0) + 2.0 * (averages[1] + averages[3])
        ce = float(F.cross_entropy(f_l @ w.T, y_l))
        expected = hand_ms_loss(f_l, y_l) + 0.5 * hand_ms_loss(f_u, p_u) + 0.25 * (ce + sd)
        assert loss.item() == pytest.approx(expected, rel=1e-9)
        assert stats["sd"] == pytest.approx(sd, rel=1e-9) and stats["ce"] == pytest.approx(ce, rel=1e-9)
        assert (stats["mu_pos"], stats["var_pos"], stats["mu_neg"], stats["var_neg"]) == pytest.approx(averages)


def test_paper_sd_gradient_is_a_hundredth_of_the_batch_statistics_gradient():
    """Paper mode: L_SD's gradient flows through the batch part of the moving average only: 1 - beta = 0.01."""
    grads = {}
    y_l, p_u = torch.tensor([0, 1, 2, 0]), torch.tensor([0, 0, 1, 1, 2, 2])
    for mode in ("batch", "paper"):
        objective = make_objective(student_cfg(sd_grad=mode, sd_margin=5.0))
        objective.basis_loss(embeddings(4), y_l, embeddings(6, seed=3), p_u)  # the averages exist from here on
        f_u = embeddings(6, seed=4).requires_grad_()
        objective.basis_loss(embeddings(4), y_l, f_u, p_u)[1].backward()
        grads[mode] = f_u.grad
    assert grads["batch"].abs().sum() > 0
    torch.testing.assert_close(grads["paper"], 0.01 * grads["batch"])


def test_warmup_trains_the_basis_alone():
    objective = make_objective(student_cfg())
    f_l, f_u = embeddings(6).requires_grad_(), embeddings(8, seed=2).requires_grad_()
    loss, stats, pairs = objective.warmup(f_l, torch.tensor([0, 0, 1, 1, 2, 2]), f_u, torch.tensor([0, 0, 0, 1, 1, 2, 2, 2]))
    loss.backward()
    assert f_l.grad is None and f_u.grad is None
    assert objective.basis.weight.grad.abs().sum() > 0
    assert int(objective.basis.num_updates) == 1 and "rank_l" not in stats and pairs is None


@pytest.mark.parametrize("mode", ["literal", "agree"])
def test_selection_equals_the_reference(mode):
    objective = make_objective(student_cfg(selection=mode))
    p_u = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, -1])
    f_u = clustered(p_u, seed=7)
    objective.basis.sd_loss(f_u, p_u)  # thresholds T1 = mu+, T2 = mu- from this batch
    t_pos, t_neg = objective.basis.thresholds()
    assert t_pos > t_neg
    got = objective.unlabeled_pairs(f_u, p_u)
    want = reference.select_confident_pairs(f_u, objective.basis.weight.detach(), t_pos, t_neg, p_u, mode)
    assert all(torch.equal(g, w) for g, w in zip(got, want))
    assert len(got[0]) > 0 and len(got[2]) > 0
    if mode == "agree":
        assert bool((p_u[got[0]] == p_u[got[1]]).all()) and bool((p_u[got[2]] != p_u[got[3]]).all())


def test_nothing_selected_while_mu_pos_is_not_above_mu_neg():
    objective = make_objective(student_cfg(selection="literal"))
    f_u, p_u = embeddings(8), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    assert all(len(t) == 0 for t in objective.unlabeled_pairs(f_u, p_u))  # no statistics yet
    objective.basis.sd_loss(f_u, p_u)
    objective.basis.mu_pos.fill_(0.1)
    objective.basis.mu_neg.fill_(0.2)
    assert all(len(t) == 0 for t in objective.unlabeled_pairs(f_u, p_u))


def test_plain_variant_uses_pseudo_label_pairs_and_no_basis():
    objective = make_objective(student_cfg(basis=False, selection="none"))
    assert objective.basis is None
    f_l, f_u = embeddings(6), embeddings(8, seed=2)
    y_l, p_u = torch.tensor([0, 0, 1, 1, 2, 2]), torch.tensor([0, 0, 0, 1, 1, 2, 2, 2])
    loss, stats, _ = objective(f_l, y_l, f_u, p_u)
    assert loss.item() == pytest.approx(hand_ms_loss(f_l, y_l) + hand_ms_loss(f_u, p_u), rel=1e-9)
    assert "mu_pos" not in stats


@pytest.mark.parametrize("overrides,match", [({"selection": "greedy"}, "student.selection"),
                                             ({"basis": False, "selection": "literal"}, "student.basis"),
                                             ({"selection_negatives": "easy"}, "student.selection_negatives")])
def test_bad_switches_are_caught_by_the_config_before_the_objective(overrides, match):
    from slade import config

    cfg = config.Config()
    for key, value in overrides.items():
        setattr(cfg.student, key, value)
    with pytest.raises(config.ConfigError, match=match):
        config.validate(cfg, filesystem=False)


def test_restarted_averages_are_seeded_by_the_next_batch():
    objective = make_objective(student_cfg())
    basis, p_u = objective.basis, torch.tensor([0, 0, 0, 1, 1, 1, 2, 2])
    for seed in (3, 4):
        basis.sd_loss(clustered(p_u, seed=seed), p_u)
    basis.restart_averages()
    assert basis.thresholds() is None
    f_u = clustered(p_u, seed=5)
    basis.sd_loss(f_u, p_u)
    (mu_p, var_p), (mu_n, var_n) = hand_pair_moments(f_u, basis.weight.detach(), p_u)
    assert basis.thresholds() == pytest.approx((mu_p, mu_n), rel=1e-9)
    assert (float(basis.var_pos), float(basis.var_neg)) == pytest.approx((var_p, var_n), rel=1e-9)


def test_ce_scale_multiplies_the_logits():
    objective = make_objective(student_cfg(ce_scale=16.0))
    f_l, y_l = embeddings(6), torch.tensor([0, 0, 1, 1, 2, 2])
    want = F.cross_entropy(16.0 * f_l @ objective.basis.weight.detach().T, y_l)
    assert objective.basis.ce_loss(f_l, y_l).item() == pytest.approx(want.item(), rel=1e-9)
    with pytest.raises(ValueError, match="ce_scale"):
        make_objective(student_cfg(ce_scale=0.0))


@pytest.mark.parametrize("mode", ["literal", "agree"])
def test_pseudo_negatives_are_the_miners_less_the_selected_positives(mode):
    objective = make_objective(student_cfg(selection=mode, selection_negatives="pseudo"))
    objective.miner = build_miner(config.LossConfig(miner_epsilon=1.0))  # a lenient miner: many negatives
    p_u = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3])
    f_u = clustered(p_u, seed=7)
    objective.basis.sd_loss(f_u, p_u)
    a1, p, a2, n = objective.unlabeled_pairs(f_u, p_u)
    want_pos = objective.selector(f_u, p_u)[:2]
    assert torch.equal(a1, want_pos[0]) and torch.equal(p, want_pos[1]) and len(a1) > 0
    mined = set(zip(*(t.tolist() for t in objective.miner(f_u, p_u)[2:])))
    assert set(zip(a2.tolist(), n.tolist())) == mined - set(zip(a1.tolist(), p.tolist()))
    assert len(a2) > 0
    objective.basis.mu_pos.fill_(0.1)  # mu+ <= mu-: nothing at all is selected, negatives included
    objective.basis.mu_neg.fill_(0.2)
    assert all(len(t) == 0 for t in objective.unlabeled_pairs(f_u, p_u))


def test_veto_negatives_are_the_miners_the_basis_does_not_call_similar():
    objective = make_objective(student_cfg(selection="veto", selection_negatives="pseudo"))
    objective.miner = build_miner(config.LossConfig(miner_epsilon=1.0))  # a lenient miner: many negatives
    p_u = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3])
    f_u = clustered(p_u, seed=7, noise=1.5)  # noisy: some different-label pairs are as similar as positives
    objective.basis.sd_loss(f_u, p_u)
    t_pos, _ = objective.basis.thresholds()
    a1, p, a2, n = objective.unlabeled_pairs(f_u, p_u)
    agree = reference.select_confident_pairs(f_u, objective.basis.weight.detach(), t_pos, -2.0, p_u, "agree")
    assert torch.equal(a1, agree[0]) and torch.equal(p, agree[1]) and len(a1) > 0
    sim = reference.basis_similarity(f_u, objective.basis.weight.detach())
    mined = list(zip(*(t.tolist() for t in objective.miner(f_u, p_u)[2:])))
    kept = {(i, j) for i, j in mined if sim[i, j] < t_pos}
    assert set(zip(a2.tolist(), n.tolist())) == kept
    assert 0 < len(kept) < len(mined), "the case must veto some of the miner's negatives and keep others"


def test_ce_detach_keeps_l_ce_from_pulling_the_embedding():
    f_l, y_l = embeddings(6).requires_grad_(), torch.tensor([0, 0, 1, 1, 2, 2])
    f_u, p_u = embeddings(8, seed=2), torch.tensor([0, 0, 0, 1, 1, 2, 2, 2])
    grads = {}
    for detach in (False, True):
        objective = make_objective(student_cfg(ce_detach=detach, selection="none"))
        f = f_l.detach().clone().requires_grad_()
        ce, _ = objective.basis_loss(f, y_l, f_u, p_u)
        ce.backward()
        grads[detach] = (f.grad, objective.basis.weight.grad)
    assert grads[False][0].abs().sum() > 0 and grads[True][0] is None
    torch.testing.assert_close(grads[True][1], grads[False][1])  # W learns from L_CE either way


def test_steps_log_whether_w_learned():
    objective = make_objective(student_cfg(basis_logits="cosine", ce_scale=16.0, selection="none"))
    f_l, y_l = embeddings(6), torch.tensor([0, 0, 1, 1, 2, 2])
    f_u, p_u = embeddings(8, seed=2), torch.tensor([0, 0, 0, 1, 1, 2, 2, 2])
    _, stats, _ = objective.warmup(f_l, y_l, f_u, p_u)
    assert stats["ce_ratio"] == pytest.approx(stats["ce"] / math.log(3))
    assert stats["basis_gap"] == pytest.approx(stats["mu_pos"] - stats["mu_neg"])
    w = F.normalize(objective.basis.weight.detach(), dim=1)
    want = F.cross_entropy(16.0 * f_l @ w.T, y_l)
    assert stats["ce"] == pytest.approx(want.item(), rel=1e-9)
