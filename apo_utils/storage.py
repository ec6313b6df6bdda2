"""Atomic writes and the repository's paths.

Every file the kit writes goes through a temporary file in the same folder and `os.replace`, so a
run killed mid-write leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import warnings
from collections import Counter
from pathlib import Path


def repo_root() -> Path:
    """The folder holding pyproject.toml, found upwards from here or from the working directory."""
    for start in (Path(__file__).resolve().parent, Path.cwd().resolve()):
        for p in (start, *start.parents):
            if (p / "pyproject.toml").exists() and (p / "apo_utils").is_dir():
                return p
    return Path.cwd().resolve()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _clean(obj):
    """JSON has no NaN/inf: write them as null rather than emitting invalid JSON."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "item") and getattr(obj, "ndim", 1) == 0:  # numpy / torch scalars
        return _clean(obj.item())
    if hasattr(obj, "tolist"):
        return _clean(obj.tolist())
    return obj


def atomic_write_json(path: str | os.PathLike, obj) -> Path:
    text = json.dumps(_clean(obj), indent=2, sort_keys=True, allow_nan=False) + "\n"
    return atomic_write_bytes(path, text.encode())


def read_json(path: str | os.PathLike):
    with open(path) as f:
        return json.load(f)


def set_aside(path: str | os.PathLike, why: str) -> Path:
    """Rename a damaged file to NAME.damaged (kept for a look, out of the way of a re-run) and say so."""
    path = Path(path)
    aside = path.with_name(path.name + ".damaged")
    os.replace(path, aside)
    warnings.warn(f"{path} is damaged ({why}); moved to {aside.name} and recomputing it", stacklevel=3)
    return aside


def read_json_or_none(path: str | os.PathLike, expect: type = dict):
    """The JSON value in `path`, or None when it is missing or damaged (then it is set aside with a warning).

    For cache entries: a file cut short or overwritten must cost a recomputation, not every later run."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        value = read_json(path)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        set_aside(path, f"{type(e).__name__}: {e}")
        return None
    if not isinstance(value, expect):
        set_aside(path, f"holds a {type(value).__name__}, expected a {expect.__name__}")
        return None
    return value


def safetensors_problem(path: str | os.PathLike) -> str | None:
    """None if `path` is a whole safetensors file, else what is wrong with it. Reads the header only.

    A file cut short keeps a valid header, so its size is checked against the end of the last tensor."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            if n <= 0 or 8 + n > size:
                return f"header length {n} does not fit a file of {size} bytes"
            header = json.loads(f.read(n))
    except FileNotFoundError:
        return "missing"
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        return f"unreadable header ({type(e).__name__}: {e})"
    ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)]
    if size != 8 + n + max(ends, default=0):
        return f"{size} bytes where the header describes {8 + n + max(ends, default=0)}: cut short or padded"
    return None


# What this process took from a cache instead of computing it (cache batches, policies, reward models, runs).
# A run record compares it before and after a study: a run that reused nothing is a full run, and only a full
# run's wall time may be reported as what the study costs.
_reused: Counter = Counter()
_reused_code: list[tuple[str, str]] = []  # (what, fingerprint of the code that made it), in the order taken


def note_reuse(what: str, n: int = 1, code: str | None = None):
    """Count what was taken from a cache; `code`: the fingerprint of the code that made it (code_version), which a
    cache key includes, so it is also the code running now."""
    if n:
        _reused[what] += int(n)
        if code:
            _reused_code.append((what, code))


def reuse_counts() -> dict[str, int]:
    return dict(_reused)


def reuse_codes(since: int = 0) -> dict[str, list[str]]:
    """{what: fingerprints of the code that made what was reused} for the reuses after the first `since`."""
    out: dict[str, set] = {}
    for what, code in _reused_code[since:]:
        out.setdefault(what, set()).add(code)
    return {k: sorted(v) for k, v in out.items()}


def reuse_mark() -> int:
    return len(_reused_code)


# `reproduce --force` sets this to the time it started: a cache entry written before then is not trusted, so every
# step computes again (an entry the forced run itself writes is reused within it, and a later plain run resumes).
RECOMPUTE_SINCE = "APO_RECOMPUTE_SINCE"


def made_before_recompute(path: str | os.PathLike) -> bool:
    """True when a recompute was asked for (RECOMPUTE_SINCE) and `path` was written before it."""
    since = os.environ.get(RECOMPUTE_SINCE)
    if not since:
        return False
    try:
        return Path(path).stat().st_mtime < float(since)
    except FileNotFoundError:
        return False
