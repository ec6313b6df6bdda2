"""Disk cache for expensive batched steps (generation, scoring, reference log-probs).

`cached_map(fn, items, batch_size, cache_dir, key)` applies `fn` to `items` batch by batch and writes
each finished batch to its own JSON file, atomically. The folder is named by a hash of `key` (every
input that changes the result: model, seed, lengths, ...) and of the items themselves, so a changed
input never reads a stale result. A re-run, or a run killed half-way, reads the finished batches and
computes only the missing ones: no finished batch is lost.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tqdm.auto import tqdm

from .storage import atomic_write_json, read_json


def fingerprint(*parts) -> str:
    """A short, stable hash of JSON-serialisable inputs."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _checked(fn, batch, desc):
    out = list(fn(batch))
    if len(out) != len(batch):
        raise ValueError(f"{desc}: fn returned {len(out)} results for a batch of {len(batch)}")
    return out


def cached_map(fn, items: list, batch_size: int, cache_dir, key: dict, desc: str = "batches",
               progress: bool = True) -> list:
    """`fn(batch) -> list` of one result per item; results are JSON values. Returns results for all items.

    With cache_dir=None nothing is stored (the same batching, for callers that opt out of caching)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    starts = range(0, len(items), batch_size)
    if cache_dir is None:  # same batching, nothing stored
        results = []
        for s in tqdm(starts, desc=desc, disable=not progress):
            results.extend(_checked(fn, items[s : s + batch_size], desc))
        return results
    folder = Path(cache_dir) / f"{desc.replace(' ', '_')}-{fingerprint(key, items, batch_size)}"
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(folder / "key.json", {"key": key, "n_items": len(items), "batch_size": batch_size})
    todo = [s for s in starts if not (folder / f"batch_{s:08d}.json").exists()]
    if len(todo) < len(starts) and progress:
        print(f"{desc}: {len(starts) - len(todo)} of {len(starts)} batches already on disk in {folder}")
    for s in tqdm(todo, desc=desc, disable=not progress):
        atomic_write_json(folder / f"batch_{s:08d}.json", _checked(fn, items[s : s + batch_size], desc))
    results = []
    for s in starts:
        results.extend(read_json(folder / f"batch_{s:08d}.json"))
    return results
