"""Preference data: pairs from scored samples, quality levels, label-flip noise, and validation.

A preference dataset has string columns `prompt`, `chosen`, `rejected` and, optionally, a numeric
`margin` (how much better `chosen` is, in the scorer's units). Validation reads every row and
reports the first bad one by column and index, so a malformed file fails before training starts.
"""

from __future__ import annotations

import json
import logging
import math
import numbers
from pathlib import Path

import numpy as np

from .storage import atomic_write_bytes

REQUIRED = ("prompt", "chosen", "rejected")
log = logging.getLogger(__name__)


def _columns(dataset) -> list[str]:
    names = getattr(dataset, "column_names", None)
    if isinstance(names, dict):  # DatasetDict
        return sorted(set().union(*names.values()))
    return list(names or [])


def _rows_and_columns(dataset, name: str):
    if hasattr(dataset, "column_names") and hasattr(dataset, "__getitem__"):  # datasets.Dataset
        cols = list(dataset.column_names)
        return cols, {c: dataset[c] for c in cols}
    if isinstance(dataset, list):
        if not dataset:
            raise ValueError(f"{name} is empty: at least one preference pair is needed")
        if not all(isinstance(r, dict) for r in dataset):
            raise ValueError(f"{name} is a list, so it must hold one dict per row")
        cols = list(dataset[0].keys())
        for i, r in enumerate(dataset):
            if set(r) != set(cols):
                raise ValueError(f"{name}: row {i} has columns {sorted(r)}, row 0 has {sorted(cols)}")
        return cols, {c: [r[c] for r in dataset] for c in cols}
    raise ValueError(f"{name}: expected a datasets.Dataset or a list of dicts, got {type(dataset).__name__}")


def _is_conversation(v) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(m, dict) and "role" in m and "content" in m for m in v)


def _check_text_column(c: str, values: list, where: str):
    """Every row a non-empty string, or every row a conversation (a list of {'role', 'content'} messages), as TRL
    reads a column by its first row: a None or a number anywhere, row 0 included, is named here, not inside TRL."""
    conversational = _is_conversation(values[0]) if values else False
    for i, v in enumerate(values):
        if conversational:
            if not _is_conversation(v):
                raise ValueError(f"{where}column {c!r} row {i} is {type(v).__name__} ({v!r:.80}), expected a list of "
                                 f"{{'role', 'content'}} messages like row 0")
        elif not isinstance(v, str):
            raise ValueError(f"{where}column {c!r} row {i} is {type(v).__name__} ({v!r:.80}), expected a string")
        elif c != "prompt" and not v.strip():
            raise ValueError(f"{where}column {c!r} row {i} is an empty string")


def _check_margin_column(values: list, where: str):
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            raise ValueError(f"{where}column 'margin' row {i} is {type(v).__name__} ({v!r:.80}), expected a number")
        if not math.isfinite(v):
            raise ValueError(f"{where}column 'margin' row {i} is {v}, expected a finite number")


def _check_pair_id_column(values: list, where: str):
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) or v != int(v):
            raise ValueError(f"{where}column 'pair_id' row {i} is {type(v).__name__} ({v!r:.80}), expected a whole number")


def validate_preferences(dataset, require_margin: bool = False, *, check_margin: bool = True,
                         require_prompt: bool = True, where: str | None = None):
    """Raise ValueError naming the column and first bad row; return the dataset unchanged if it is sound.

    The one check of a preference dataset, used by `load_pairs`, `save_pairs` and `ApoTrainer` (which passes
    `where`, e.g. 'train_dataset', to start every message). Columns `chosen`/`rejected` (and `prompt` unless
    require_prompt=False, as TRL can take the prompt from a shared prefix) hold non-empty strings or
    conversations; already tokenised `chosen_ids`/`rejected_ids` are TRL's to check. `margin`, when present
    and check_margin, holds finite numbers; `pair_id`, when present, whole numbers. Pairs with chosen == rejected carry no preference signal: they
    are counted in a warning, not refused.
    """
    prefix, name = (f"{where}: ", where) if where else ("", "the preference dataset")
    cols, data = _rows_and_columns(dataset, name)
    if {"chosen_ids", "rejected_ids"} <= set(cols):
        return dataset
    for c in REQUIRED if require_prompt else REQUIRED[1:]:
        if c not in cols:
            raise ValueError(f"{prefix}missing column {c!r}; a preference dataset needs 'prompt', 'chosen' and "
                             f"'rejected', this one has {sorted(cols)}")
    n = len(data["chosen"])
    if n == 0:
        raise ValueError(f"{name} is empty: at least one preference pair is needed")
    for c in REQUIRED:
        if c in cols:
            _check_text_column(c, data[c], prefix)
    if "margin" in cols and (check_margin or require_margin):
        _check_margin_column(data["margin"], prefix)
    elif require_margin and "margin" not in cols:
        raise ValueError(f"{prefix}missing column 'margin': this loss needs a numeric 'margin' column; the "
                         f"dataset has columns {sorted(cols)}")
    if "pair_id" in cols:
        _check_pair_id_column(data["pair_id"], prefix)
    same = [i for i, (a, b) in enumerate(zip(data["chosen"], data["rejected"])) if a == b]
    if same:
        rows = ", ".join(map(str, same[:5])) + (", ..." if len(same) > 5 else "")
        log.warning("%s%d of %d pairs have chosen == rejected (rows %s): they carry no preference signal and "
                    "only dilute the batch", prefix, len(same), n, rows)
    return dataset


def report_truncation(before: dict, after: dict, max_length: int | None, mode: str = "keep_start"):
    """Say what TRL's `max_length` did to tokenised preference data, which it does silently.

    before: rows per split before TRL saw them; after: the tokenised splits (`prompt_ids`, `chosen_ids`,
    `rejected_ids`). Rows are dropped when the prompt alone fills max_length: all of them is an error here,
    not torch's `num_samples=0` later; some is a warning. Pairs longer than max_length are cut: a warning says
    how many and to how few response tokens."""
    if max_length is None:
        return
    for split, n_before in before.items():
        ds = after.get(split)
        if ds is None or "prompt_ids" not in ds.column_names:
            continue
        if len(ds) == 0:
            raise ValueError(f"{split}: all {n_before} rows have a prompt of at least max_length={max_length} "
                             f"tokens, so TRL dropped every one and nothing is left to train on: raise "
                             f"max_length (DPOConfig) or shorten the prompts")
        if n_before > len(ds):
            log.warning("%s: %d of %d rows dropped because the prompt alone fills max_length=%d tokens; raise "
                        "max_length or shorten those prompts", split, n_before - len(ds), n_before, max_length)
        cut = [(lp, max(len(c), len(r))) for lp, c, r in
               zip(map(len, ds["prompt_ids"]), ds["chosen_ids"], ds["rejected_ids"]) if lp + max(len(c), len(r)) > max_length]
        if cut:
            what = (f"responses cut to as few as {min(max_length - lp for lp, _ in cut)} tokens"
                    if mode == "keep_start" else "prompts cut from their start")
            log.warning("%s: %d of %d pairs are longer than max_length=%d tokens (prompt + response, up to %d): "
                        "%s. Raise max_length if that matters", split, len(cut), len(ds), max_length,
                        max(a + b for a, b in cut), what)


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


def _pair_indices(ss, quality: str, every: bool, extremes: int | None = None,
                  high_samples: int | None = None) -> list[tuple[int, int]]:
    """Which samples of one prompt are paired. One pair a prompt, or (every=True) all the pairs of that kind."""
    k = len(ss)
    order = [int(j) for j in np.argsort(ss, kind="stable")]  # worst first
    if quality == "high":
        h = k if high_samples is None else min(k, high_samples)
        return [(a, b) for a in range(h) for b in range(a + 1, h)] if every else [(0, 1)]
    if not every:
        return [(order[-1], order[0])]
    m = k // 2 if extremes is None else min(k // 2, extremes)
    top, bottom = order[k - m:], order[:m]
    return [(a, b) for a in reversed(top) for b in bottom]


def make_pairs(prompts: list[str], samples: list[list[str]], scores: list[list[float]], quality: str = "high",
               label_scale: float = 4.0, seed: int = 0, every_pair: bool = False, *, extremes: int | None = None,
               high_samples: int | None = None) -> list[dict]:
    """Preference pairs from scored samples, labelled by a noisy Bradley-Terry annotator.

    quality='high': two on-policy samples of the prompt (subtle margins): the first two, or with
                    every_pair=True all h(h-1)/2 pairs of its first h = `high_samples` samples (all k if None).
    quality='low':  large, easy margins: the best against the worst of the prompt's samples by true score, or
                    with every_pair=True each of the m best against each of the m worst (m = `extremes`, at
                    most and by default k/2: m^2 pairs). The MADPO paper pairs the better policy sample with
                    the human review text instead; offline there is none, so the margins come from the spread
                    of the policy's own samples: more samples a prompt and a small m give larger ones.
    Rows carry `prompt_id` (the prompt's index), so a split can keep all pairs of a prompt on one side.
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
    for name, v in (("extremes", extremes), ("high_samples", high_samples)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < (1 if name == "extremes" else 2)):
            raise ValueError(f"{name} must be a whole number >= {1 if name == 'extremes' else 2} or None, got {v!r}")
    rng = np.random.default_rng(seed)
    rows = []
    for i, (p, ys, ss) in enumerate(zip(prompts, samples, scores)):
        if len(ys) < 2 or len(ys) != len(ss):
            raise ValueError(f"prompt {i} needs at least two samples with one score each")
        bad = [j for j, v in enumerate(ss) if isinstance(v, bool) or not isinstance(v, numbers.Real)
               or not math.isfinite(v)]
        if bad:  # a NaN score would label the pair by the noise alone, silently
            raise ValueError(f"prompt {i}, sample {bad[0]}: score {ss[bad[0]]!r} is not a finite number")
        for a, b in _pair_indices(ss, quality, every_pair, extremes, high_samples):
            g = rng.gumbel(size=2)
            a_wins = label_scale * ss[a] + g[0] >= label_scale * ss[b] + g[1]
            c, r = (a, b) if a_wins else (b, a)
            rows.append({
                "prompt": p, "prompt_id": i, "chosen": ys[c], "rejected": ys[r],
                "chosen_score": float(ss[c]), "rejected_score": float(ss[r]),
                "true_margin": float(ss[c] - ss[r]), "label_correct": bool(ss[c] >= ss[r]),
            })
    return rows


def split_pairs(rows: list[dict], test_fraction: float, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """Train/test split by prompt: all pairs of one prompt land on the same side, so no held-out pair shares a
    prompt (or a response) with a training pair. `test_fraction` of the prompts are held out; deterministic
    given the seed. With one pair a prompt this is a split by row."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    groups: dict = {}
    for i, r in enumerate(rows):
        groups.setdefault(r.get("prompt_id", r["prompt"]), []).append(i)
    keys = list(groups)
    if len(keys) < 2:
        raise ValueError(f"cannot split {len(keys)} prompt(s) into a train and a test part: at least 2 are needed")
    order = np.random.default_rng(seed).permutation(len(keys))
    n_test = min(len(keys) - 1, max(1, int(round(test_fraction * len(keys)))))
    test = sorted(i for k in order[:n_test] for i in groups[keys[k]])
    train = sorted(i for k in order[n_test:] for i in groups[keys[k]])
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
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}, line {n}: not a JSON object ({e.msg}); the file is damaged - delete it and "
                             f"re-run the notebook that wrote it") from None
        if not isinstance(row, dict):
            raise ValueError(f"{path}, line {n}: a JSON {type(row).__name__}, not an object with one pair's columns")
        rows.append(row)
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
