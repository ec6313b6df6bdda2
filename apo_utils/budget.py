"""What a profile costs on a free Colab T4, notebook by notebook: the arithmetic behind the `gpu` profile's size.

No T4 was lent to this project, so the estimate is built from the one T4 measurement of this very set-up:
the MADPO authors' Colab notebooks (Gemma-3-270M, LoRA r 16 on q/k/v/o, float32 - which is also what
`env.mixed_precision` picks for Gemma 3 on a T4 -, batches of 16 pairs, sequences of up to 196 tokens):

* training: IPO, 625 steps of 16 pairs in 11:04, so 1.06 s a step, 66 ms a pair and epoch (MADPO's 13:09 an
  epoch, 1.26 s a step, also runs its reward model forward on both responses every step);
* reference log-probs: 10,000 pairs in 2:44 (forward only), 16.4 ms a pair.

Both are scaled by tokens per sequence (prompt + response, against their 196): an assumption that holds
while a step is compute-bound, which a T4 is at these batch sizes in float32. Two numbers are assumed, not
measured: a sampling step of a batch of up to 256 sequences takes 0.25 s (the authors' generation on an L4,
120 batches of 200 sequences x 176 tokens in 58 min, is 0.165 s a step; a T4 is taken as 1.5x slower), and
building each trainer and model costs 15 s. Notebook 01's steps are mirrored here; 02-05's runs are their
settings' job grids (profiles.py), the very lists the notebooks train (tests/test_budget.py checks that `gpu`
stays within the hour and that each notebook trains its grid).

`python -m apo_utils.budget` prints the table the README shows (`markdown`).
"""

from __future__ import annotations

import argparse
import math

from . import profiles
from .losses import LOSSES, capabilities

T4_TRAIN_S_PER_PAIR = 1.06 / 16  # IPO on the authors' T4, one epoch: 625 steps of 16 pairs in 11:04
T4_REFERENCE_S_PER_PAIR = 164 / 10_000  # their reference log-probs: 10,000 pairs in 2:44
AUTHORS_TOKENS = 196  # their sequences: 20 prompt tokens + up to 176 generated
T4_SAMPLING_S_PER_STEP = 0.25  # assumed: one decoding step of a batch of <= 256 sequences
PER_RUN_S = 15.0  # assumed: loading the backbone, wrapping it in LoRA, building a trainer, tokenising
PROMPT_TOKENS = 20  # IMDB openings (prompts.PROMPT_TOKENS); the offline openings are shorter
LIMIT_MIN = 60.0  # what a notebook may take on a T4 under `gpu`



def loss_of(method: str) -> str:
    """The loss a study's method trains with: its own name, the MADPO study's table (`madpo_runs.METHODS`:
    'dpo_rm_labels' -> 'dpo'), the MMPO study's (`mmpo_runs.POLICIES`: 'dpo_truth_labels' -> 'dpo'), else the name
    without its last '_' part (a variant named after its loss)."""
    from .madpo_runs import METHODS
    from .mmpo_runs import POLICIES

    if method in LOSSES:
        return method
    tables = {**{m: v[0] for m, v in METHODS.items()}, **{m: v[0] for m, v in POLICIES.items()}}
    return tables.get(method, method.rsplit("_", 1)[0])


def pairs_per_prompt(d: profiles.DataSettings, quality: str) -> int:
    """Pairs notebook 01 makes from one prompt's samples (data.make_pairs)."""
    if not d.every_pair:
        return 1
    k = d.n_samples
    if quality == "high":
        h = k if d.high_samples is None else min(k, d.high_samples)
        return h * (h - 1) // 2
    m = k // 2 if d.low_extremes is None else min(k // 2, d.low_extremes)
    return m * m


def split_prompts(d: profiles.DataSettings) -> tuple[int, int]:
    """(training prompts, held-out prompts) of notebook 01's split."""
    n_test = min(d.n_prompts - 1, max(1, round(d.test_fraction * d.n_prompts)))
    return d.n_prompts - n_test, n_test


def _scale(tokens: int) -> float:
    return tokens / AUTHORS_TOKENS


def train_s(n_pairs: int, epochs: float, tokens: int, reference: bool = True) -> float:
    """One policy (or reward model) trained on n_pairs: its reference pass, the epochs, the set-up."""
    return PER_RUN_S + n_pairs * _scale(tokens) * (epochs * T4_TRAIN_S_PER_PAIR
                                                   + (T4_REFERENCE_S_PER_PAIR if reference else 0.0))


def forward_s(n_pairs: int, tokens: int) -> float:
    """Log-probs (or reward-model scores) of n_pairs' two responses: a forward pass, no gradient."""
    return n_pairs * _scale(tokens) * T4_REFERENCE_S_PER_PAIR


def sample_s(n_sequences: int, new_tokens: int, batch_size: int, tokens: int) -> float:
    """Sampling n_sequences, then their log-probs under the policy and the reference (the KL estimate)."""
    steps = math.ceil(n_sequences / batch_size) * new_tokens
    return steps * T4_SAMPLING_S_PER_STEP + forward_s(n_sequences, tokens)


def estimate(profile: str) -> dict[str, float]:
    """Minutes each notebook takes on a T4 under `profile`, from nothing (no caches), by the model above."""
    prof = profiles.get(profile)
    d, p = prof.data, prof.policy
    n_train, n_test = split_prompts(d)
    train = {q: n_train * pairs_per_prompt(d, q) for q in ("high", "low")}
    test = {q: n_test * pairs_per_prompt(d, q) for q in ("high", "low")}
    gen_tokens = min(PROMPT_TOKENS + d.max_new_tokens, p.max_length)
    tokens = min(PROMPT_TOKENS + p.eval_max_new_tokens, p.max_length, gen_tokens)

    def evaluate(n_prompts: int) -> float:
        return sample_s(n_prompts * p.eval_samples, p.eval_max_new_tokens, p.eval_batch_size, tokens)

    # 01: sampling, then a reward model a tier, validated every rm_eval_every steps on held-out training prompts
    rm_s = 0.0
    for q in ("high", "low"):
        n_val = round(train[q] * d.rm_val_fraction)
        steps = d.rm_epochs * (train[q] - n_val) / d.rm_batch_size
        rm_s += (train_s(train[q] - n_val, d.rm_epochs, gen_tokens, reference=False)
                 + (steps / d.rm_eval_every if n_val else 0) * forward_s(n_val, gen_tokens)
                 + forward_s(train[q] + test[q], gen_tokens))  # margins of every pair
    nb01 = sample_s(d.n_prompts * d.n_samples, d.max_new_tokens, d.gen_batch_size, gen_tokens) + rm_s

    def n(q: str) -> int:  # pairs a policy trains on (Study.train_rows)
        return train[q] if p.train_pairs is None else min(p.train_pairs, train[q])

    def policy(q: str, method: str, epochs: float = p.epochs, pairs_measured: int = 0, checkpoints: int = 0) -> float:
        reference = capabilities(loss_of(method)).reference
        # reward and KL along training: the last point is the full evaluation, counted above
        along = max(checkpoints - 1, 0) * evaluate(min(p.checkpoint_prompts, p.n_eval_prompts))
        return (train_s(n(q), epochs, tokens, reference) + evaluate(p.n_eval_prompts) + along
                + forward_s(pairs_measured, tokens))

    # Each notebook's runs are its settings' job grid (profiles.py), the list the notebook itself trains.
    # 02: the starting policy, then every job; held-out pairs of both tiers ranked by every policy
    s2 = prof.madpo
    held2 = min(s2.test_pairs, test["high"] + test["low"])
    seeds2 = s2.policy_changes().get("seeds", p.seeds)  # the study's own seeds, where it sets them
    nb02, nb02b = (evaluate(p.n_eval_prompts) + forward_s(held2, tokens) + sum(
        policy(job.get("tier", job["setting"]), job["method"], pairs_measured=held2, checkpoints=s2.checkpoints or 0)
        for job in grid) for grid in (s2.jobs(seeds2), s2.companion_jobs(seeds2)))

    # 03: every job on the noisy tier; clean held-out pairs scored for every policy
    s3 = prof.noise
    held3 = min(s3.test_pairs, test["high"] + test["low"])
    nb03 = evaluate(p.n_eval_prompts) + forward_s(held3, tokens) + sum(
        policy(s3.quality, job["method"], pairs_measured=held3, checkpoints=s3.checkpoints or 0)
        for job in s3.jobs(s3.policy_changes().get("seeds", p.seeds)))

    # 03b: the starting policy (no held-out pairs), then SimPO and gamma-SimPO at the other betas
    nb03b = evaluate(p.n_eval_prompts) + sum(policy(s3.quality, job["method"], checkpoints=s3.checkpoints or 0)
                                             for job in s3.beta_jobs(s3.policy_changes().get("seeds", p.seeds)))

    # 04: every job, measured every track_every steps on two probes, reward and KL at its checkpoints, then every
    # held-out pair
    s4 = prof.ranking
    q4, changes4 = s4.quality, s4.policy_changes()
    n4 = min(changes4.get("train_pairs", n(q4)) or train[q4], train[q4])
    measurements = math.ceil(s4.epochs * n4 / p.batch_size / s4.track_every) + 1
    probes = min(s4.track_train_pairs, n4) + min(s4.track_test_pairs, test[q4])
    held4 = min(s4.test_pairs, test[q4])
    def policy4(method: str) -> float:
        # training, the full evaluation, and with checkpoints reward and KL sampled at every tracked step
        # (policy_runs: the two share track_every; 04b measures at 04's steps too)
        return (train_s(n4, s4.epochs, tokens, capabilities(loss_of(method)).reference) + evaluate(p.n_eval_prompts)
                + ((measurements - 1) * evaluate(min(p.checkpoint_prompts, p.n_eval_prompts)) if s4.checkpoints else 0))

    nb04 = evaluate(p.n_eval_prompts) + forward_s(held4 + probes, tokens) + sum(
        policy4(job["method"]) + forward_s(held4, tokens) + measurements * forward_s(probes, tokens)
        for job in s4.jobs(changes4.get("seeds", p.seeds)))
    # 04b: the starting policy (no held-out pairs), then DPO and AMaPO at the other betas, on 04's pairs and epochs
    nb04b = evaluate(p.n_eval_prompts) + sum(policy4(job["method"])
                                             for job in s4.beta_jobs(changes4.get("seeds", p.seeds)))
    # 04c: the starting policy and its pair sets, then every job trained long on its own tier, both probes measured
    # every track_every steps, the held-out pairs ranked and reward and KL measured at the end only (on its prompts)
    s4c = prof.long_training
    q4c, changes4c = s4c.quality, s4c.policy_changes()
    n4c = min(changes4c.get("train_pairs", n(q4c)) or train[q4c], train[q4c])
    eval4c = changes4c.get("n_eval_prompts", p.n_eval_prompts)
    probes4c = min(s4c.track_train_pairs, n4c) + min(s4c.track_test_pairs, test[q4c])
    held4c = min(s4c.test_pairs, test[q4c])
    measured4c = math.ceil(s4c.epochs * n4c / p.batch_size / s4c.track_every) + 1
    nb04c = evaluate(eval4c) + forward_s(held4c + probes4c, tokens) + sum(
        train_s(n4c, s4c.epochs, tokens, capabilities(loss_of(job["method"])).reference) + evaluate(eval4c)
        + forward_s(held4c, tokens) + measured4c * forward_s(probes4c, tokens)
        for job in s4c.jobs(changes4c.get("seeds", p.seeds)))

    # 05: the starting policy, then its policies; 05b: reward models (its grid and the gamma_bt sweep)
    s5 = prof.mmpo
    q5, held5 = s5.quality, min(s5.test_pairs, test["high"] + test["low"])
    seeds5 = s5.policy_changes().get("seeds", p.seeds)
    nb05 = evaluate(p.n_eval_prompts) + forward_s(held5, tokens) + sum(
        policy(q5, job["method"], pairs_measured=held5, checkpoints=s5.checkpoints or 0)
        for job in s5.policy_jobs(seeds5))
    # 05c: the starting policy (no held-out pairs), then DPO and MMPO at the other betas
    nb05c = evaluate(p.n_eval_prompts) + sum(policy(q5, job["method"], checkpoints=s5.checkpoints or 0)
                                             for job in s5.beta_jobs(seeds5))
    n_rm = len(s5.reward_model_jobs(seeds5)) + len(s5.sweep_jobs(seeds5, d.label_scale))
    nb05b = n_rm * (train_s(n(q5), d.rm_epochs, gen_tokens, reference=False) + forward_s(held5, gen_tokens))
    minutes = {"01_imdb_preferences": nb01, "02_madpo_imdb": nb02, "02b_madpo_sensitivity": nb02b,
               "03_gamma_po_noise": nb03, "03b_gamma_po_beta_sweep": nb03b, "04_amapo_ranking": nb04,
               "04b_amapo_beta_sweep": nb04b, "04c_amapo_long_training": nb04c, "05_mmpo_margins": nb05,
               "05b_mmpo_reward_models": nb05b, "05c_mmpo_beta_sweep": nb05c}
    return {k: round(v / 60, 1) for k, v in minutes.items()}


def markdown(profiles_shown=("gpu", "paper")) -> str:
    """The README's table: minutes on a T4 a notebook, one column a profile (tests/test_budget.py checks it)."""
    est = {p: estimate(p) for p in profiles_shown}
    lines = ["| notebook | " + " | ".join(f"`{p}` on a T4" for p in profiles_shown) + " |",
             "| --- | " + " | ".join("---" for _ in profiles_shown) + " |"]
    for nb in est[profiles_shown[0]]:
        lines.append(f"| `{nb}` | " + " | ".join(_fmt(est[p][nb]) for p in profiles_shown) + " |")
    return "\n".join(lines)


def _fmt(minutes: float) -> str:
    return f"{minutes:.0f} min" if minutes < 120 else f"{minutes / 60:.1f} h"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", choices=("gpu", "paper"), help="one profile's minutes (default: the README table)")
    a = ap.parse_args(argv)
    if a.profile is None:
        print(markdown())
        return
    for name, minutes in estimate(a.profile).items():
        print(f"{name:22s} {minutes:7.1f} min on a T4 ({a.profile})")


if __name__ == "__main__":
    main()
