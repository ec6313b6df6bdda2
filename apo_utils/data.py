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
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .storage import atomic_write_bytes

REQUIRED = ("prompt", "chosen", "rejected")
FLOAT32_MAX = float(np.finfo(np.float32).max)  # 3.4e38: a larger margin is inf once the loss reads it
LARGE_MARGIN = 1e3  # a median |margin| above this saturates every sigmoid a margin-reading loss puts it in
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Rows:
    """How messages name rows: by index ('row 4'), or for rows read from a file by the file's line ('line 7'),
    which is what the user sees in an editor. `prefix` ('train_dataset: ', a file's path) starts each message."""

    prefix: str = ""
    lines: tuple[int, ...] | None = None

    def name(self, i: int) -> str:
        return f"line {self.lines[i]}" if self.lines else f"row {i}"

    def names(self, indices: list[int], most: int = 5) -> str:
        shown = ", ".join(str(self.lines[i] if self.lines else i) for i in indices[:most])
        return f"{'lines' if self.lines else 'rows'} {shown}{', ...' if len(indices) > most else ''}"


def _columns(dataset) -> list[str]:
    names = getattr(dataset, "column_names", None)
    if isinstance(names, dict):  # DatasetDict
        return sorted(set().union(*names.values()))
    return list(names or [])


def _rows_and_columns(dataset, name: str, rows: _Rows):
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
                raise ValueError(f"{rows.prefix}{rows.name(i)} has columns {sorted(r)}, {rows.name(0)} has "
                                 f"{sorted(cols)}")
        return cols, {c: [r[c] for r in dataset] for c in cols}
    raise ValueError(f"{name}: expected a datasets.Dataset or a list of dicts, got {type(dataset).__name__}")


def _is_conversation(v) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(m, dict) and "role" in m and "content" in m for m in v)


def _check_utf8(c: str, i: int, value, rows: _Rows):
    """A lone surrogate (half of an emoji, from text cut by UTF-16 units) survives Python, JSON and saving, then
    kills training inside pyarrow with a UnicodeEncodeError that names no row: name it here."""
    texts = [value] if isinstance(value, str) else [m["content"] for m in value if isinstance(m["content"], str)]
    for text in texts:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as e:
            raise ValueError(f"{rows.prefix}column {c!r} {rows.name(i)} cannot be encoded as UTF-8: character "
                             f"{e.start} ({text[e.start:e.end]!r}) is a lone surrogate, half of an emoji (or of "
                             f"another character beyond U+FFFF), usually left by cutting text in the middle of one; "
                             f"remove it or restore the whole character") from None


def _check_text_column(c: str, values: list, rows: _Rows):
    """Every row a non-empty string, or every row a conversation (a list of {'role', 'content'} messages), as TRL
    reads a column by its first row: a None or a number anywhere, row 0 included, is named here, not inside TRL."""
    conversational = _is_conversation(values[0]) if values else False
    for i, v in enumerate(values):
        if conversational:
            if not _is_conversation(v):
                raise ValueError(f"{rows.prefix}column {c!r} {rows.name(i)} is {type(v).__name__} ({v!r:.80}), "
                                 f"expected a list of {{'role', 'content'}} messages like {rows.name(0)}")
        elif not isinstance(v, str):
            raise ValueError(f"{rows.prefix}column {c!r} {rows.name(i)} is {type(v).__name__} ({v!r:.80}), "
                             f"expected a string")
        elif c != "prompt" and not v.strip():
            raise ValueError(f"{rows.prefix}column {c!r} {rows.name(i)} is an empty string")
        _check_utf8(c, i, v, rows)


def _check_margin_column(values: list, rows: _Rows):
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            raise ValueError(f"{rows.prefix}column 'margin' {rows.name(i)} is {type(v).__name__} ({v!r:.80}), "
                             f"expected a number")
        if not math.isfinite(v):
            raise ValueError(f"{rows.prefix}column 'margin' {rows.name(i)} is {v}, expected a finite number")
        if abs(v) > FLOAT32_MAX:
            raise ValueError(f"{rows.prefix}column 'margin' {rows.name(i)} is {v:.3g}, which is inf in float32 "
                             f"(|margin| > 3.4e38), the precision the losses compute in: rescale the margins to a "
                             f"few units (e.g. divide them by their standard deviation)")


def _warn_degenerate_margins(values: list, rows: _Rows):
    """Margins a loss reads but cannot use: they train without a word, as another loss or towards the wrong side."""
    m = np.asarray(values, dtype=np.float64)
    if (m < 0).all():
        log.warning("%sall %d margins are negative: every pair says its rejected response is the better one, so "
                    "MMPO trains towards every rejected response and MADPO treats every pair as doubtful (a weight "
                    "of at most 1). Were the columns 'chosen' and 'rejected' (or the margin's sign) swapped?",
                    rows.prefix, len(m))
    median = float(np.median(np.abs(m)))
    if median > LARGE_MARGIN:
        log.warning("%smedian |margin| is %.3g: at that scale MADPO's weight is exactly 1 for every pair (MADPO "
                    "trains as plain DPO) and MMPO's soft target sigma(gamma_bt * margin) is exactly 0 or 1 (hard "
                    "labels, as DPO). Rescale the margins to a few units, e.g. divide them by their standard "
                    "deviation", rows.prefix, median)
    elif median == 0.0 and (m == 0).all():
        log.warning("%severy margin is 0: MADPO's weight is then 1 for every pair (MADPO trains as plain DPO) and "
                    "MMPO's soft target is 1/2 (no preference: it learns nothing); were the margins filled in?",
                    rows.prefix)


def _check_pair_id_column(values: list, rows: _Rows):
    first: dict[int, int] = {}
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) or v != int(v):
            raise ValueError(f"{rows.prefix}column 'pair_id' {rows.name(i)} is {type(v).__name__} ({v!r:.80}), "
                             f"expected a whole number")
        j = first.setdefault(int(v), i)
        if j != i:  # a per-pair log would mix two pairs under one id
            raise ValueError(f"{rows.prefix}column 'pair_id': {rows.name(j)} and {rows.name(i)} both have pair_id "
                             f"{int(v)}; every pair needs its own id (e.g. its row number)")


def _hashable(value):
    """A text as it is, a conversation as its JSON: a key for finding repeated rows and prompts."""
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)


def _warn_identical_rows(data: dict, rows: _Rows, n: int):
    """A repeated row counts twice in training, and on both sides of a split it leaks the test set."""
    columns = [c for c in REQUIRED if c in data]
    first, repeats = {}, []
    for i, key in enumerate(zip(*(map(_hashable, data[c]) for c in columns))):
        j = first.setdefault(key, i)
        if j != i:
            repeats.append((i, j))
    if repeats:
        i, j = repeats[0]
        log.warning("%s%d of %d rows repeat an earlier row (same %s): the first is %s, a copy of %s. A repeated "
                    "pair counts twice in training, and a copy held out leaks the test set: drop the repeats",
                    rows.prefix, len(repeats), n, ", ".join(columns[:-1]) + " and " + columns[-1], rows.name(i),
                    rows.name(j))


def validate_preferences(dataset, require_margin: bool = False, *, check_margin: bool = True,
                         require_prompt: bool = True, where: str | None = None, lines: list[int] | None = None):
    """Raise ValueError naming the column and first bad row; return the dataset unchanged if it is sound.

    The one check of a preference dataset, used by `load_pairs`, `save_pairs` and `ApoTrainer` (which passes
    `where`, e.g. 'train_dataset', to start every message). Columns `chosen`/`rejected` (and `prompt` unless
    require_prompt=False, as TRL can take the prompt from a shared prefix) hold non-empty strings or
    conversations that can be written as UTF-8; already tokenised `chosen_ids`/`rejected_ids` are TRL's to check.
    `margin`, when present and check_margin, holds numbers finite in float32; when a loss reads them
    (require_margin) margins it cannot use (all negative, or so large that every sigmoid saturates) are warned
    about. `pair_id`, when present, holds distinct whole numbers. Pairs with chosen == rejected carry no
    preference signal and repeated rows count twice: both are counted in a warning, not refused.
    lines: the file line of each row, when the rows were read from a file, so messages name lines, not indices.
    """
    prefix, name = (f"{where}: ", where) if where else ("", "the preference dataset")
    rows = _Rows(prefix, tuple(lines) if lines else None)
    cols, data = _rows_and_columns(dataset, name, rows)
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
            _check_text_column(c, data[c], rows)
    margins_read = "margin" in cols and (check_margin or require_margin)
    if margins_read:
        _check_margin_column(data["margin"], rows)
    elif require_margin and "margin" not in cols:
        raise ValueError(f"{prefix}missing column 'margin': this loss needs a numeric 'margin' column; the "
                         f"dataset has columns {sorted(cols)}")
    if "pair_id" in cols:
        _check_pair_id_column(data["pair_id"], rows)
    if margins_read and require_margin:
        _warn_degenerate_margins(data["margin"], rows)
    same = [i for i, (a, b) in enumerate(zip(data["chosen"], data["rejected"])) if a == b]
    if same:
        log.warning("%s%d of %d pairs have chosen == rejected (%s): they carry no preference signal and "
                    "only dilute the batch", prefix, len(same), n, rows.names(same))
    _warn_identical_rows({c: data[c] for c in REQUIRED if c in cols}, rows, n)
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


def _prompt_key(row: dict, i: int):
    if "prompt" not in row:
        raise ValueError(f"row {i} has no 'prompt': a split by prompt needs one in every row")
    return _hashable(row["prompt"])


def split_pairs(rows: list[dict], test_fraction: float, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """Train/test split by prompt: all pairs of one prompt land on the same side, so no held-out pair shares a
    prompt (or a response) with a training pair. `test_fraction` of the prompts are held out; deterministic
    given the seed. With one pair a prompt this is a split by row.

    Pairs are grouped by the prompt text itself, not by `prompt_id`: an id is only an index into one call of
    `make_pairs`, and rows that carry one prompt under several ids (separate calls, a repeated prompt, data
    numbered by row) would otherwise put that prompt on both sides."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    groups: dict = {}
    for i, r in enumerate(rows):
        groups.setdefault(_prompt_key(r, i), []).append(i)
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


_KIT_PAIRS = re.compile(rf"pairs_({'|'.join(QUALITIES)})_(train|test)\.jsonl")


def _written_by_the_kit(path: Path) -> bool:
    """Whether `path` is where notebook 01 saves pairs (`pairs_path`): only then is re-running it the remedy."""
    return bool(_KIT_PAIRS.fullmatch(path.name)) and path.parent.parent.name == "01_imdb_preferences"


def _rerun_advice(path: Path) -> str:
    return (f"the file is damaged: delete it and re-run the notebook that wrote it (python -m apo_utils.reproduce "
            f"--only 01 --profile {path.parent.name})")


def _line_fault(line: str, n: int, error: json.JSONDecodeError) -> str:
    """What is wrong with one line of a JSON Lines file the user wrote, and how to fix it."""
    stripped = line.strip()
    if stripped.startswith("[") or stripped == "]":
        return ("the file looks like a JSON array ('[' ... ']'): JSON Lines needs one JSON object per line, with "
                "no brackets around them and no commas between them; write each pair as {...} on its own line")
    if stripped.endswith(",") and _parses(stripped[:-1]):
        return ("the object ends with a trailing comma: in JSON Lines nothing but a line break separates two "
                "objects; drop it")
    without = re.sub(r",\s*([}\]])", r"\1", stripped)
    if without != stripped and _parses(without):
        return "a trailing comma before a closing '}' or ']', which JSON does not allow; drop it"
    return (f"not a JSON object ({error.msg} at column {error.colno}): each line of a JSON Lines file must be one "
            f"whole JSON object {{...}}; fix or remove line {n}")


def _parses(text: str) -> bool:
    try:
        json.loads(text)
    except json.JSONDecodeError:
        return False
    return True


def _read_jsonl_text(path: Path, kit: bool) -> str:
    """The file as text: UTF-8 without a byte-order mark, or an error naming the line and the fix."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        fix = _rerun_advice(path) if kit else "save the file as UTF-8"
        raise ValueError(f"{path}, line {line}: byte 0x{data[e.start]:02x} is not UTF-8 text; {fix}") from None
    if text.startswith("\ufeff"):
        fix = _rerun_advice(path) if kit else ("remove the BOM: save the file as UTF-8 without one (in Python, read "
                                                "it with encoding='utf-8-sig' and write it back with 'utf-8')")
        raise ValueError(f"{path}, line 1: the file starts with a byte-order mark (BOM), which JSON Lines does not "
                         f"allow; {fix}")
    return text


def load_pairs(path, require_margin: bool = False) -> list[dict]:
    """Pairs from a JSON Lines file (one object a line; blank lines skipped), validated; errors name file lines.

    A damaged file that notebook 01 wrote (`pairs_path`) is to be deleted and re-made by re-running it; any other
    file is the user's, so the error says what is wrong with it and how to fix it instead."""
    path = Path(path)
    kit = _written_by_the_kit(path)
    if not path.exists():
        raise FileNotFoundError(
            f"{path} does not exist: run notebooks/01_imdb_preferences.ipynb with the same profile first "
            f"(python -m apo_utils.reproduce --only 01 --profile {path.parent.name})" if kit else
            f"{path} does not exist: check the path (relative paths start at {Path.cwd()})")
    rows, lines = [], []
    for n, line in enumerate(_read_jsonl_text(path, kit).split("\n"), start=1):  # "\n" only: a JSON string may
        if not line.strip():  # hold U+2028 or a form feed, which str.splitlines() would take for line breaks
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            what = f"not a JSON object ({e.msg}); {_rerun_advice(path)}" if kit else _line_fault(line, n, e)
            raise ValueError(f"{path}, line {n}: {what}") from None
        if not isinstance(row, dict):
            fix = (_rerun_advice(path) if kit else "each line must be one JSON object {...} with one pair's columns "
                   "(a JSON array of pairs becomes one object per line, without the brackets)")
            raise ValueError(f"{path}, line {n}: a JSON {type(row).__name__}, not an object with one pair's columns; "
                             f"{fix}")
        rows.append(row)
        lines.append(n)
    return validate_preferences(rows, require_margin=require_margin, where=str(path), lines=lines)


def pairs_path(output_dir, profile: str, quality: str, split: str) -> Path:
    """Where notebook 01 saves, and the study notebooks read, one split of one quality level."""
    if quality not in QUALITIES or split not in ("train", "test"):
        raise ValueError(f"quality must be one of {QUALITIES} and split 'train' or 'test'")
    return Path(output_dir) / "01_imdb_preferences" / profile / f"pairs_{quality}_{split}.jsonl"
