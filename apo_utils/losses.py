"""Preference-optimisation objectives as pure functions of per-pair log-probs: one formula per function.

Every loss takes the summed sequence log-probs of the chosen and rejected responses under the policy (and,
for reference-based methods, under the reference model) and returns a `LossOutput`: the per-pair loss, the
margin `h` the loss is a function of, and the analytic gradient weight `dloss/dh`, the scalar that multiplies
grad(h) for that pair. Plotting that weight against the margin shows what a method does to easy, hard and
mislabelled pairs; the tests check it against autograd.

Notation, for one pair (x, y_w chosen, y_l rejected); book/references.md has the papers and equations:
    pc, pr    log pi(y_w|x), log pi(y_l|x): the policy's log-probs, summed over the response tokens
    rc, rr    log ref(y_w|x), log ref(y_l|x): the same under the frozen reference model
    |y_w|, |y_l|   response lengths in tokens (`chosen_lengths`, `rejected_lengths`)
    h         = (pc - pr) - (rc - rr)          the reference-based implicit reward margin, divided by beta
    h_bar     = pc/|y_w| - pr/|y_l|            the length-normalised, reference-free margin (SimPO, AMaPO)
    beta      the scale of the margin inside the loss (the KL strength of DPO; IPO's tau)
    sigma     the logistic function, sigma(z) = 1 / (1 + exp(-z)); log sigma is `F.logsigmoid`
    Delta     per-pair `margin` from the data: r(y_w) - r(y_l) under a reward model or the ground truth

Stop-gradients sit where the papers put them: MADPO's weight, beta-DPO's beta, gamma-PO's margins and
AMaPO's margin are all computed from detached quantities. Losses are computed in float32 whatever the
input dtype, so bf16/fp16 log-probs do not overflow inside the loss. The input checks live at the bottom
of the file, after the formulas.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "LOSSES",
    "LOSS_TABLE",
    "Capabilities",
    "LossOutput",
    "amapo_loss",
    "batch_statistic",
    "beta_dpo_loss",
    "capabilities",
    "cdpo_loss",
    "compute_loss",
    "dpo_loss",
    "dynamic_target_margins",
    "gamma_dpo_loss",
    "gamma_simpo_loss",
    "ipo_loss",
    "madpo_loss",
    "madpo_weight",
    "mmpo_loss",
    "mmpo_reward_loss",
    "reward_bt_loss",
    "robust_loss",
    "simpo_loss",
]

# The keyword inputs a loss reads from the batch or from the objective's running state, not from the user.
# `Objective` refuses them as hyperparameters; every other keyword of a loss is a hyperparameter with a
# default, named in its docstring (tests/test_loss_table.py holds both rules).
BATCH_INPUTS = (
    "pc", "pr", "rc", "rr",                       # log-probs of the pair under the policy and the reference
    "margin", "chosen_lengths", "rejected_lengths",  # per-pair data: Delta and |y_w|, |y_l|
    "gap_mean", "gap_std", "generator",           # beta-DPO's running statistics and sampler
    "context",                                    # gamma-PO's recent gaps from its queue
    "gathered_gaps", "gathered_h", "offset",      # multi-process: every process's pooled statistic
)


@dataclass
class LossOutput:
    """Per-pair result of one objective.

    losses:      per-pair loss (float32). Reduce with `.loss`, which honours `mask`.
    h:           the margin variable the loss is a function of (detached): h, or h_bar.
    grad_weight: analytic dloss_i/dh_i with stop-gradients respected (detached).
    mask:        1 for pairs that count, 0 for pairs a method filters out (beta-DPO); None = all.
    stats:       diagnostics to log (per-pair tensors or scalars), e.g. the adaptive margin.
    denominator: what the masked sum is divided by; None = this batch's kept pairs. Multi-process training
                 sets it to the global batch's kept pairs over the number of processes (see `Objective`).
    """

    losses: torch.Tensor
    h: torch.Tensor
    grad_weight: torch.Tensor
    mask: torch.Tensor | None = None
    stats: dict[str, torch.Tensor] = field(default_factory=dict)
    denominator: torch.Tensor | None = None

    @property
    def loss(self) -> torch.Tensor:
        if self.mask is None:
            return self.losses.mean()
        d = self.mask.sum().clamp_min(1.0) if self.denominator is None else self.denominator
        return (self.losses * self.mask).sum() / d


# --------------------------------------------------------------------------- the margins and the logistic loss


def _reference_margin(pc, pr, rc, rr) -> torch.Tensor:
    """h = (pc - pr) - (rc - rr): how much more the policy prefers y_w over y_l than the reference does."""
    pc, pr, rc, rr = _pairs(
        policy_chosen_logps=pc, policy_rejected_logps=pr, ref_chosen_logps=rc, ref_rejected_logps=rr
    )
    return (pc - pr) - (rc - rr)


def _normalised_margin(pc, pr, chosen_lengths, rejected_lengths) -> torch.Tensor:
    """h_bar = pc/|y_w| - pr/|y_l|: the per-token margin, with no reference model."""
    pc, pr = _pairs(policy_chosen_logps=pc, policy_rejected_logps=pr)
    lc = _lengths(chosen_lengths, "chosen_lengths", pc.shape[0])
    lr = _lengths(rejected_lengths, "rejected_lengths", pc.shape[0])
    return pc / lc - pr / lr


def _sigmoid_ce(z: torch.Tensor, scale: float | torch.Tensor, target: float | torch.Tensor = 1.0):
    """Cross-entropy of a Bernoulli(target) label against sigma(z), and its derivative in h.

    loss = -t log sigma(z) - (1-t) log sigma(-z),  dloss/dz = sigma(z) - t,  and z = scale*h + const.

    sigma(z) - t is written (1-t) sigma(z) - t sigma(-z): for t = 1 that is -sigma(-z), which keeps its
    digits on confident pairs, where 1 - sigma(z) in float32 would cancel to a few bits (z = 10: 4.5e-5).
    """
    losses = -target * F.logsigmoid(z) - (1.0 - target) * F.logsigmoid(-z)
    if isinstance(target, (int, float)) and target == 1.0:
        grad = -scale * torch.sigmoid(-z)
    else:
        grad = scale * ((1.0 - target) * torch.sigmoid(z) - target * torch.sigmoid(-z))
    return losses, grad.detach()


# --------------------------------------------------------------------------- baselines


def dpo_loss(pc, pr, rc, rr, *, beta: float = 0.1, **_) -> LossOutput:
    """DPO: -log sigma(beta h).

    Rafailov et al. 2023, arXiv 2305.18290, Eq. 7. beta: the KL strength.
    """
    beta = _positive(beta, "beta")
    h = _reference_margin(pc, pr, rc, rr)
    losses, grad = _sigmoid_ce(beta * h, beta)  # -log sigma(beta h)
    return LossOutput(losses, h.detach(), grad)


def cdpo_loss(pc, pr, rc, rr, *, beta: float = 0.1, label_smoothing: float = 0.1, **_) -> LossOutput:
    """Conservative DPO: -(1-eps) log sigma(beta h) - eps log sigma(-beta h).

    Mitchell 2023, "A note on DPO with noisy preferences & relationship to IPO" (no arXiv id): DPO's loss
    when each label is wrong with probability eps = label_smoothing. beta: as in DPO.
    """
    beta, eps = _positive(beta, "beta"), _smoothing(label_smoothing)
    h = _reference_margin(pc, pr, rc, rr)
    losses, grad = _sigmoid_ce(beta * h, beta, 1.0 - eps)  # soft label 1 - eps
    return LossOutput(losses, h.detach(), grad)


def robust_loss(pc, pr, rc, rr, *, beta: float = 0.1, label_smoothing: float = 0.1, **_) -> LossOutput:
    """Robust DPO: [(1-eps)(-log sigma(beta h)) - eps(-log sigma(-beta h))] / (1 - 2 eps).

    Chowdhury et al. 2024, arXiv 2403.00409 (rDPO), as TRL's `robust`: the estimator that is unbiased for
    DPO's loss when labels flip with probability eps = label_smoothing. beta: as in DPO.
    """
    beta, eps = _positive(beta, "beta"), _smoothing(label_smoothing)
    h = _reference_margin(pc, pr, rc, rr)
    z = beta * h
    losses = ((1 - eps) * -F.logsigmoid(z) - eps * -F.logsigmoid(-z)) / (1 - 2 * eps)
    grad = -beta * ((1 - eps) * torch.sigmoid(-z) + eps * torch.sigmoid(z)) / (1 - 2 * eps)
    return LossOutput(losses, h.detach(), grad.detach())


def ipo_loss(
    pc, pr, rc, rr, *, beta: float = 0.1, length_norm: bool = False, chosen_lengths=None, rejected_lengths=None,
    **_,
) -> LossOutput:
    """IPO: (h - 1/(2 beta))^2, a squared loss that stops at a finite target margin.

    Azar et al. 2023, arXiv 2310.12036, Eq. 17; beta is IPO's tau. length_norm=True divides each log-ratio
    by its response length first, as TRL's `ipo` does: h = (pc - rc)/|y_w| - (pr - rr)/|y_l|.
    """
    beta = _positive(beta, "beta")
    pc, pr, rc, rr = _pairs(
        policy_chosen_logps=pc, policy_rejected_logps=pr, ref_chosen_logps=rc, ref_rejected_logps=rr
    )
    if length_norm:
        lc = _lengths(chosen_lengths, "chosen_lengths", pc.shape[0])
        lr = _lengths(rejected_lengths, "rejected_lengths", pc.shape[0])
        h = (pc - rc) / lc - (pr - rr) / lr
    else:
        h = (pc - rc) - (pr - rr)
    target = 1.0 / (2.0 * beta)
    losses = (h - target) ** 2
    return LossOutput(losses, h.detach(), (2.0 * (h - target)).detach())


def simpo_loss(
    pc, pr, rc=None, rr=None, *, beta: float = 2.0, gamma_beta_ratio: float = 0.5,
    chosen_lengths=None, rejected_lengths=None, **_,
) -> LossOutput:
    """SimPO: -log sigma(beta h_bar - gamma), gamma = gamma_beta_ratio * beta; reference-free.

    Meng et al. 2024, arXiv 2405.14734 (SimPO objective). beta: scale of h_bar; gamma: fixed target margin.
    """
    beta, ratio = _positive(beta, "beta"), _nonneg(gamma_beta_ratio, "gamma_beta_ratio")
    h = _normalised_margin(pc, pr, chosen_lengths, rejected_lengths)
    gamma = ratio * beta
    losses, grad = _sigmoid_ce(beta * h - gamma, beta)  # -log sigma(beta h_bar - gamma)
    return LossOutput(losses, h.detach(), grad)


def beta_dpo_loss(
    pc, pr, rc, rr, *, beta: float = 0.1, alpha: float = 0.6, gap_mean: float = 0.0, gap_std: float = 1.0,
    keep_ratio: float = 0.8, generator: torch.Generator | None = None, gathered_gaps: torch.Tensor | None = None,
    offset: int = 0, **_,
) -> LossOutput:
    """beta-DPO: DPO with a batch-level beta and a filter that drops outlying pairs.

    Wu et al. 2024, arXiv 2407.08639, as in the authors' `preference_loss` (junkangwu/beta-DPO):
        gap_i = beta0 h_i;  keep keep_ratio of the batch, sampled without replacement with probability
        ~ exp(-(gap_i - M0)^2 / (2 sigma0^2));  beta = beta0 (1 + alpha (mean kept gap - M0)), detached,
        clamped >= 1e-3;  loss = -log sigma(beta h) on the kept pairs.
    beta is beta0. M0 and sigma0 (gap_mean, gap_std) are running statistics kept by the caller (see
    `apo_utils.objective`); stats['gap_mean'/'gap_std'] carry this batch's values for that update.
    `gathered_gaps` (every process's gaps, in process order; this process's rows start at `offset`)
    makes the filter and beta global in multi-process training, exactly as one process would see them.
    """
    beta0, alpha, gap_std = _beta_dpo_settings(beta, alpha, gap_mean, gap_std, keep_ratio)
    h = _reference_margin(pc, pr, rc, rr)
    gaps = (beta0 * h).detach() if gathered_gaps is None else gathered_gaps.detach().float()
    # The filter: keep pairs near the running mean gap, sampled in proportion to a Gaussian around it.
    w = torch.exp(-0.5 * ((gaps - gap_mean) / gap_std) ** 2)
    if not torch.isfinite(w).all() or w.sum() <= 0:  # every gap far from M0: fall back to uniform
        w = torch.ones_like(gaps)
    n_keep = max(1, int(gaps.numel() * keep_ratio))
    keep = torch.multinomial(w.cpu(), n_keep, replacement=False, generator=generator).to(gaps.device)
    global_mask = torch.zeros_like(gaps)
    global_mask[keep] = 1.0
    # The batch's beta: larger when the kept pairs' gaps are above the running mean.
    beta_used = (beta0 * (1.0 + alpha * (gaps[keep].mean() - gap_mean))).clamp(min=1e-3).detach()
    # In a single process the mask covers this batch; with gathered gaps this process takes its own rows.
    mask = global_mask if gathered_gaps is None else global_mask[offset : offset + h.shape[0]]
    z = beta_used * h
    losses = -F.logsigmoid(z) * mask
    grad = (-beta_used * torch.sigmoid(-z) * mask).detach()
    stats = {
        "beta_used": beta_used,
        "gap_mean": gaps.mean(),
        "gap_std": gaps.std(unbiased=True) if gaps.numel() > 1 else torch.zeros(()),
        "kept_fraction": mask.mean(),
    }
    return LossOutput(losses, h.detach(), grad, mask=mask, stats=stats)


# --------------------------------------------------------------------------- MADPO


def madpo_weight(margin: torch.Tensor, *, c_max: float = 2.0, c_min: float | None = None,
                 lam: float = 1.0, tau: float = math.log(0.999 / 0.001), mode: str = "both") -> torch.Tensor:
    """MADPO's per-pair weight from a reward-model margin Delta.

    Rho 2025, arXiv 2510.05342v1, as in the authors' `utils/loss_functions.py`:
        c(|Delta|) = c_min + (c_max - c_min) / (1 + k exp(lam (|Delta| - tau))),  k = (c_max - 1)/(1 - c_min)
        w = sigma(c Delta) / sigma(Delta) if Delta > -tau, else 1 (pairs the reward model thinks mislabelled).
    Hard pairs (small |Delta|, c > 1) get w > 1 when Delta > 0; easy pairs (|Delta| > tau, c < 1) get w < 1.
    c_min defaults to 1/c_max. mode 'amplify' keeps only w >= 1 (w = max(w, 1)), 'dampen' only w <= 1:
    the paper's ablation; 'both' is MADPO.
    """
    c_max, c_min, lam, tau = _madpo_settings(c_max, c_min, lam, tau, mode)
    delta = margin.float().detach()
    k = (c_max - 1.0) / (1.0 - c_min)
    # k exp(lam(|Delta| - tau)) computed in log space so a huge |Delta| gives c = c_min, not inf/inf
    c = c_min + (c_max - c_min) * torch.sigmoid(-(lam * (delta.abs() - tau) + math.log(k)))
    ratio = torch.exp(F.logsigmoid(c * delta) - F.logsigmoid(delta))  # sigma(c Delta) / sigma(Delta)
    w = torch.where(delta > -tau, ratio, torch.ones_like(ratio))
    if mode == "amplify":
        w = w.clamp(min=1.0)
    elif mode == "dampen":
        w = w.clamp(max=1.0)
    return w


def madpo_loss(
    pc, pr, rc, rr, *, margin=None, beta: float = 0.1, c_max: float = 2.0, c_min: float | None = None,
    lam: float = 1.0, tau: float = math.log(0.999 / 0.001), mode: str = "both", **_,
) -> LossOutput:
    """MADPO: w(Delta) * -log sigma(beta h), the weight fixed by the reward model's margin Delta.

    Rho 2025, arXiv 2510.05342v1 (the authors' MADPO loss). beta: as in DPO; c_max, c_min, lam, tau, mode:
    the weight's shape, see `madpo_weight`.
    """
    beta = _positive(beta, "beta")
    h = _reference_margin(pc, pr, rc, rr)
    delta = _finite_margin(margin, h.shape[0])
    w = madpo_weight(delta, c_max=c_max, c_min=c_min, lam=lam, tau=tau, mode=mode)
    base, grad = _sigmoid_ce(beta * h, beta)  # DPO's -log sigma(beta h), then weighted
    return LossOutput(w * base, h.detach(), (w * grad).detach(), stats={"weight": w})


# --------------------------------------------------------------------------- gamma-PO


def dynamic_target_margins(
    gaps: torch.Tensor, *, gamma0: float, tau: float, context: torch.Tensor | None = None, steps: int = 20,
) -> torch.Tensor:
    """gamma-PO's instance-wise target margins gamma_i for the pairs in `gaps` (g_i = beta h_i, detached).

    Sun et al. 2025, arXiv 2506.03690, as in the authors' `scripts/xpo_trainer.py` (sunjie279/gammaPO):
        F(p) = mean_i -log sigma(g_i - gamma_i) + tau KL(p || uniform),  gamma_i = gamma0 N p_i,
    minimised over p on the simplex by `steps` exponentiated-gradient steps of size min(0.5/tau, 1) from
    uniform, over the set context + gaps (context: recent gaps from a queue). The gamma_i average gamma0
    over the set: confident pairs (large gap) get more, ambiguous ones less; tau keeps them near uniform.
    """
    _nonneg(gamma0, "gamma0")
    tau = _positive(tau, "tau")
    _steps(steps)
    g = gaps.detach().double().reshape(-1).cpu().numpy()
    if context is not None and context.numel():
        g = np.concatenate([context.detach().double().reshape(-1).cpu().numpy(), g])
    n = g.size
    lr = min(0.5 / tau, 1.0)
    # The objective F(p) above and its gradient:
    #     dF/dp_i = gamma0 sigma(gamma_i - g_i) + tau (1 + log(N p_i))
    # Exponentiated gradient from uniform:  p_i <- p_i exp(-lr dF/dp_i) / sum_j p_j exp(-lr dF/dp_j),
    # carried as log p so that no step can overflow or vanish. Written out, a step is a dozen NumPy calls
    # (about 0.2 ms for a few hundred gaps): nothing next to the forward and backward pass it rides with.
    log_p = np.full(n, -math.log(n))
    for _ in range(steps):
        gamma = gamma0 * n * np.exp(log_p)
        sigma = 0.5 * (1.0 + np.tanh(0.5 * (gamma - g)))  # sigma(gamma_i - g_i), without overflow
        grad = gamma0 * sigma + tau * (1.0 + math.log(n) + log_p)
        log_p = log_p - lr * grad
        top = log_p.max()
        log_p -= top + math.log(np.exp(log_p - top).sum())  # normalise: subtract log sum_j exp(log p_j)
    p = np.exp(log_p)
    out = torch.from_numpy(gamma0 * n * p[-gaps.numel():])
    return out.to(device=gaps.device, dtype=gaps.dtype if gaps.is_floating_point() else torch.float32)


def gamma_dpo_loss(
    pc, pr, rc, rr, *, beta: float = 0.1, gamma_beta_ratio: float = 0.5, tau: float = 10.0,
    context: torch.Tensor | None = None, steps: int = 20, gathered_gaps: torch.Tensor | None = None, offset: int = 0,
    **_,
) -> LossOutput:
    """gamma-DPO: -log sigma(beta h - (gamma_i - gamma0)), gamma_i from `dynamic_target_margins`, detached.

    Sun et al. 2025, arXiv 2506.03690, as the authors' loss type `gm-dpo`: the margin is centred, so it adds
    no offset on average. gamma0 = gamma_beta_ratio * beta; tau, steps: see `dynamic_target_margins`.
    stats['gaps'] (beta h, detached) is what the caller pushes into its queue of recent gaps.
    """
    beta, ratio = _positive(beta, "beta"), _nonneg(gamma_beta_ratio, "gamma_beta_ratio")
    h = _reference_margin(pc, pr, rc, rr)
    gaps = (beta * h).detach()
    gamma0 = ratio * beta
    gamma = _gamma_for_batch(gaps, gathered_gaps, offset, gamma0=gamma0, tau=tau, context=context, steps=steps)
    losses, grad = _sigmoid_ce(beta * h - (gamma - gamma0), beta)  # -log sigma(beta h - (gamma_i - gamma0))
    return LossOutput(losses, h.detach(), grad, stats={"gamma": gamma, "gaps": gaps})


def gamma_simpo_loss(
    pc, pr, rc=None, rr=None, *, beta: float = 2.0, gamma_beta_ratio: float = 0.5, tau: float = 10.0,
    chosen_lengths=None, rejected_lengths=None, context: torch.Tensor | None = None, steps: int = 20,
    gathered_gaps: torch.Tensor | None = None, offset: int = 0, **_,
) -> LossOutput:
    """gamma-SimPO: SimPO with its fixed margin gamma0 replaced by gamma_i: -log sigma(beta h_bar - gamma_i).

    Sun et al. 2025, arXiv 2506.03690, as the authors' loss type `gm-simpo`. gamma0 = gamma_beta_ratio * beta
    is the gamma_i's average; tau, steps: see `dynamic_target_margins`.
    """
    beta, ratio = _positive(beta, "beta"), _nonneg(gamma_beta_ratio, "gamma_beta_ratio")
    h = _normalised_margin(pc, pr, chosen_lengths, rejected_lengths)
    gaps = (beta * h).detach()
    gamma = _gamma_for_batch(gaps, gathered_gaps, offset, gamma0=ratio * beta, tau=tau, context=context, steps=steps)
    losses, grad = _sigmoid_ce(beta * h - gamma, beta)  # -log sigma(beta h_bar - gamma_i)
    return LossOutput(losses, h.detach(), grad, stats={"gamma": gamma, "gaps": gaps})


def _gamma_for_batch(gaps, gathered_gaps, offset, **kw) -> torch.Tensor:
    if gathered_gaps is None:
        return dynamic_target_margins(gaps, **kw)
    # Multi-process: solve once over every process's gaps (process order); take this process's rows.
    return dynamic_target_margins(gathered_gaps, **kw)[offset : offset + gaps.numel()].to(gaps.device)


# --------------------------------------------------------------------------- AMaPO


def amapo_loss(
    pc, pr, rc=None, rr=None, *, beta: float = 2.0, length_norm: bool = True, label_smoothing: float = 0.0,
    chosen_lengths=None, rejected_lengths=None, gathered_h: torch.Tensor | None = None,
    max_exponent: float = 50.0, **_,
) -> LossOutput:
    """AMaPO: -log sigma(beta h_i - m_i), a reference-free loss with a Z-normalised, exp-scaled margin.

    Deng et al. 2026, arXiv 2511.09385, as the authors' `amapo_loss` (Shiroha-Offical/AMaPO):
        mu, s = mean and std of h over the (global) batch, detached;  h = h_bar when length_norm, else pc - pr;
        m_i = beta exp(((mu - h_i)/s) mu) if h_i < mu else 0, detached.
    Pairs below the batch mean get a margin and so more gradient; pairs above get none. label_smoothing:
    soft label 1 - eps, as in cDPO. `gathered_h` (h of every process) makes mu and s global. With no spread
    (a batch of one, or h equal to within float32 resolution) no pair is below the mean and m = 0. The
    exponent is capped at `max_exponent`, which only touches pairs whose sigma(m - beta h) is already 1 to
    float precision: the gradient is unchanged.
    """
    beta = _positive(beta, "beta")
    eps = _smoothing(label_smoothing)
    if length_norm:
        h = _normalised_margin(pc, pr, chosen_lengths, rejected_lengths)
    else:
        pc, pr = _pairs(policy_chosen_logps=pc, policy_rejected_logps=pr)
        h = pc - pr
    hs = h.detach() if gathered_h is None else gathered_h.detach().float()
    # mu and s in float64: the mean of n equal float32 numbers is then exact, so all-equal h give s = 0.
    h64 = hs.double()
    mu64 = h64.mean()
    s64 = h64.std(unbiased=True) if hs.numel() > 1 else torch.zeros((), dtype=torch.float64, device=h.device)
    mu, s = mu64.float(), s64.float()
    hd = h.detach()
    # A spread below float32's resolution of the h themselves (a few ulps of max|h|) is rounding in how h was
    # computed, not a difference between pairs: Z-normalising it would turn one ulp into a margin of ~beta e^mu.
    resolution = 8 * torch.finfo(torch.float32).eps * float(h64.abs().max()) if hs.numel() else 0.0
    spread = bool(torch.isfinite(s64) and s64 > resolution and s64 > 0)
    if spread:
        expo = ((mu - hd) / s * mu).clamp(max=max_exponent)
        m = torch.where(hd < mu, beta * torch.exp(expo), torch.zeros_like(hd))
    else:
        m = torch.zeros_like(hd)
    losses, grad = _sigmoid_ce(beta * h - m, beta, 1.0 - eps)  # -log sigma(beta h - m), soft label 1 - eps
    return LossOutput(losses, hd, grad, stats={"margin": m, "batch_mean": mu, "batch_std": s})


# --------------------------------------------------------------------------- MMPO and the reward model


def mmpo_loss(pc, pr, rc, rr, *, margin=None, beta: float = 0.1, gamma_bt: float = 1.0, **_) -> LossOutput:
    """MMPO, policy form: -p log sigma(beta h) - (1-p) log sigma(-beta h),  p = sigma(gamma_bt Delta).

    Kim et al. 2024, arXiv 2410.03145 (the authors' `dpo_trainer.py`, where gamma_bt is `bt_beta`): a soft
    Bradley-Terry target from the quality margin Delta. The gradient vanishes where sigma(beta h) = p, so the
    implicit reward margin is matched to the quality margin rather than pushed to infinity. beta: as in DPO.
    """
    beta, gamma_bt = _positive(beta, "beta"), _positive(gamma_bt, "gamma_bt")
    h = _reference_margin(pc, pr, rc, rr)
    p = torch.sigmoid(gamma_bt * _finite_margin(margin, h.shape[0]))
    losses, grad = _sigmoid_ce(beta * h, beta, p)
    return LossOutput(losses, h.detach(), grad, stats={"target": p})


def mmpo_reward_loss(rewards_chosen, rewards_rejected, margin, *, gamma_bt: float = 1.0) -> LossOutput:
    """MMPO, reward-model form: -p log sigma(r_w - r_l) - (1-p) log sigma(r_l - r_w),  p = sigma(gamma_bt Delta).

    Kim et al. 2024, arXiv 2410.03145 (the authors' `reward_trainer.py`). h here is r_w - r_l.
    """
    gamma_bt = _positive(gamma_bt, "gamma_bt")
    rw, rl = _pairs(rewards_chosen=rewards_chosen, rewards_rejected=rewards_rejected)
    h = rw - rl
    p = torch.sigmoid(gamma_bt * _finite_margin(margin, h.shape[0]))
    losses, grad = _sigmoid_ce(h, 1.0, p)
    return LossOutput(losses, h.detach(), grad, stats={"target": p})


def reward_bt_loss(rewards_chosen, rewards_rejected) -> LossOutput:
    """Bradley-Terry reward-model loss with hard labels: -log sigma(r_w - r_l).

    Bradley & Terry 1952; the reward-model loss of InstructGPT (Ouyang et al. 2022, arXiv 2203.02155),
    one pair at a time. h here is r_w - r_l.
    """
    rw, rl = _pairs(rewards_chosen=rewards_chosen, rewards_rejected=rewards_rejected)
    h = rw - rl
    losses, grad = _sigmoid_ce(h, 1.0)
    return LossOutput(losses, h.detach(), grad)


# --------------------------------------------------------------------------- multi-process


def batch_statistic(name: str, pc, pr, rc=None, rr=None, *, chosen_lengths=None, rejected_lengths=None,
                    beta: float | None = None, length_norm: bool = True, **_) -> torch.Tensor | None:
    """The per-pair number a batch-level loss pools over the batch (None for the others).

    beta-DPO and gamma-DPO: the reward gap beta h; gamma-SimPO: beta h-bar; AMaPO: h (length-normalised
    when `length_norm`). In multi-process training `Objective` gathers it from every process and passes it
    back (`gathered_gaps` / `gathered_h`), so the batch statistics are those of the global batch.
    """
    pooled = capabilities(name).pooled
    if pooled is None:
        return None
    if pooled == "h":
        if length_norm:
            return _normalised_margin(pc, pr, chosen_lengths, rejected_lengths).detach()
        return (pc - pr).detach()
    b = default_beta(name) if beta is None else beta
    if not capabilities(name).reference:
        return (b * _normalised_margin(pc, pr, chosen_lengths, rejected_lengths)).detach()
    return (b * _reference_margin(pc, pr, rc, rr)).detach()


# --------------------------------------------------------------------------- the table of losses


@dataclass(frozen=True)
class Capabilities:
    """What a loss reads beyond the policy log-probs and what it keeps: the one place the trainer, `Objective`,
    the bandit, the ranking helpers and the notebooks ask, instead of lists of names.

    reference: reads the reference model's log-probs (False: reference-free, scored on length-normalised h-bar).
    margin:    reads a per-pair `margin` (a reward-model or quality margin) from the data.
    pooled:    the per-pair number the loss pools over the whole batch ('gaps' = beta h or beta h-bar, 'h' =
               AMaPO's h), so in multi-process training it is gathered from every process and passed back
               as `gathered_<pooled>`; None for losses that treat each pair alone.
    state:     what it keeps between batches: 'gap_stats' (beta-DPO's running mean and std of the gaps),
               'gap_queue' (gamma-PO's queue of recent gaps), or None.
    beta:      its own default beta (the functions' keyword default says the same; a test holds them equal).
    """

    fn: Callable[..., LossOutput]
    reference: bool
    margin: bool = False
    pooled: str | None = None
    state: str | None = None
    beta: float = 0.1


LOSS_TABLE: dict[str, Capabilities] = {
    "dpo": Capabilities(dpo_loss, reference=True),
    "ipo": Capabilities(ipo_loss, reference=True),
    "cdpo": Capabilities(cdpo_loss, reference=True),
    "robust": Capabilities(robust_loss, reference=True),
    "beta_dpo": Capabilities(beta_dpo_loss, reference=True, pooled="gaps", state="gap_stats"),
    "simpo": Capabilities(simpo_loss, reference=False, beta=2.0),
    "madpo": Capabilities(madpo_loss, reference=True, margin=True),
    "gamma_dpo": Capabilities(gamma_dpo_loss, reference=True, pooled="gaps", state="gap_queue"),
    "gamma_simpo": Capabilities(gamma_simpo_loss, reference=False, pooled="gaps", state="gap_queue", beta=2.0),
    "amapo": Capabilities(amapo_loss, reference=False, pooled="h", beta=2.0),
    "mmpo": Capabilities(mmpo_loss, reference=True, margin=True),
}
LOSSES = {name: c.fn for name, c in LOSS_TABLE.items()}


def capabilities(name: str) -> Capabilities:
    """`capabilities('madpo').margin` -> True. Unknown names raise ValueError with the list of known ones."""
    return LOSS_TABLE[check_loss_name(name)]


def default_beta(name: str) -> float:
    """The beta a loss uses when none is given (0.1 for the DPO family, 2.0 for SimPO, gamma-SimPO and AMaPO)."""
    return capabilities(name).beta


def check_loss_name(name: str) -> str:
    if name not in LOSSES:
        raise ValueError(f"unknown loss name {name!r}; choose one of {sorted(LOSSES)}")
    return name


def compute_loss(name: str, pc, pr, rc=None, rr=None, **kwargs) -> LossOutput:
    """Dispatch by name: `compute_loss('madpo', pc, pr, rc, rr, margin=m, beta=0.1)`."""
    return LOSSES[check_loss_name(name)](pc, pr, rc, rr, **kwargs)


# --------------------------------------------------------------------------- input checks
# Below the formulas on purpose: they only turn bad input into a clear ValueError, and Python looks the
# names up when a loss runs, so they can live here.


def _positive(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def _nonneg(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def _smoothing(value, name: str = "label_smoothing") -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0.0 <= value < 0.5):
        raise ValueError(f"{name} must lie in [0, 0.5), got {value!r}")
    return float(value)


def _steps(steps) -> None:
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 0:
        raise ValueError(f"steps must be a whole number >= 0, got {steps!r}")


def _beta_dpo_settings(beta, alpha, gap_mean, gap_std, keep_ratio) -> tuple[float, float, float]:
    """beta-DPO's hyperparameters and running statistics, checked: (beta0, alpha, gap_std)."""
    beta0 = _positive(beta, "beta")
    alpha = _nonneg(alpha, "alpha")
    gap_std = _positive(gap_std, "gap_std")
    if not (isinstance(gap_mean, (int, float)) and math.isfinite(gap_mean)):
        raise ValueError(f"gap_mean must be a finite number, got {gap_mean!r}")
    if isinstance(keep_ratio, bool) or not isinstance(keep_ratio, (int, float)) or not 0 < keep_ratio <= 1:
        raise ValueError(f"keep_ratio must lie in (0, 1], got {keep_ratio!r}")
    return beta0, alpha, gap_std


def _madpo_settings(c_max, c_min, lam, tau, mode) -> tuple[float, float, float, float]:
    """MADPO's weight shape, checked: (c_max, c_min, lam, tau), c_min defaulting to 1/c_max."""
    if mode not in ("both", "amplify", "dampen"):
        raise ValueError(f"MADPO mode must be 'both', 'amplify' or 'dampen', got {mode!r}")
    c_max = _positive(c_max, "c_max")
    c_min = 1.0 / c_max if c_min is None else _positive(c_min, "c_min")
    if not (c_max > 1.0 and c_min < 1.0):
        raise ValueError(f"MADPO needs c_max > 1 > c_min, got c_max={c_max}, c_min={c_min}")
    lam, tau = _positive(lam, "lam"), _positive(tau, "tau")
    return c_max, c_min, lam, tau


def _pairs(**tensors: torch.Tensor | None) -> list[torch.Tensor]:
    """Check the per-pair inputs are 1-D tensors of one length; upcast to float32."""
    out, n = [], None
    for name, t in tensors.items():
        if t is None:
            raise ValueError(f"{name} is required by this loss but was not given")
        if not isinstance(t, torch.Tensor):
            t = torch.as_tensor(t)
        if t.dim() != 1:
            raise ValueError(f"{name} must be a 1-D tensor with one value per pair, got shape {tuple(t.shape)}")
        if n is None:
            n = t.shape[0]
        elif t.shape[0] != n:
            raise ValueError(f"{name} has {t.shape[0]} pairs, expected {n}")
        out.append(t.float())
    if n == 0:
        raise ValueError("the batch is empty: at least one pair is needed")
    return out


def _finite_margin(margin: torch.Tensor | None, n: int, name: str = "margin") -> torch.Tensor:
    """The per-pair Delta, checked finite and one per pair; detached (it is data, not a model output)."""
    (m,) = _pairs(**{name: margin})
    if m.shape[0] != n:
        raise ValueError(f"{name} has {m.shape[0]} pairs, expected {n}")
    bad = ~torch.isfinite(m)
    if bad.any():
        i = int(bad.nonzero()[0])
        raise ValueError(f"{name} must be finite for every pair; pair {i} has {m[i].item()}")
    return m.detach()


def _lengths(lengths: torch.Tensor | None, name: str, n: int) -> torch.Tensor:
    """Response lengths |y|, checked positive and one per pair; detached."""
    (ln,) = _pairs(**{name: lengths})
    if ln.shape[0] != n:
        raise ValueError(f"{name} has {ln.shape[0]} pairs, expected {n}")
    if (ln <= 0).any() or not torch.isfinite(ln).all():
        raise ValueError(f"{name} must be positive token counts")
    return ln.detach()
