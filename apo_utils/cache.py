"""Disk cache for expensive batched steps (generation, scoring, reference log-probs).

`cached_map(fn, items, batch_size, cache_dir, key)` applies `fn` to `items` batch by batch and writes
each finished batch to its own JSON file, atomically. The folder is named by a hash of `key` (every
input that changes the result: model, seed, lengths, ...) and of the items themselves, so a changed
input never reads a stale result. A re-run, or a run killed half-way, reads the finished batches and
computes only the missing ones: no finished batch is lost. A batch file that is damaged (cut short,
empty, or holding the wrong number of results) is named and recomputed; a complete cache is only read,
so it works from a read-only folder.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

from tqdm.auto import tqdm

from . import code_version
from .storage import atomic_write_json, made_before_recompute, note_reuse, read_json


def fingerprint(*parts) -> str:
    """A short, stable hash of JSON-serialisable inputs."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _checked(fn, batch, desc):
    out = list(fn(batch))
    if len(out) != len(batch):
        raise ValueError(f"{desc}: fn returned {len(out)} results for a batch of {len(batch)}")
    return out


def _read_batch(path: Path, expected: int):
    """A finished batch's results, or None with the reason when the file is missing or damaged.

    A batch file counts as done only if it parses as a JSON list of exactly one result per item: a file
    cut short by a full disk, emptied, or holding another batch's results is recomputed, never trusted."""
    if not path.exists():
        return None, None
    try:
        out = read_json(path)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        return None, f"unreadable ({type(e).__name__}: {e})"
    if not isinstance(out, list):
        return None, f"holds a {type(out).__name__}, not a list of results"
    if len(out) != expected:
        return None, f"holds {len(out)} results for a batch of {expected}"
    return out, None


def _write_key(folder: Path, record: dict):
    """Describe the folder once (for a person looking at it); a complete cache in a read-only folder stays readable."""
    path = folder / "key.json"
    try:
        if path.exists() and isinstance(read_json(path), dict):  # the folder's name is the key's hash: same key
            return
    except (OSError, ValueError):
        pass  # damaged description: rewrite it below
    try:
        atomic_write_json(path, record)
    except OSError as e:
        warnings.warn(f"could not write {path} ({e}); the cache still works, it is only its description", stacklevel=3)


def cached_map(fn, items: list, batch_size: int, cache_dir, key: dict, desc: str = "batches",
               progress: bool = True, code: str | None = None) -> list:
    """`fn(batch) -> list` of one result per item; results are JSON values. Returns results for all items.

    code: the module whose code makes the results (e.g. 'generation'); its fingerprint and that of every module it
    imports join the key (`code_version.fingerprint`), so an edit to that code recomputes the batches.

    A damaged batch file (unreadable, or the wrong number of results) is named in a warning and recomputed.
    With cache_dir=None nothing is stored (the same batching, for callers that opt out of caching)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a whole number >= 1, got {batch_size!r}")
    starts = range(0, len(items), batch_size)
    if cache_dir is None:  # same batching, nothing stored
        results = []
        for s in tqdm(starts, desc=desc, disable=not progress):
            results.extend(_checked(fn, items[s : s + batch_size], desc))
        return results
    made_by = [code_version.fingerprint(code)] if code else []
    folder = Path(cache_dir) / f"{desc.replace(' ', '_')}-{fingerprint(key, items, batch_size, *made_by)}"
    done, todo = {}, []
    for s in starts:
        path = folder / f"batch_{s:08d}.json"
        out, damage = (None, None) if made_before_recompute(path) else _read_batch(path, len(items[s : s + batch_size]))
        if damage is not None:
            warnings.warn(f"{desc}: cache file {path} is damaged ({damage}); recomputing that batch", stacklevel=2)
        if out is None:
            todo.append(s)
        else:
            done[s] = out
    if todo:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OSError(f"{desc}: cannot create the cache folder {folder} ({e}); {len(todo)} of {len(starts)} "
                          f"batches must be computed. Make it writable or pass another cache_dir.") from e
        _write_key(folder, {"key": key, "n_items": len(items), "batch_size": batch_size})
    note_reuse("cache batches", len(done), code=made_by[0] if made_by else None)
    if done and progress:
        print(f"{desc}: {len(done)} of {len(starts)} batches already on disk in {folder}")
    for s in tqdm(todo, desc=desc, disable=not progress):
        out = _checked(fn, items[s : s + batch_size], desc)
        try:
            atomic_write_json(folder / f"batch_{s:08d}.json", out)
        except OSError as e:
            raise OSError(f"{desc}: cannot write {folder / f'batch_{s:08d}.json'} ({e}); the batches written "
                          f"before it are kept. Make the folder writable or pass another cache_dir.") from e
        # What comes back is what was written (JSON turns tuples into lists, drops NaN to None), so a re-run
        # from the cache returns exactly what this run did.
        done[s] = read_json(folder / f"batch_{s:08d}.json")
    return [r for s in starts for r in done[s]]
