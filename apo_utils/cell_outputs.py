"""What a run printed, kept beside its record, so that the book shows a chapter's tables and printouts as they came.

A notebook's prose reads its printed tables ("the table above"), yet the committed notebooks carry no outputs (nbval
runs them afresh) and the book executes nothing. `reproduce` therefore keeps, from each executed copy, the text and
HTML every code cell displayed, in `cell_outputs.json` beside the run record the same run wrote (`save`), and the
book puts them back under their cells (`restore`), but only under a cell whose code is still the code that made them,
and only while the record beside them is the run that printed them. Nothing shown is typed by hand.

Kept: standard output and displayed tables and text (HTML with its plain-text fallback). Left out: images (the
figures are committed as files), standard error (warnings, progress bars), interactive widgets and errors. Paths
under the repository or the home folder are written relative to them, so a record's outputs read the same wherever
the kit was checked out.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from .storage import atomic_write_json, read_json_or_none

FILE = "cell_outputs.json"
KEPT = ("text/html", "text/plain")  # a displayed object's forms the book can show as text
LONGEST = 200_000  # characters a cell keeps; a longer printout is cut, and says so
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def source_hash(source) -> str:
    """A code cell's identity for its outputs: the SHA-256 of its source (a string or nbformat's list of lines)."""
    text = "".join(source) if isinstance(source, list) else source
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _text(value) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def _clean(text: str, root: Path | None) -> str:
    """Colour codes dropped, a line rewritten in place (`\\r`, a progress counter) kept as its last state, and paths
    made relative to the repository and the home folder."""
    text = _ANSI.sub("", text)
    text = "\n".join(line.rsplit("\r", 1)[-1] for line in text.split("\n"))
    if root is not None:
        text = text.replace(str(root) + "/", "")
    return text.replace(str(Path.home()) + "/", "~/")


def _cut(text: str) -> str:
    return text if len(text) <= LONGEST else text[:LONGEST] + f"\n… (cut: {len(text):,} characters in all)\n"


def kept_outputs(outputs: list[dict], root: Path | None = None) -> list[dict]:
    """The outputs of one executed cell the book shows, as nbformat outputs (stream and display_data)."""
    kept = []
    for out in outputs:
        kind = out.get("output_type")
        if kind == "stream" and out.get("name") == "stdout":
            text = _cut(_clean(_text(out.get("text", "")), root))
            if kept and kept[-1]["output_type"] == "stream":  # consecutive prints read as one block
                kept[-1]["text"] += text
            elif text.strip():
                kept.append({"output_type": "stream", "name": "stdout", "text": text})
        elif kind in ("execute_result", "display_data"):
            data = {k: _cut(_clean(_text(v), root)) for k, v in (out.get("data") or {}).items() if k in KEPT}
            if "text/html" in data or ("text/plain" in data and not _only_a_figure(out)):
                kept.append({"output_type": "display_data", "data": data, "metadata": {}})
    return kept


def _only_a_figure(out: dict) -> bool:
    """A figure's display: an image, with a plain-text fallback such as '<Figure size 1200x400 with 2 Axes>'."""
    return any(k.startswith("image/") for k in out.get("data") or {})


def extract(executed: dict, root: Path | None = None) -> dict[str, dict]:
    """{cell id: {'source': source_hash, 'outputs': kept outputs}} of an executed notebook (nbformat as a dict), for
    every code cell that showed something."""
    cells = {}
    for c in executed.get("cells", []):
        if c.get("cell_type") != "code" or not c.get("id"):
            continue
        if "parameters" in (c.get("metadata") or {}).get("tags", []) or \
                "injected-parameters" in (c.get("metadata") or {}).get("tags", []):
            continue  # papermill's parameter cells: the run's settings are in its record
        outputs = kept_outputs(c.get("outputs") or [], root)
        if outputs:
            cells[c["id"]] = {"source": source_hash(c.get("source", "")), "outputs": outputs}
    return cells


def save(executed: dict, record_dir: Path, root: Path | None = None) -> Path | None:
    """Write the outputs of `executed` beside the run record in `record_dir`, tied to that record by its start time;
    None (nothing written) where the notebook wrote no record there."""
    record = read_json_or_none(Path(record_dir) / "run_record.json")
    if not record or not record.get("started"):
        return None
    path = Path(record_dir) / FILE
    atomic_write_json(path, {"record_started": record["started"], "cells": extract(executed, root)})
    return path


def restore(notebook: dict, saved: dict | None, record: dict | None) -> int:
    """Put `saved` outputs (`save`) back under the cells of `notebook` (in place) whose id and code match, when they
    came from the same run as `record`. Returns how many cells got outputs."""
    if not saved or not record or saved.get("record_started") != record.get("started"):
        return 0
    cells = saved.get("cells") or {}
    restored = 0
    for c in notebook.get("cells", []):
        kept = cells.get(c.get("id"))
        if c.get("cell_type") == "code" and kept and kept.get("source") == source_hash(c.get("source", "")):
            c["outputs"] = kept["outputs"]
            restored += 1
    return restored
