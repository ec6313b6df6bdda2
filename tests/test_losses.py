"""Each loss against a plain-Python restatement of its paper's formula (book/references.md), its gradient weight
against autograd, finiteness at the extremes, the error paths, and the module reading as a formula page."""

import inspect
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from apo_utils import losses as L
from apo_utils.objective import Objective

N = 16


def sig(x):
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def logsig(x):
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    t = lambda s=3.0: (torch.randn(N, generator=g, dtype=torch.float64) * s).float()  # noqa: E731
    return dict(
        pc=t() - 20, pr=t() - 20, rc=t() - 20, rr=t() - 20, margin=t(2.0),
        lc=torch.randint(1, 40, (N,), generator=g).float(), lr=torch.randint(1, 40, (N,), generator=g).float(),
    )


def h_of(b, i):
    return (b["pc"][i] - b["pr"][i] - b["rc"][i] + b["rr"][i]).item()


def hbar_of(b, i):
    return (b["pc"][i] / b["lc"][i] - b["pr"][i] / b["lr"][i]).item()


def close(out, expected, tol=1e-4):
    np.testing.assert_allclose(out.losses.detach().numpy(), np.array(expected), rtol=tol, atol=tol)


# ----------------------------------------------------------------- formulas, pair by pair


def test_dpo(batch):
    out = L.dpo_loss(batch["pc"], batch["pr"], batch["rc"], batch["rr"], beta=0.3)
    close(out, [-logsig(0.3 * h_of(batch, i)) for i in range(N)])


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_cdpo_and_robust(batch, eps):
    b = batch
    cd = L.cdpo_loss(b["pc"], b["pr"], b["rc"], b["rr"], beta=0.2, label_smoothing=eps)
    rb = L.robust_loss(b["pc"], b["pr"], b["rc"], b["rr"], beta=0.2, label_smoothing=eps)
    z = [0.2 * h_of(b, i) for i in range(N)]
    close(cd, [-(1 - eps) * logsig(x) - eps * logsig(-x) for x in z])
    close(rb, [((1 - eps) * -logsig(x) - eps * -logsig(-x)) / (1 - 2 * eps) for x in z])


def test_ipo_plain_and_length_normalised(batch):
    b = batch
    out = L.ipo_loss(b["pc"], b["pr"], b["rc"], b["rr"], beta=0.5)
    close(out, [(h_of(b, i) - 1.0) ** 2 for i in range(N)], tol=1e-3)
    out = L.ipo_loss(b["pc"], b["pr"], b["rc"], b["rr"], beta=0.5, length_norm=True,
                     chosen_lengths=b["lc"], rejected_lengths=b["lr"])
    exp = [((b["pc"][i] - b["rc"][i]) / b["lc"][i] - (b["pr"][i] - b["rr"][i]) / b["lr"][i] - 1.0).item() ** 2
           for i in range(N)]
    close(out, exp, tol=1e-3)


def test_simpo(batch):
    b = batch
    out = L.simpo_loss(b["pc"], b["pr"], beta=2.5, gamma_beta_ratio=0.4, chosen_lengths=b["lc"], rejected_lengths=b["lr"])
    close(out, [-logsig(2.5 * hbar_of(b, i) - 1.0) for i in range(N)])


def test_madpo_weight_and_loss(batch):
    b = batch
    c_max, c_min, lam, tau, beta = 2.0, 0.5, 1.0, math.log(0.999 / 0.001), 0.1
    out = L.madpo_loss(b["pc"], b["pr"], b["rc"], b["rr"], margin=b["margin"], beta=beta)
    exp = []
    for i in range(N):
        d = b["margin"][i].item()
        c = c_min + (c_max - c_min) / (1 + (c_max - 1) / (1 - c_min) * math.exp(lam * (abs(d) - tau)))
        w = sig(c * d) / sig(d) if d > -tau else 1.0
        exp.append(w * -logsig(beta * h_of(b, i)))
    close(out, exp)
    # the shape the paper describes: c = 1 at |D| = tau, ~c_max at 0; amplified hard pairs, capped mislabelled ones
    w = L.madpo_weight(torch.tensor([0.5, 1.0, 3.0, 30.0, -0.5, -7.5]))
    assert w[0] > 1 and w[1] > 1 and w[2] > 1
    assert w[3] < 1 and w[4] < 1 and w[5] == 1.0


def test_madpo_ablation_modes(batch):
    """The paper's ablation: amplification only keeps max(w, 1), dampening only min(w, 1)."""
    d = torch.tensor([0.5, 1.0, 3.0, 30.0, -0.5, -7.5])
    w = L.madpo_weight(d)
    assert torch.equal(L.madpo_weight(d, mode="amplify"), torch.clamp(w, min=1.0))
    assert torch.equal(L.madpo_weight(d, mode="dampen"), torch.clamp(w, max=1.0))
    b = batch
    amp = L.madpo_loss(b["pc"], b["pr"], b["rc"], b["rr"], margin=b["margin"], mode="amplify")
    full = L.madpo_loss(b["pc"], b["pr"], b["rc"], b["rr"], margin=b["margin"])
    assert (amp.stats["weight"] >= 1).all() and (amp.losses >= full.losses - 1e-7).all()
    with pytest.raises(ValueError, match="mode"):
        L.madpo_weight(d, mode="both-ish")


def test_batch_statistic_is_what_each_loss_pools(batch):
    """What the trainer gathers across processes equals the statistic the loss itself computes."""
    b = batch
    g = L.gamma_dpo_loss(b["pc"], b["pr"], b["rc"], b["rr"], beta=0.1)
    assert torch.allclose(L.batch_statistic("gamma_dpo", b["pc"], b["pr"], b["rc"], b["rr"], beta=0.1), g.stats["gaps"])
    a = L.amapo_loss(b["pc"], b["pr"], chosen_lengths=b["lc"], rejected_lengths=b["lr"])
    s = L.batch_statistic("amapo", b["pc"], b["pr"], chosen_lengths=b["lc"], rejected_lengths=b["lr"])
    assert torch.allclose(s.mean(), a.stats["batch_mean"]) and torch.allclose(s, a.h)
    bd = L.beta_dpo_loss(b["pc"], b["pr"], b["rc"], b["rr"], beta=0.1, generator=torch.Generator().manual_seed(0))
    sb = L.batch_statistic("beta_dpo", b["pc"], b["pr"], b["rc"], b["rr"], beta=0.1)
    assert torch.allclose(sb.mean(), bd.stats["gap_mean"])
    assert L.batch_statistic("dpo", b["pc"], b["pr"], b["rc"], b["rr"]) is None
    # gathered statistics with this process's rows at an offset: the same answer as the whole batch at once
    whole = L.beta_dpo_loss(b["pc"], b["pr"], b["rc"], b["rr"], generator=torch.Generator().manual_seed(1))
    k = N // 2
    part = L.beta_dpo_loss(b["pc"][k:], b["pr"][k:], b["rc"][k:], b["rr"][k:], gathered_gaps=sb, offset=k,
                           generator=torch.Generator().manual_seed(1))
    assert torch.equal(part.mask, whole.mask[k:]) and torch.allclose(part.losses, whole.losses[k:])


def test_beta_dpo(batch):
    b = batch
    g = torch.Generator().manual_seed(3)
    out = L.beta_dpo_loss(b["pc"], b["pr"], b["rc"], b["rr"], beta=0.1, alpha=0.6, gap_mean=0.2, gap_std=0.5,
                          keep_ratio=0.75, generator=g)
    mask = out.mask.numpy()
    assert mask.sum() == int(N * 0.75)
    gaps = [0.1 * h_of(b, i) for i in range(N)]
    kept = [gaps[i] for i in range(N) if mask[i] == 1]
    beta_used = max(1e-3, 0.1 * (1 + 0.6 * (sum(kept) / len(kept) - 0.2)))
    assert out.stats["beta_used"].item() == pytest.approx(beta_used, rel=1e-5)
    close(out, [(-logsig(beta_used * h_of(b, i))) * mask[i] for i in range(N)])
    exp_mean = sum(-logsig(beta_used * h_of(b, i)) for i in range(N) if mask[i]) / mask.sum()
    assert out.loss.item() == pytest.approx(exp_mean, rel=1e-5)


def test_beta_dpo_filter_prefers_gaps_near_the_running_mean():
    # 1000 draws: a pair whose gap sits on M0 is kept far more often than one 3 sigma away.
    h = torch.tensor([0.0, 30.0, 1.0, -1.0])  # beta*h = 0, 3, 0.1, -0.1
    z = torch.zeros(4)
    kept_far = 0
    g = torch.Generator().manual_seed(0)
    for _ in range(300):
        out = L.beta_dpo_loss(h, z, z, z, beta=0.1, gap_mean=0.0, gap_std=1.0, keep_ratio=0.5, generator=g)
        kept_far += int(out.mask[1])
    assert kept_far < 60


def _gamma_reference(gaps, gamma0, tau, steps=20):
    """Exponentiated gradient on the simplex, written out with Python floats."""
    n = len(gaps)
    p = [1.0 / n] * n
    lr = min(0.5 / tau, 1.0)
    for _ in range(steps):
        gam = [gamma0 * n * q for q in p]
        grad = [gamma0 * sig(gam[i] - gaps[i]) + tau * (1 + math.log(n * p[i] + 1e-10)) for i in range(n)]
        un = [p[i] * math.exp(-lr * grad[i]) for i in range(n)]
        s = sum(un)
        p = [u / s for u in un]
    return [gamma0 * n * q for q in p]


def test_gamma_po_margins_and_losses(batch):
    b = batch
    ctx = torch.randn(20, generator=torch.Generator().manual_seed(1))
    beta, ratio, tau = 0.5, 0.5, 2.0
    out = L.gamma_dpo_loss(b["pc"], b["pr"], b["rc"], b["rr"], beta=beta, gamma_beta_ratio=ratio, tau=tau, context=ctx)
    gaps = ctx.tolist() + [beta * h_of(b, i) for i in range(N)]
    gam = _gamma_reference(gaps, ratio * beta, tau)[-N:]
    np.testing.assert_allclose(out.stats["gamma"].numpy(), gam, rtol=1e-4, atol=1e-5)
    close(out, [-logsig(beta * h_of(b, i) - (gam[i] - ratio * beta)) for i in range(N)])

    out = L.gamma_simpo_loss(b["pc"], b["pr"], beta=2.0, gamma_beta_ratio=0.5, tau=5.0,
                             chosen_lengths=b["lc"], rejected_lengths=b["lr"])
    gam = _gamma_reference([2.0 * hbar_of(b, i) for i in range(N)], 1.0, 5.0)
    close(out, [-logsig(2.0 * hbar_of(b, i) - gam[i]) for i in range(N)])


@pytest.mark.parametrize("n,gamma0,tau,scale", [
    (64, 0.05, 0.05, 1.0),  # tau < 0.5: step size 1 (notebook 03's gamma-DPO)
    (64, 1.0, 1.0, 3.0),  # gamma-SimPO's setting in notebook 03
    (300, 1.0, 10.0, 1.0),  # the default tau
    (64, 5.0, 0.1, 5.0),  # margins pushed far apart: some p_i near 1e-9
    (64, 40.0, 0.01, 2.0),  # |z| bound large enough that the solver re-centres every step
    (8, 1.0, 1.0, 1e4),  # huge gaps
    (1, 1.0, 1.0, 1.0),  # a batch of one
])
def test_gamma_po_solver_matches_the_written_out_iteration(n, gamma0, tau, scale):
    """The solver folds constants out of the exponentiated-gradient step for speed; it must still be that step."""
    gaps = (torch.randn(n, generator=torch.Generator().manual_seed(n), dtype=torch.float64) * scale).tolist()
    ref = _gamma_reference(gaps, gamma0, tau)
    out = L.dynamic_target_margins(torch.tensor(gaps, dtype=torch.float64), gamma0=gamma0, tau=tau)
    np.testing.assert_allclose(out.numpy(), ref, rtol=0, atol=1e-8 * gamma0)
    assert out.sum().item() == pytest.approx(n * gamma0, rel=1e-12)


@pytest.mark.parametrize("steps", [-1, 2.5, True, "20"])
def test_gamma_po_steps_must_be_a_whole_number(steps):
    with pytest.raises(ValueError, match="steps must be a whole number"):
        Objective("gamma_dpo", steps=steps)


def test_gamma_po_margins_grow_with_confidence_and_average_to_gamma0():
    gaps = torch.linspace(-3, 3, 64)
    gam = L.dynamic_target_margins(gaps, gamma0=1.0, tau=1.0, steps=200)
    assert gam.mean().item() == pytest.approx(1.0, rel=1e-4)
    assert (gam.diff() >= -1e-6).all() and gam[-1] > gam[0] + 0.1
    # a larger tau (stronger pull to uniform) keeps the margins closer to gamma0
    flat = L.dynamic_target_margins(gaps, gamma0=1.0, tau=50.0, steps=200)
    assert flat.std() < gam.std()


@pytest.mark.parametrize("n,gamma0,tau,scale,steps", [
    (64, 1.0, 1.0, 3.0, 200),
    (256, 0.5, 0.1, 2.0, 1000),
    (300, 0.05, 0.05, 1.0, 1000),
    (512, 1.0, 10.0, 1.0, 200),
    (256, 0.5, 0.1, 2.0, 3000),  # steps * lr * gamma0 / 2 > 300: the re-centring path
])
def test_gamma_po_solver_converges_to_the_minimiser(n, gamma0, tau, scale, steps):
    """Checked against the objective, not the iteration. F(p) = mean_i -log sigma(g_i - gamma_i) + tau KL(p || u)
    is strictly convex on the simplex and its KL term keeps the minimiser inside it, where (KKT, the sum-to-one
    constraint alone active) dF/dp_i = gamma0 sigma(gamma_i - g_i) + tau (1 + log(N p_i)) is the same for every i.
    (With larger gamma0 / tau the fixed step min(0.5/tau, 1) need not converge: at gamma0 5, tau 0.5 it oscillates.)"""
    gaps = torch.randn(n, generator=torch.Generator().manual_seed(n), dtype=torch.float64) * scale
    gam = L.dynamic_target_margins(gaps, gamma0=gamma0, tau=tau, steps=steps).numpy()
    p = gam / (gamma0 * n)
    grad = gamma0 / (1 + np.exp(gaps.numpy() - gam)) + tau * (1 + np.log(n * p))
    assert np.ptp(grad) < 1e-9 * (gamma0 + tau)


@pytest.mark.parametrize("n", [1, 2, 64])
@pytest.mark.parametrize("gamma0,tau", [(50.0, 1e-3), (50.0, 10.0), (1.0, 1e-3)])
@pytest.mark.parametrize("steps", [0, 20, 500])
def test_gamma_po_solver_is_finite_at_the_extremes(n, gamma0, tau, steps):
    """Gaps of +-1e4, gamma0 50, tau 1e-3: 500 steps move the log-weights by ~1e4, far past exp's range."""
    gaps = torch.randn(n, generator=torch.Generator().manual_seed(n), dtype=torch.float64)
    gaps[::3], gaps[1::3] = 1e4, -1e4
    out = L.dynamic_target_margins(gaps, gamma0=gamma0, tau=tau, steps=steps)
    assert torch.isfinite(out).all() and (out >= 0).all()
    assert out.sum().item() == pytest.approx(n * gamma0, rel=1e-12)
    np.testing.assert_allclose(out.numpy(), _gamma_reference(gaps.tolist(), gamma0, tau, steps), rtol=0,
                               atol=1e-8 * gamma0)
    if steps == 0 or n == 1:
        np.testing.assert_allclose(out.numpy(), gamma0, rtol=1e-12)


def test_amapo(batch):
    b = batch
    beta = 2.0
    out = L.amapo_loss(b["pc"], b["pr"], beta=beta, chosen_lengths=b["lc"], rejected_lengths=b["lr"])
    hs = [hbar_of(b, i) for i in range(N)]
    mu = sum(hs) / N
    s = math.sqrt(sum((x - mu) ** 2 for x in hs) / (N - 1))
    m = [beta * math.exp((mu - x) / s * mu) if x < mu else 0.0 for x in hs]
    close(out, [-logsig(beta * hs[i] - m[i]) for i in range(N)])
    np.testing.assert_allclose(out.stats["margin"].numpy(), m, rtol=1e-4)
    # without length normalisation h is the raw log-ratio
    out = L.amapo_loss(b["pc"], b["pr"], beta=beta, length_norm=False)
    assert out.h[0].item() == pytest.approx((b["pc"][0] - b["pr"][0]).item())


def test_mmpo_policy_and_reward(batch):
    b = batch
    out = L.mmpo_loss(b["pc"], b["pr"], b["rc"], b["rr"], margin=b["margin"], beta=0.2, gamma_bt=1.5)
    exp = []
    for i in range(N):
        p = sig(1.5 * b["margin"][i].item())
        z = 0.2 * h_of(b, i)
        exp.append(-p * logsig(z) - (1 - p) * logsig(-z))
    close(out, exp)
    r = L.mmpo_reward_loss(b["pc"], b["pr"], b["margin"], gamma_bt=0.5)
    exp = []
    for i in range(N):
        p = sig(0.5 * b["margin"][i].item())
        d = (b["pc"][i] - b["pr"][i]).item()
        exp.append(-p * logsig(d) - (1 - p) * logsig(-d))
    close(r, exp)
    hard = L.reward_bt_loss(b["pc"], b["pr"])
    close(hard, [-logsig((b["pc"][i] - b["pr"][i]).item()) for i in range(N)])


# ----------------------------------------------------------------- gradient weights vs autograd

ALL = sorted(L.LOSSES)


@pytest.mark.parametrize("name", ALL)
def test_grad_weight_matches_autograd(name, batch):
    b = {k: v.clone() for k, v in batch.items()}
    pc = b["pc"].clone().requires_grad_(True)
    pr = b["pr"].clone().requires_grad_(True)
    hp = {"length_norm": True} if name == "ipo" else {}
    out = L.compute_loss(name, pc, pr, b["rc"], b["rr"], margin=b["margin"], chosen_lengths=b["lc"],
                         rejected_lengths=b["lr"], generator=torch.Generator().manual_seed(0), **hp)
    out.losses.sum().backward()
    normalised = name in {"simpo", "gamma_simpo", "amapo"} or name == "ipo"
    dh_dpc = 1.0 / b["lc"] if normalised else torch.ones(N)
    dh_dpr = -1.0 / b["lr"] if normalised else -torch.ones(N)
    np.testing.assert_allclose(pc.grad.numpy(), (out.grad_weight * dh_dpc).numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(pr.grad.numpy(), (out.grad_weight * dh_dpr).numpy(), rtol=1e-4, atol=1e-6)
    # reference log-probs never receive gradient through a loss
    assert out.grad_weight.requires_grad is False


@pytest.mark.parametrize("name", ["dpo", "cdpo", "robust", "madpo", "mmpo"])
def test_reference_logps_carry_no_gradient_but_shift_h(name, batch):
    rc = batch["rc"].clone().requires_grad_(True)
    out = L.compute_loss(name, batch["pc"], batch["pr"], rc, batch["rr"], margin=batch["margin"])
    out.loss.backward()
    # d loss / d rc = -grad_weight / N: the reference enters h with a minus sign, nothing else
    np.testing.assert_allclose(rc.grad.numpy(), (-out.grad_weight / N).numpy(), rtol=1e-4, atol=1e-7)


def test_mmpo_gradient_vanishes_at_the_matched_margin():
    m = torch.tensor([0.0, 1.0, 2.0])
    h = 1.5 * m / 0.5  # beta h = gamma_bt m  ->  sigma(beta h) = p
    z = torch.zeros(3)
    out = L.mmpo_loss(h, z, z, z, margin=m, beta=0.5, gamma_bt=1.5)
    assert out.grad_weight.abs().max() < 1e-6


def test_amapo_allocates_more_gradient_to_pairs_below_the_mean():
    h = torch.tensor([-2.0, -1.0, 0.5, 1.0, 3.0, 4.0])
    one = torch.ones(6)
    am = L.amapo_loss(h, torch.zeros(6), beta=2.0, chosen_lengths=one, rejected_lengths=one)
    sp = L.simpo_loss(h, torch.zeros(6), beta=2.0, gamma_beta_ratio=0.0, chosen_lengths=one, rejected_lengths=one)
    below = h < h.mean()
    assert (am.stats["margin"][~below] == 0).all() and (am.stats["margin"][below] > 0).all()
    assert (am.grad_weight[below].abs() > sp.grad_weight[below].abs()).all()


# ----------------------------------------------------------------- extremes


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_finite_at_extreme_log_ratios(name, dtype):
    pc = torch.tensor([1e4, -1e4, 0.0, 5e3, -3.0]).to(dtype).requires_grad_(True)
    pr = torch.tensor([-1e4, 1e4, 0.0, -5e3, 2.0]).to(dtype)
    z = torch.zeros(5, dtype=dtype)
    margin = torch.tensor([1e4, -1e4, 0.0, 50.0, -3.0])
    lens = torch.tensor([1.0, 3.0, 200.0, 1.0, 7.0])
    out = L.compute_loss(name, pc, pr, z, z, margin=margin, chosen_lengths=lens, rejected_lengths=lens,
                         generator=torch.Generator().manual_seed(0))
    out.loss.backward()
    assert torch.isfinite(out.losses).all(), out.losses
    assert torch.isfinite(out.grad_weight).all()
    assert torch.isfinite(pc.grad.float()).all()


@pytest.mark.parametrize("name", ALL)
def test_batch_of_one(name):
    one = torch.ones(1)
    x = torch.tensor([-3.0], requires_grad=True)
    out = L.compute_loss(name, x, -one, -one, -one, margin=one, chosen_lengths=one, rejected_lengths=one,
                         generator=torch.Generator().manual_seed(0))
    out.loss.backward()
    assert torch.isfinite(out.loss) and torch.isfinite(x.grad).all()


def test_amapo_all_equal_margins_give_no_adaptive_margin():
    pc = torch.full((8,), -5.0)
    pr = torch.full((8,), -5.7)
    one = torch.ones(8)
    out = L.amapo_loss(pc, pr, beta=2.0, chosen_lengths=one, rejected_lengths=one)
    assert (out.stats["margin"] == 0).all() and torch.isfinite(out.losses).all()
    # values equal up to float rounding must not blow up either
    pc = torch.full((8,), 0.1) + torch.arange(8) * 1e-9
    out = L.amapo_loss(pc, torch.zeros(8), beta=2.0, chosen_lengths=one, rejected_lengths=one)
    assert torch.isfinite(out.losses).all() and out.stats["margin"].max() < 1e3


@pytest.mark.parametrize("hbar", [0.1, -0.37, 1.0 / 3.0, 2.5, 1e-3, 40.0])
@pytest.mark.parametrize("n", [2, 3, 7, 64, 1000])
def test_amapo_equal_margins_give_exactly_the_plain_loss(hbar, n):
    """All-equal h: no pair is below the mean, m = 0, loss = -log sigma(beta h). Before, a one-ulp rounding of the
    float32 mean counted as spread and gave every pair m ~ beta e^mu (h = 0.1: m = 2.2, the loss x3.6)."""
    one = torch.ones(n)
    h = torch.full((n,), hbar)
    out = L.amapo_loss(h, torch.zeros(n), beta=2.0, chosen_lengths=one, rejected_lengths=one)
    assert (out.stats["margin"] == 0).all()
    torch.testing.assert_close(out.losses, -torch.nn.functional.logsigmoid(2.0 * h))
    # The same h reached through different lengths: equal to within an ulp or two, still no spread.
    lengths = torch.randint(1, 50, (n,), generator=torch.Generator().manual_seed(n)).float()
    out = L.amapo_loss(hbar * lengths, torch.zeros(n), beta=2.0, chosen_lengths=lengths, rejected_lengths=one)
    assert (out.stats["margin"] == 0).all(), out.stats["margin"]
    # ...and in multi-process form, with the gathered h of the global batch.
    out = L.amapo_loss(h[:1], torch.zeros(1), beta=2.0, chosen_lengths=one[:1], rejected_lengths=one[:1], gathered_h=h)
    assert (out.stats["margin"] == 0).all()


def test_amapo_a_real_small_spread_still_counts():
    """The no-spread rule must not swallow real differences: h = 0.1 +- 1e-4 is far above float32 resolution."""
    h = torch.tensor([0.1 - 1e-4, 0.1, 0.1 + 1e-4])
    one = torch.ones(3)
    out = L.amapo_loss(h, torch.zeros(3), beta=2.0, chosen_lengths=one, rejected_lengths=one)
    mu, s = h.double().mean(), h.double().std()
    expected = 2.0 * math.exp(float((mu - h[0].double()) / s * mu))
    assert out.stats["margin"][0].item() == pytest.approx(expected, rel=1e-4)
    assert out.stats["margin"][1:].eq(0).all()


@pytest.mark.parametrize("name", ["dpo", "cdpo", "madpo", "mmpo", "simpo", "gamma_dpo", "amapo", "ipo", "robust"])
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_grad_weight_keeps_its_digits_on_confident_pairs(name, sign):
    """beta h of 5-15 (confident pairs): dloss/dh against its closed form in float64, relative error <= 1e-5. Computing 1 - sigma(z) in float32 lost up to 17 % there."""
    n = 11
    beta = 2.0 if name in {"simpo", "amapo"} else 1.0
    h = sign * torch.linspace(5.0, 15.0, n, dtype=torch.float64) / beta
    z = torch.zeros(n, dtype=torch.float64)
    kw = dict(beta=beta, margin=torch.linspace(-1, 1, n), chosen_lengths=torch.ones(n), rejected_lengths=torch.ones(n))
    if name == "gamma_dpo":
        kw["gamma_beta_ratio"] = 0.0  # a margin of zero for every pair: the gradient is DPO's, h-dependence aside
    if name == "amapo":
        kw["gathered_h"] = torch.full((n,), 100.0)  # batch mean far above: m = beta e^{...} capped, detached
    out = L.LOSSES[name](h.float(), z.float(), z.float(), z.float(), **kw)
    # float64 reference of dloss/dh from the closed forms the losses implement (their float32 agreement with
    # autograd is test_grad_weight_matches_autograd); the same float32 h goes into both
    h = h.float().double()
    t = {"cdpo": 0.9, "mmpo": torch.sigmoid(kw["margin"].double())}.get(name, 1.0)
    zz = beta * h
    if name == "amapo":
        zz = zz - out.stats["margin"].double()
    if name == "ipo":
        want = 2.0 * (h - 1.0 / (2.0 * beta))
    elif name == "robust":
        eps = 0.1
        want = -beta * ((1 - eps) * torch.sigmoid(-zz) + eps * torch.sigmoid(zz)) / (1 - 2 * eps)
    elif name == "simpo":
        zz = zz - 0.5 * beta
        want = -beta * torch.sigmoid(-zz)
    else:
        want = beta * ((1 - t) * torch.sigmoid(zz) - t * torch.sigmoid(-zz))
    if name == "madpo":
        want = want * out.stats["weight"].double()
    got = out.grad_weight.double()
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=0)


# ----------------------------------------------------------------- errors


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("beta", [0.0, -0.1, float("nan"), float("inf")])
def test_bad_beta_is_named(name, beta):
    z = torch.zeros(3)
    with pytest.raises(ValueError, match="beta"):
        L.compute_loss(name, z, z, z, z, beta=beta, margin=z, chosen_lengths=z + 1, rejected_lengths=z + 1)


def test_unknown_loss_name():
    with pytest.raises(ValueError, match="unknown loss name 'dpoo'"):
        L.compute_loss("dpoo", torch.zeros(2), torch.zeros(2))
    with pytest.raises(ValueError, match="unknown loss name"):
        Objective("SimPO")


@pytest.mark.parametrize("name", ["madpo", "mmpo"])
def test_nan_margin_is_named_with_its_pair(name):
    z = torch.zeros(4)
    with pytest.raises(ValueError, match=r"margin.*pair 2"):
        L.compute_loss(name, z, z, z, z, margin=torch.tensor([0.0, 1.0, float("nan"), 2.0]))
    with pytest.raises(ValueError, match="margin is required"):
        L.compute_loss(name, z, z, z, z)


@pytest.mark.parametrize(
    "name,kw,word",
    [
        ("robust", {"label_smoothing": 0.5}, "label_smoothing"),
        ("cdpo", {"label_smoothing": -0.1}, "label_smoothing"),
        ("madpo", {"c_max": 0.8}, "c_max"),
        ("madpo", {"tau": 0.0}, "tau"),
        ("gamma_dpo", {"tau": -1.0}, "tau"),
        ("gamma_simpo", {"gamma_beta_ratio": -0.5}, "gamma_beta_ratio"),
        ("mmpo", {"gamma_bt": 0.0}, "gamma_bt"),
        ("beta_dpo", {"keep_ratio": 0.0}, "keep_ratio"),
        ("beta_dpo", {"alpha": -1.0}, "alpha"),
    ],
)
def test_bad_hyperparameters_are_named(name, kw, word):
    with pytest.raises(ValueError, match=word):
        Objective(name, **kw)


def test_unknown_hyperparameter_is_named():
    with pytest.raises(ValueError, match="'bta'"):
        Objective("dpo", bta=0.1)


def test_shape_errors_name_the_tensor():
    with pytest.raises(ValueError, match="policy_rejected_logps has 3 pairs"):
        L.dpo_loss(torch.zeros(4), torch.zeros(3), torch.zeros(4), torch.zeros(4))
    with pytest.raises(ValueError, match="chosen_lengths"):
        L.simpo_loss(torch.zeros(2), torch.zeros(2), chosen_lengths=torch.tensor([0.0, 1.0]),
                     rejected_lengths=torch.ones(2))
    with pytest.raises(ValueError, match="ref_chosen_logps is required"):
        L.dpo_loss(torch.zeros(2), torch.zeros(2), None, torch.zeros(2))


# ----------------------------------------------------------------- running state


def test_objective_keeps_beta_dpo_statistics_and_gamma_queue():
    g = torch.Generator().manual_seed(0)
    bd = Objective("beta_dpo", beta=0.1, momentum=0.9)
    gp = Objective("gamma_dpo", beta=0.1, queue_size=10, opt_size=8)
    for _ in range(3):
        pc = torch.randn(4, generator=g) * 10
        z = torch.zeros(4)
        out = bd(pc, z, z, z)
        gp(pc, z, z, z)
    assert bd.gap_mean != 0.0 and bd.gap_std != 1.0
    assert len(gp.queue) == 10  # capped at queue_size
    state = gp.state_dict()
    gp2 = Objective("gamma_dpo", beta=0.1, queue_size=10, opt_size=8)
    gp2.load_state_dict(state)
    assert torch.equal(gp2.queue, gp.queue)
    before = bd.gap_mean
    bd(pc, z, z, z, update=False)
    assert bd.gap_mean == before
    assert out.mask is not None


def test_bandit_scores_ties_as_coin_flips_and_learns():
    from apo_utils.bandit import evaluate, make_bandit, train

    b = make_bandit(n_responses=50, n_pairs=400, n_test=400, seed=0)
    at_ref = evaluate(b.ref_logits.clone(), b, reference_free=False)
    assert at_ref["ranking_accuracy"] == 0.5 and abs(at_ref["kl"]) < 1e-6 and abs(at_ref["reward_gain"]) < 1e-6
    r = train("dpo", b, steps=60, seed=0)
    assert r["curve"]["ranking_accuracy"][0] == 0.5 and r["final"]["ranking_accuracy"] > 0.7
    assert r["final"]["kl"] > 0 and r["final"]["reward_gain"] > 0


# ----------------------------------------------------------------- the module as a formula page

PUBLIC_LOSSES = ["dpo_loss", "cdpo_loss", "robust_loss", "ipo_loss", "simpo_loss", "beta_dpo_loss", "madpo_weight",
                 "madpo_loss", "dynamic_target_margins", "gamma_dpo_loss", "gamma_simpo_loss", "amapo_loss",
                 "mmpo_loss", "mmpo_reward_loss", "reward_bt_loss"]


def test_notation_is_defined_in_the_module_and_points_inside_the_repository():
    doc = L.__doc__
    legend = doc[doc.index("Notation"):].split("\n\n")[0].splitlines()[1:]
    defined = {term for line in legend for term in line.strip().split("  ")[0].split(", ")}
    assert {"pc", "pr", "rc", "rr", "h", "h_bar", "beta", "sigma", "Delta", "|y_w|", "|y_l|"} <= defined, defined
    assert "book/references.md" in doc
    source = Path(L.__file__).read_text()
    assert "shared/" not in source and "papers.md" not in source


@pytest.mark.parametrize("name", PUBLIC_LOSSES)
def test_every_loss_cites_its_paper_and_is_on_the_references_page(name):
    doc = getattr(L, name).__doc__
    assert re.search(r"(19|20)\d\d", doc), f"{name}: no year"
    assert re.search(r"arXiv \d{4}\.\d{5}|no arXiv id", doc), f"{name}: no arXiv id"
    references = Path(L.__file__).parents[1] / "book" / "references.md"
    assert f"`{name}`" in references.read_text(), f"{name} is missing from book/references.md"


def test_formulas_come_before_the_input_checks():
    source = inspect.getsource(L)
    checks = source.index("# --------------------------------------------------------------------------- input checks")
    for name in PUBLIC_LOSSES + ["_sigmoid_ce", "_reference_margin", "_normalised_margin"]:
        assert source.index(f"def {name}(") < checks, name
    for helper in ("_positive", "_nonneg", "_smoothing", "_pairs", "_finite_margin", "_lengths"):
        assert source.index(f"def {helper}(") > checks, helper
