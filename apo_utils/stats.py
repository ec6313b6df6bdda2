"""Paired comparisons with a confidence interval: the one way this kit reports a difference between methods."""

from __future__ import annotations

import math

import numpy as np


def paired_bootstrap(a, b, groups=None, n_boot: int = 4000, seed: int = 0) -> dict:
    """Mean of the paired differences a_i - b_i and its 95 % percentile-bootstrap interval.

    `groups` (e.g. the prompt of each pair): whole groups are resampled, since pairs of one prompt are not
    independent. Returns {'diff', 'ci95': [lo, hi], 'n', 'n_groups'}."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if d.ndim != 1 or d.size == 0:
        raise ValueError(f"a and b must be 1-D and of one non-zero length, got shapes {np.shape(a)} and {np.shape(b)}")
    g = np.arange(d.size) if groups is None else np.asarray(groups)
    if g.shape != d.shape:
        raise ValueError(f"groups has {g.size} entries for {d.size} pairs")
    keys, inv = np.unique(g, return_inverse=True)
    sums, counts = np.bincount(inv, weights=d), np.bincount(inv)
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, keys.size, size=(n_boot, keys.size))
    boots = sums[pick].sum(1) / counts[pick].sum(1)
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return {"diff": float(d.mean()), "ci95": [float(lo), float(hi)], "n": int(d.size), "n_groups": int(keys.size)}


def mean_spread(values) -> dict:
    """Mean, sample standard deviation and standard error over seeds (n = 1: spread 0, said by n)."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=float)
    if v.size == 0:
        return {"mean": float("nan"), "sd": float("nan"), "se": float("nan"), "n": 0}
    sd = float(v.std(ddof=1)) if v.size > 1 else 0.0
    return {"mean": float(v.mean()), "sd": sd, "se": sd / math.sqrt(v.size), "n": int(v.size)}


def seeds_by_units_bootstrap(diff, groups=None, n_boot: int = 4000, seed: int = 0) -> dict:
    """Mean of a paired difference measured for every seed on the same units, with a 95 % interval that counts
    both sources of chance: which seeds were run and which prompts (or pairs) were measured.

    diff: (n_seeds, n_units), e.g. method minus baseline on each held-out prompt, for each training seed.
    Seeds and unit groups (`groups`: e.g. the prompt of each pair; default every unit its own group) are
    resampled independently, the crossed-factor bootstrap (Owen 2007, "The pigeonhole bootstrap"); with 3 seeds
    the seed part is coarse, so the interval is honest about a small number of training runs rather than exact.
    Returns {'diff', 'ci95', 'half_width', 'n_seeds', 'n_units', 'n_groups'}."""
    d = np.asarray(diff, dtype=float)
    if d.ndim != 2 or 0 in d.shape:
        raise ValueError(f"diff must be (seeds, units) with both non-zero, got shape {d.shape}")
    if not np.isfinite(d).all():
        raise ValueError(f"diff has {int((~np.isfinite(d)).sum())} non-finite values")
    g = np.arange(d.shape[1]) if groups is None else np.asarray(groups)
    if g.shape != (d.shape[1],):
        raise ValueError(f"groups has {g.size} entries for {d.shape[1]} units")
    _, inv = np.unique(g, return_inverse=True)
    n_groups = int(inv.max()) + 1
    sums = np.stack([np.bincount(inv, weights=row, minlength=n_groups) for row in d])  # (seeds, groups)
    counts = np.bincount(inv, minlength=n_groups)
    rng = np.random.default_rng(seed)
    s_pick = rng.integers(0, d.shape[0], size=(n_boot, d.shape[0]))
    g_pick = rng.integers(0, n_groups, size=(n_boot, n_groups))
    seed_sums = sums[s_pick].sum(1)  # (boot, groups): the chosen seeds' totals per group
    boots = np.take_along_axis(seed_sums, g_pick, 1).sum(1) / (d.shape[0] * counts[g_pick].sum(1))
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return {"diff": float(d.mean()), "ci95": [float(lo), float(hi)], "half_width": float((hi - lo) / 2),
            "n_seeds": int(d.shape[0]), "n_units": int(d.shape[1]), "n_groups": n_groups}


# Student's t 0.975 quantiles by degrees of freedom (standard tables); beyond 30 the normal's 1.96 is close enough.
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
         15: 2.131, 20: 2.086, 30: 2.042}


def mean_ci95(values) -> tuple[float, float]:
    """Mean over seeds and the half-width of its 95 % t interval (0 for a single seed): for drawing one method's
    spread; a comparison between methods uses the paired functions above."""
    s = mean_spread(values)
    if s["n"] < 2:
        return s["mean"], 0.0
    df = s["n"] - 1
    t = 1.96 if df > 30 else _T975[max(k for k in _T975 if k <= df)]  # the smaller df: a wider interval
    return s["mean"], t * s["se"]


def verdict(c: dict, matters: float = 0.03) -> str:
    """What a paired 95 % interval says: higher/lower when it excludes 0; 'no difference' only when it lies
    within +-`matters` (a difference too small to matter); otherwise 'not resolved'."""
    lo, hi = c["ci95"]
    if lo > 0 or hi < 0:
        return "higher" if lo > 0 else "lower"
    return f"no difference (within ±{matters:g})" if -matters <= lo and hi <= matters else "not resolved"
