"""Is a predicted preference probability right as often as it claims? Reliability bins and ECE.

A reward model (or a policy's implicit reward) predicts P(chosen beats rejected) = sigma(margin). It is
calibrated when, among pairs it gives 0.7, the chosen response wins 70 % of the time. With pairs the
orientation is arbitrary, so every pair is counted both ways (p for "chosen wins", 1 - p for
"rejected wins"): the diagram is then symmetric about 0.5 and no orientation is favoured.
"""

from __future__ import annotations

import numpy as np


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
