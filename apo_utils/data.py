"""Preference data: validation of any dataset a user brings, and deterministic label-flip noise.

A preference dataset has string columns `prompt`, `chosen`, `rejected` and, optionally, a numeric
`margin` (how much better `chosen` is, in the scorer's units). Validation reads every row and
reports the first bad one by column and index, so a malformed file fails before training starts.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

REQUIRED = ("prompt", "chosen", "rejected")


def _rows_and_columns(dataset):
    if hasattr(dataset, "column_names") and hasattr(dataset, "__getitem__"):  # datasets.Dataset
        cols = list(dataset.column_names)
        return cols, {c: dataset[c] for c in cols}
    if isinstance(dataset, list):
        if not dataset:
            raise ValueError("the preference dataset is empty")
        if not all(isinstance(r, dict) for r in dataset):
            raise ValueError("a preference dataset given as a list must hold one dict per row")
        cols = list(dataset[0].keys())
        for i, r in enumerate(dataset):
            if set(r) != set(cols):
                raise ValueError(f"row {i} has columns {sorted(r)}, row 0 has {sorted(cols)}")
        return cols, {c: [r[c] for r in dataset] for c in cols}
    raise ValueError(f"expected a datasets.Dataset or a list of dicts, got {type(dataset).__name__}")


def validate_preferences(dataset, require_margin: bool = False):
    """Raise ValueError naming the column and first bad row; return the dataset unchanged if it is sound."""
    cols, data = _rows_and_columns(dataset)
    for c in REQUIRED:
        if c not in cols:
            raise ValueError(f"missing column {c!r}; the dataset has columns {sorted(cols)}")
    n = len(data["prompt"])
    if n == 0:
        raise ValueError("the preference dataset is empty")
    for c in REQUIRED:
        for i, v in enumerate(data[c]):
            if not isinstance(v, str):
                raise ValueError(f"column {c!r}: row {i} is {type(v).__name__} ({v!r}), expected a string")
            if c != "prompt" and not v.strip():
                raise ValueError(f"column {c!r}: row {i} is an empty string")
    if "margin" in cols:
        for i, v in enumerate(data["margin"]):
            if isinstance(v, bool) or not isinstance(v, numbers.Real):
                raise ValueError(f"column 'margin': row {i} is {type(v).__name__} ({v!r}), expected a number")
            if not math.isfinite(v):
                raise ValueError(f"column 'margin': row {i} is {v}, expected a finite number")
    elif require_margin:
        raise ValueError(f"missing column 'margin' (needed by this loss); the dataset has columns {sorted(cols)}")
    return dataset


def flip_labels(dataset, rate: float, seed: int = 0):
    """Swap chosen and rejected in exactly round(rate * n) rows chosen by `seed`; add a `flipped` column.

    The same (rate, seed) flips the same rows, and a higher rate with the same seed flips a superset
    of the rows a lower one flips, so noise levels are nested. A `margin` column is negated on flipped
    rows: it stays the margin of the row's (now wrong) label.
    """
    if isinstance(rate, bool) or not isinstance(rate, numbers.Real) or not (0.0 <= rate < 0.5):
        raise ValueError(f"noise rate must lie in [0, 0.5), got {rate!r}")
    validate_preferences(dataset)
    n = len(dataset)
    order = np.random.default_rng(seed).permutation(n)
    flipped = np.zeros(n, dtype=bool)
    flipped[order[: int(round(rate * n))]] = True

    def swap(row, idx):
        if flipped[idx]:
            row = dict(row, chosen=row["rejected"], rejected=row["chosen"])
            if "margin" in row:
                row["margin"] = -row["margin"]
        return dict(row, flipped=bool(flipped[idx]))

    if isinstance(dataset, list):
        return [swap(r, i) for i, r in enumerate(dataset)]
    return dataset.map(swap, with_indices=True, desc=f"flipping {rate:.0%} of labels")
