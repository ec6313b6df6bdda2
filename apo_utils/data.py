"""Preference data: pairs from scored samples, quality levels, label-flip noise, and validation.

A preference dataset has string columns `prompt`, `chosen`, `rejected` and, optionally, a numeric
`margin` (how much better `chosen` is, in the scorer's units). Validation reads every row and
reports the first bad one by column and index, so a malformed file fails before training starts.
"""

from __future__ import annotations

import json
import math
import numbers
from pathlib import Path

import numpy as np

from .storage import atomic_write_bytes

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
    of the rows a lower one flips, so noise levels are nested. On a flipped row every column that
    describes the label follows it: `margin` and `true_margin` are negated, `chosen_score` and
    `rejected_score` swapped, `label_correct` inverted.
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
            for col in ("margin", "true_margin"):
                if col in row:
                    row[col] = -row[col]
            if "chosen_score" in row and "rejected_score" in row:
                row["chosen_score"], row["rejected_score"] = row["rejected_score"], row["chosen_score"]
            if "label_correct" in row:
                row["label_correct"] = not row["label_correct"]
        return dict(row, flipped=bool(flipped[idx]))

    if isinstance(dataset, list):
        return [swap(r, i) for i, r in enumerate(dataset)]
    return dataset.map(swap, with_indices=True, desc=f"flipping {rate:.0%} of labels")


# --------------------------------------------------------------------------- pairs from scored samples

QUALITIES = ("high", "low")


def make_pairs(prompts: list[str], samples: list[list[str]], scores: list[list[float]], quality: str = "high",
               label_scale: float = 4.0, seed: int = 0) -> list[dict]:
    """Preference pairs from scored samples, labelled by a noisy Bradley-Terry annotator.

    quality='high': the first two samples of each prompt (two on-policy samples, subtle margins).
    quality='low':  the best and the worst of the prompt's samples by true score (large, easy margins;
                    the MADPO paper pairs a policy sample with the human review text instead).
    The label comes from Gumbel noise on the scaled true scores, y_a > y_b iff k s_a + G_a >= k s_b + G_b,
    i.e. P(a preferred) = sigma(k (s_a - s_b)): close pairs are often mislabelled, clear ones rarely.
    Each row keeps the true scores, `true_margin` = s_chosen - s_rejected (negative when the label is
    wrong) and `label_correct`.
    """
    if quality not in QUALITIES:
        raise ValueError(f"unknown quality {quality!r}; use one of {QUALITIES}")
    if not (label_scale > 0):
        raise ValueError(f"label_scale must be > 0, got {label_scale}")
    if not (len(prompts) == len(samples) == len(scores)):
        raise ValueError("prompts, samples and scores must have one entry per prompt")
    rng = np.random.default_rng(seed)
    rows = []
    for i, (p, ys, ss) in enumerate(zip(prompts, samples, scores)):
        if len(ys) < 2 or len(ys) != len(ss):
            raise ValueError(f"prompt {i} needs at least two samples with one score each")
        if quality == "high":
            a, b = 0, 1
        else:
            order = np.argsort(ss, kind="stable")
            a, b = int(order[-1]), int(order[0])
        g = rng.gumbel(size=2)
        a_wins = label_scale * ss[a] + g[0] >= label_scale * ss[b] + g[1]
        c, r = (a, b) if a_wins else (b, a)
        rows.append({
            "prompt": p, "chosen": ys[c], "rejected": ys[r],
            "chosen_score": float(ss[c]), "rejected_score": float(ss[r]),
            "true_margin": float(ss[c] - ss[r]), "label_correct": bool(ss[c] >= ss[r]),
        })
    return rows


def split_pairs(rows: list[dict], test_fraction: float, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """Train/test split by row (one row per prompt here), deterministic given the seed."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    order = np.random.default_rng(seed).permutation(len(rows))
    n_test = max(1, int(round(test_fraction * len(rows))))
    test = sorted(order[:n_test].tolist())
    train = sorted(order[n_test:].tolist())
    return [rows[i] for i in train], [rows[i] for i in test]


def save_pairs(rows: list[dict], path) -> Path:
    """JSON Lines, written atomically; validated first so nothing malformed is ever saved."""
    validate_preferences(rows)
    text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows)
    return atomic_write_bytes(path, text.encode())


def load_pairs(path, require_margin: bool = False) -> list[dict]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: run notebooks/01_imdb_preferences.ipynb with the same "
                                f"profile first (python -m apo_utils.reproduce --only 01 --profile ...)")
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}, line {n}: not a JSON object ({e.msg}); the file is damaged - delete it and "
                             f"re-run the notebook that wrote it") from None
    try:
        validate_preferences(rows, require_margin=require_margin)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    return rows


def pairs_path(output_dir, profile: str, quality: str, split: str) -> Path:
    """Where notebook 01 saves, and the study notebooks read, one split of one quality level."""
    if quality not in QUALITIES or split not in ("train", "test"):
        raise ValueError(f"quality must be one of {QUALITIES} and split 'train' or 'test'")
    return Path(output_dir) / "01_imdb_preferences" / profile / f"pairs_{quality}_{split}.jsonl"
