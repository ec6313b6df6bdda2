"""What a run printed, kept beside its record, so that the book shows a chapter's tables and printouts as they came.

A notebook's prose reads its printed tables ("the table above"), yet the committed notebooks carry no outputs (nbval
runs them afresh) and the book executes nothing. `reproduce` therefore keeps, from each executed copy, the text and
HTML every code cell displayed, in `cell_outputs.json` beside the run record the same run wrote (`save`), and the
book puts them back under their cells (`restore`), but only under a cell whose code is still the code that made them,
and only while the record beside them is the run that printed them. Nothing shown is typed by hand.

Kept: standard output and displayed tables and text (HTML, markdown, or plain text alone). Left out: images (the
figures are committed as files), standard error (warnings, progress bars), interactive widgets, scripts, an object
that only names its address, and errors. Paths under the repository or the home folder are written relative to
them, so a record's outputs read the same wherever the kit was checked out (other absolute paths stay as printed).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from .storage import atomic_write_json, read_json_or_none

FILE = "cell_outputs.json"
LONGEST = 200_000  # characters a cell keeps of its printout or of one display; longer is cut, and says so
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_PLACEHOLDER = re.compile(r"^<.*( at 0x[0-9a-f]+| object)>$|^interactive\(", re.S)  # an object's address, not its content


def source_hash(source) -> str:
    """A code cell's identity for its outputs: the SHA-256 of its source (a string or nbformat's list of lines)."""
    text = "".join(source) if isinstance(source, list) else source
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _text(value) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def _clean(text: str, root: Path | None) -> str:
    """Colour codes dropped, a line rewritten in place (`\\r`, a progress counter) kept as its last state, and paths
    under the repository or the home folder written relative to them."""
    text = _ANSI.sub("", text.replace("\r\n", "\n"))
    text = "\n".join(line.rsplit("\r", 1)[-1] for line in text.split("\n"))
    for folder, instead in ((root, ""), (Path.home(), "~/")):
        if folder is not None and str(folder) not in ("", "/"):
            text = re.sub(r"(?<![\w./~-])" + re.escape(str(folder).rstrip("/") + "/"), instead, text)
    return text


def _cut(text: str) -> str:
    return text if len(text) <= LONGEST else text[:LONGEST] + f"\n… (cut: {len(text):,} characters in all)\n"


def _shown(data: dict) -> dict | None:
    """The forms of one displayed object the book shows, or None: a widget, an image (the figures are committed
    as files), a script, or an object that only names its address ('<... at 0x7f...>') shows nothing worth reading.
    HTML and markdown go without their plain-text fallback, which would only repeat them."""
    if any(k.startswith(("image/", "application/vnd.jupyter.widget")) for k in data):
        return None
    rich = {k: _text(data[k]) for k in ("text/html", "text/markdown") if k in data}
    if rich:
        return None if "<script" in rich.get("text/html", "").lower() else rich
    plain = _text(data.get("text/plain", "")) if set(data) == {"text/plain"} else ""
    return {"text/plain": plain} if plain.strip() and not _PLACEHOLDER.match(plain.strip()) else None


def kept_outputs(outputs: list[dict], root: Path | None = None) -> list[dict]:
    """The outputs of one executed cell the book shows, as nbformat outputs (stream and display_data): its standard
    output in order, the consecutive pieces the kernel flushed joined into one before they are cleaned."""
    kept, printed = [], []

    def flush():
        text = _cut(_clean("".join(printed), root))
        if text.strip():
            kept.append({"output_type": "stream", "name": "stdout", "text": text})
        printed.clear()

    for out in outputs:
        kind = out.get("output_type")
        if kind == "stream":
            if out.get("name") == "stdout":
                printed.append(_text(out.get("text", "")))
            continue  # standard error (warnings, progress bars) between two prints does not split them
        flush()
        if kind in ("execute_result", "display_data"):
            data = _shown(out.get("data") or {})
            if data:
                kept.append({"output_type": "display_data", "metadata": {},
                             "data": {k: _cut(_clean(v, root)) for k, v in data.items()}})
    flush()
    return kept


def extract(executed: dict, root: Path | None = None) -> dict[str, dict]:
    """{cell id: {'source': source_hash, 'outputs': kept outputs}} of an executed notebook (nbformat as a dict), for
    every code cell that showed something."""
    cells = {}
    for c in executed.get("cells", []):
        if c.get("cell_type") != "code" or not c.get("id"):
            continue
        if {"parameters", "injected-parameters"} & set((c.get("metadata") or {}).get("tags", [])):
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
