"""Is a predicted preference probability right as often as it claims? Reliability bins and ECE.

A reward model (or a policy's implicit reward) predicts P(chosen beats rejected) = sigma(margin). It is
calibrated when, among pairs it gives 0.7, the chosen response wins 70 % of the time. With pairs the
orientation is arbitrary, so every pair is counted both ways (p for "chosen wins", 1 - p for
"rejected wins"): the diagram is then symmetric about 0.5 and no orientation is favoured.

An ECE belongs to a set of pairs, not to a pair, so two models' ECEs are compared by recomputing both on resampled
sets (`ece_difference`, `paired_ece`), not by averaging per-pair differences as `stats` does for other metrics.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from apo_utils.stats import crossed_draws, seed_interval


def _checked(p, y) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(p, dtype=float).reshape(-1)
    y = np.asarray(y, dtype=float).reshape(-1)
    if p.shape != y.shape:
        raise ValueError(f"probabilities and outcomes differ in length: {p.size} vs {y.size}")
    if p.size == 0:
        raise ValueError("no pairs to calibrate")
    if not np.all(np.isfinite(p)) or np.any((p < 0) | (p > 1)):
        raise ValueError("probabilities must be finite numbers in [0, 1]")
    return p, y


def symmetrised(p, y) -> tuple[np.ndarray, np.ndarray]:
    """Each pair both ways: (p, y) and (1 - p, 1 - y)."""
    p, y = _checked(p, y)
    return np.concatenate([p, 1 - p]), np.concatenate([y, 1 - y])


def reliability(p, y, n_bins: int = 10) -> list[dict]:
    """Equal-width bins of predicted probability: mean prediction, observed frequency, count (empty bins left out)."""
    p, y = _checked(p, y)
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    idx = np.minimum((p * n_bins).astype(int), n_bins - 1)
    return [{"lo": b / n_bins, "hi": (b + 1) / n_bins, "confidence": float(p[idx == b].mean()),
             "frequency": float(y[idx == b].mean()), "count": int((idx == b).sum())}
            for b in range(n_bins) if (idx == b).any()]


def expected_calibration_error(p, y, n_bins: int = 10) -> float:
    """ECE: the count-weighted mean |observed frequency - mean prediction| over the reliability bins."""
    bins = reliability(p, y, n_bins)
    n = sum(b["count"] for b in bins)
    return float(sum(b["count"] * abs(b["frequency"] - b["confidence"]) for b in bins) / n)


def _bin_residuals(p, n_bins: int) -> np.ndarray:
    """(pairs, bins): what each labelled pair adds to each bin's sum of (outcome - prediction), counted both ways as
    the ECE counts it, (p, 1) and (1 - p, 0). With pair weights w, the ECE is sum_b |w @ r[:, b]| / (2 sum w): a
    resampled set's ECE without rebuilding its bins."""
    p, _ = _checked(p, np.ones_like(np.asarray(p, dtype=float)))
    r = np.zeros((p.size, n_bins))
    rows, q = np.arange(p.size), 1 - p
    np.add.at(r, (rows, np.minimum((p * n_bins).astype(int), n_bins - 1)), q)  # "chosen wins" came true: 1 - p
    np.add.at(r, (rows, np.minimum((q * n_bins).astype(int), n_bins - 1)), -q)  # "rejected wins" did not: 0 - (1 - p)
    return r


def ece_difference(p_method, p_baseline, groups=None, n_bins: int = 10, n_boot: int = 4000, seed: int = 0) -> dict:
    """ECE of one kind of model minus another's, both measured on the same labelled pairs for each training seed.

    p_method, p_baseline: (seeds, pairs), each model's P(chosen wins) for the pairs as labelled. The difference is
    the mean over seeds of each seed's ECE difference; its 95 % interval resamples seeds and pair groups (`groups`,
    e.g. each pair's prompt) independently, as `stats.seeds_by_units_bootstrap` does, recomputing both ECEs on every
    drawn set; beside it the t interval over the per-seed differences (`stats.seed_interval`).
    Returns {'diff', 'ci95', 'half_width', 'n_seeds', 'n_units', 'n_groups', 'seed_ci95', 'seed_half_width'}."""
    a, b = (np.asarray(x, dtype=float) for x in (p_method, p_baseline))
    if a.ndim != 2 or a.shape != b.shape or 0 in a.shape:
        raise ValueError(f"p_method and p_baseline must be (seeds, pairs) of one non-empty shape, got {a.shape} "
                         f"and {b.shape}")
    g = np.arange(a.shape[1]) if groups is None else np.asarray(groups)
    if g.shape != (a.shape[1],):
        raise ValueError(f"groups has {g.size} entries for {a.shape[1]} pairs")
    per_seed = np.array([expected_calibration_error(*symmetrised(x, np.ones_like(x)), n_bins)
                         - expected_calibration_error(*symmetrised(y, np.ones_like(y)), n_bins) for x, y in zip(a, b)])
    _, inv = np.unique(g, return_inverse=True)
    n_groups = int(inv.max()) + 1
    s_pick, g_pick = crossed_draws(a.shape[0], n_groups, n_boot, seed)
    weights = np.stack([np.bincount(row, minlength=n_groups) for row in g_pick])[:, inv].astype(float)  # (boot, pairs)

    def ece(p):  # (boot, seeds): every seed's ECE on every drawn set
        r = np.stack([_bin_residuals(row, n_bins) for row in p])  # (seeds, pairs, bins)
        return np.abs(np.einsum("kn,snb->ksb", weights, r)).sum(-1) / (2 * weights.sum(1))[:, None]

    boots = np.take_along_axis(ece(a) - ece(b), s_pick, 1).mean(1)
    lo, hi = np.percentile(boots, [2.5, 97.5])
    seeds = seed_interval(per_seed)
    return {"diff": float(per_seed.mean()), "ci95": [float(lo), float(hi)], "half_width": float((hi - lo) / 2),
            "n_seeds": int(a.shape[0]), "n_units": int(a.shape[1]), "n_groups": n_groups,
            "seed_ci95": seeds["ci95"], "seed_half_width": seeds["half_width"]}


def paired_ece(runs: pd.DataFrame, setting: str, method: str, baseline: str, groups=None,
               matters: float | None = None, n_bins: int = 10) -> dict:
    """`ece_difference` of two methods' models in one setting of a frame of runs (a row a seed and method, column
    'p': the predictions on the held-out pairs), on the seeds both have: a comparison in the shape
    `stats.paired_comparison` gives, metric 'test_ece'."""
    sub = runs[runs.setting == setting]
    a, b = (sub[sub.method == m].set_index("seed")["p"] for m in (method, baseline))
    seeds = sorted(set(a.index) & set(b.index))
    if not seeds:
        raise ValueError(f"no seed has both {method!r} and {baseline!r} in setting {setting!r}")
    diff = ece_difference([a[s] for s in seeds], [b[s] for s in seeds], groups, n_bins)
    return {"setting": setting, "metric": "test_ece", "method": method, "baseline": baseline, **diff,
            **({"matters": matters} if matters is not None else {})}


def sigmoid(x) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    return np.exp(-np.logaddexp(0.0, -x))


def against_truth(margins, true_sign, p_true, metric_prefix: str = "test") -> dict:
    """How a model's margins d (P(chosen wins) = sigma(d)) meet the truth on held-out pairs: per pair, whether it
    ranks them as the truth does and its distance to the true preference probability (for paired comparisons:
    '<prefix>_truth_correct', '<prefix>_prob_error_units'), their means, and the ECE against the labels (each pair
    both ways). 'p' keeps the predicted probabilities for a reliability diagram."""
    d = np.asarray(margins, dtype=float)
    p = sigmoid(d)
    right = (np.sign(d) == np.asarray(true_sign)).astype(float)
    error = np.abs(p - np.asarray(p_true, dtype=float))
    ps, ys = symmetrised(p, np.ones_like(p))
    return {f"{metric_prefix}_truth_correct": right.tolist(), f"{metric_prefix}_prob_error_units": error.tolist(),
            "ece": expected_calibration_error(ps, ys), "truth_accuracy": float(right.mean()),
            "prob_error": float(error.mean()), "p": p.tolist()}
