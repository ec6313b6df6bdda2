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
