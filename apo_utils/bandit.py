"""A Bradley-Terry bandit: every loss trained for real in seconds, with the true reward known.

The "policy" is a softmax over `n_responses` fixed responses with logits theta; the reference is the
starting softmax. Each response has a true reward r ~ N(0, 1). Preference pairs are drawn from the
reference and labelled by a noisy Bradley-Terry annotator, P(a beats b) = sigma(s (r_a - r_b)), so
some labels are wrong exactly as in real preference data. MADPO and MMPO receive a reward-model
margin: the annotator's true logit s (r_w - r_l) plus Gaussian estimation noise. All responses have
length 1, so length normalisation (SimPO, AMaPO) is the identity here.

Measured per method and seed: ranking accuracy on held-out pairs (does the method's implicit reward
order them as the true reward does), the true-reward gain E_pi[r] - E_ref[r], and KL(pi || ref).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from . import losses as L
from .objective import Objective

# Hyperparameters for the bandit: one beta scale for the reference-based family, SimPO-style ones
# for the reference-free family, and each method's own knobs at the papers' defaults.
BANDIT_HPARAMS = {
    "dpo": {"beta": 0.5},
    "ipo": {"beta": 0.5},
    "cdpo": {"beta": 0.5, "label_smoothing": 0.1},
    "robust": {"beta": 0.5, "label_smoothing": 0.1},
    "beta_dpo": {"beta": 0.5, "alpha": 0.6, "keep_ratio": 0.8},
    "madpo": {"beta": 0.5, "c_max": 2.0},
    "gamma_dpo": {"beta": 0.5, "gamma_beta_ratio": 0.5, "tau": 1.0},
    "mmpo": {"beta": 0.5, "gamma_bt": 1.0},
    "simpo": {"beta": 2.0, "gamma_beta_ratio": 0.5},
    "gamma_simpo": {"beta": 2.0, "gamma_beta_ratio": 0.5, "tau": 1.0},
    "amapo": {"beta": 2.0},
}



@dataclass
class Bandit:
    """One random problem: true rewards, reference logits, train and held-out pairs."""

    rewards: torch.Tensor  # (K,)
    ref_logits: torch.Tensor  # (K,)
    train_w: torch.Tensor  # (N,) index of the labelled winner
    train_l: torch.Tensor
    train_margin: torch.Tensor  # reward-model estimate of the BT logit margin, per train pair
    train_flipped: torch.Tensor  # bool: the label disagrees with the true reward
    test_a: torch.Tensor  # held-out pairs, ordered by true reward: a is truly better
    test_b: torch.Tensor


def make_bandit(n_responses: int = 300, n_pairs: int = 2000, n_test: int = 2000, label_scale: float = 2.0,
                rm_noise: float = 0.5, ref_temperature: float = 1.0, seed: int = 0) -> Bandit:
    g = torch.Generator().manual_seed(seed)
    k = n_responses
    rewards = torch.randn(k, generator=g)
    # The reference likes some responses more than others, unrelated to their reward.
    ref_logits = torch.randn(k, generator=g) * ref_temperature
    ref_p = torch.softmax(ref_logits, 0)

    def draw(n):
        a = torch.multinomial(ref_p, n, replacement=True, generator=g)
        b = torch.multinomial(ref_p, n, replacement=True, generator=g)
        keep = a != b
        return a[keep], b[keep]

    a, b = draw(n_pairs)
    p_a = torch.sigmoid(label_scale * (rewards[a] - rewards[b]))
    a_wins = torch.rand(a.shape[0], generator=g) < p_a
    w, l_ = torch.where(a_wins, a, b), torch.where(a_wins, b, a)
    true_logit = label_scale * (rewards[w] - rewards[l_])
    margin = true_logit + rm_noise * torch.randn(w.shape[0], generator=g)
    ta, tb = draw(n_test)
    ta, tb = torch.where(rewards[ta] >= rewards[tb], ta, tb), torch.where(rewards[ta] >= rewards[tb], tb, ta)
    return Bandit(rewards, ref_logits, w, l_, margin, true_logit < 0, ta, tb)


def evaluate(theta: torch.Tensor, bandit: Bandit, reference_free: bool) -> dict[str, float]:
    logp = F.log_softmax(theta, 0)
    ref_logp = F.log_softmax(bandit.ref_logits, 0)
    implicit = logp if reference_free else logp - ref_logp
    p = logp.exp()
    return {
        # a tie (e.g. every implicit reward is 0 at the reference) counts as a coin flip, not as an error
        "ranking_accuracy": ((implicit[bandit.test_a] > implicit[bandit.test_b]).float()
                             + 0.5 * (implicit[bandit.test_a] == implicit[bandit.test_b]).float()).mean().item(),
        "reward_gain": float((p * bandit.rewards).sum() - (ref_logp.exp() * bandit.rewards).sum()),
        "kl": float((p * (logp - ref_logp)).sum()),
    }


def train(method: str, bandit: Bandit, steps: int = 400, batch_size: int = 64, lr: float = 0.05, seed: int = 0,
          eval_every: int = 25, hparams: dict | None = None) -> dict:
    """Train one method with Adam on theta; returns final metrics, curves and per-step diagnostics."""
    hp = dict(BANDIT_HPARAMS[method] if hparams is None else hparams)
    obj = Objective(method, seed=seed, **hp)
    theta = bandit.ref_logits.clone().requires_grad_(True)
    opt = torch.optim.Adam([theta], lr=lr)
    g = torch.Generator().manual_seed(10_000 + seed)
    ref_logp = F.log_softmax(bandit.ref_logits, 0)
    n = bandit.train_w.shape[0]
    ones = torch.ones(batch_size)
    curve = {"step": [], "ranking_accuracy": [], "reward_gain": [], "kl": []}
    grad_on_flipped, grad_on_clean = [], []
    free = not L.capabilities(method).reference
    for step in range(steps + 1):
        if step % eval_every == 0 or step == steps:
            with torch.no_grad():
                m = evaluate(theta, bandit, free)
            curve["step"].append(step)
            for key in ("ranking_accuracy", "reward_gain", "kl"):
                curve[key].append(m[key])
        if step == steps:
            break
        idx = torch.randint(0, n, (batch_size,), generator=g)
        w, l_ = bandit.train_w[idx], bandit.train_l[idx]
        logp = F.log_softmax(theta, 0)
        out = obj(logp[w], logp[l_], ref_logp[w], ref_logp[l_], margin=bandit.train_margin[idx],
                  chosen_lengths=ones, rejected_lengths=ones)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        flipped = bandit.train_flipped[idx]
        gw = out.grad_weight.abs() * (out.mask if out.mask is not None else 1.0)
        if flipped.any():
            grad_on_flipped.append(gw[flipped].mean().item())
        if (~flipped).any():
            grad_on_clean.append(gw[~flipped].mean().item())
    final = {k: v[-1] for k, v in curve.items() if k != "step"}
    mean = lambda xs: sum(xs) / len(xs) if xs else float("nan")  # noqa: E731
    final["grad_weight_flipped"] = mean(grad_on_flipped)
    final["grad_weight_clean"] = mean(grad_on_clean)
    return {"method": method, "seed": seed, "hparams": hp, "final": final, "curve": curve}


def run_all(methods, seeds, n_responses=300, n_pairs=2000, steps=400, batch_size=64, progress=True) -> list[dict]:
    """Every method on the same bandit per seed (same data, same batch order), for each seed."""
    from tqdm.auto import tqdm

    jobs = [(s, m) for s in seeds for m in methods]
    results, bandits = [], {}
    for seed, method in tqdm(jobs, desc="bandit runs", disable=not progress):
        if seed not in bandits:
            bandits[seed] = make_bandit(n_responses=n_responses, n_pairs=n_pairs, seed=seed)
        results.append(train(method, bandits[seed], steps=steps, batch_size=batch_size, seed=seed))
    return results
