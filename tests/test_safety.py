"""Nothing in the kit runs remote code or unpickles files: a scan of the package and the notebooks."""

import json
import re

from apo_utils.storage import repo_root

ROOT = repo_root()
FORBIDDEN = [
    (re.compile(r"trust_remote_code\s*=\s*True"), "trust_remote_code=True"),
    (re.compile(r"^\s*(import pickle|from pickle|import dill|import cloudpickle)", re.M), "a pickle import"),
    (re.compile(r"torch\.load\((?![^)]*weights_only\s*=\s*True)"), "torch.load without weights_only=True"),
    (re.compile(r"safe_serialization\s*=\s*False"), "safe_serialization=False"),
    (re.compile(r"use_safetensors\s*=\s*False"), "use_safetensors=False"),
]


def _sources():
    for path in sorted((ROOT / "apo_utils").glob("*.py")):
        yield path, path.read_text()
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        yield path, "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")


def test_no_remote_code_and_no_pickle():
    found = [f"{path.relative_to(ROOT)}: {what}" for path, text in _sources() for rx, what in FORBIDDEN if rx.search(text)]
    assert not found, found


def test_the_scan_would_catch_them():
    bad = "model = AutoModel.from_pretrained(x, trust_remote_code=True)\nimport pickle\nw = torch.load(f)\n"
    assert sum(bool(rx.search(bad)) for rx, _ in FORBIDDEN) == 3
    assert not FORBIDDEN[2][0].search("torch.load(f, weights_only=True)")
