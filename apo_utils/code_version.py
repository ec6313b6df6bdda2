"""Which code a result depends on: the package's import graph, and a fingerprint of the files a step reaches.

Two users, one graph, so neither keeps a list by hand:

* cached steps (a trained policy, a reward model, samples and their scores) put `fingerprint(module)` in their
  cache key, so an edit to a loss, the trainer or anything else the step imports makes it run again, while a
  step that does not reach the edited file keeps its cache;
* `summary.staleness` marks a committed run record stale when a file its notebook reaches changed since the
  record was made (`depends_on`).

Imports are read from the source with `ast`, function-level ones included: a late import is still a dependency.
"""

from __future__ import annotations

import ast
import hashlib
import json
from functools import lru_cache
from pathlib import Path

PACKAGE = "apo_utils"
PACKAGE_DIR = Path(__file__).resolve().parent

# Modules that write down or display results without changing a number in them. `profiles` holds settings, which
# reach a cache key as values and a record as stored settings (summary.settings_changed compares those).
NOT_A_RESULT = frozenset({"__init__", "records", "storage", "progress", "profiles", "code_version"})


def import_graph(package_dir=None, package: str = PACKAGE) -> dict[str, set[str]]:
    """{module: modules of the same package it imports}, module-level and function-level imports alike."""
    package_dir, prefix = Path(package_dir or PACKAGE_DIR), package.split(".")
    modules = {p.stem for p in package_dir.glob("*.py")}

    def owner(dotted: str) -> str | None:
        """The package's module that `dotted` names or lies in ('__init__' for the package), else None."""
        parts = dotted.split(".")
        if parts[: len(prefix)] != prefix:
            return None
        rest = parts[len(prefix):]
        if not rest:
            return "__init__"
        return rest[0] if rest[0] in modules else None

    graph = {}
    for name in sorted(modules):
        found = _imported_names(name, (package_dir / f"{name}.py").read_text(), tuple(prefix))
        graph[name] = {m for m in (owner(d) or (owner(fallback) if fallback else None) for d, fallback in found)
                       if m is not None} - {name}
    return graph


@lru_cache(maxsize=1024)
def _imported_names(name: str, source: str, prefix: tuple[str, ...]) -> tuple[tuple[str, str | None], ...]:
    """(dotted name, fallback) for each name a module's source imports, relative ones resolved: `from . import x`
    names module x, `from .m import x` something in module m, the fallback. Parsed once per distinct source: every
    cached step asks for a fingerprint, and parsing the package each time would cost 0.2 s a step."""
    tree = ast.parse(source, filename=f"{name}.py")
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, None) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            stem = node.module or ""
            if node.level:  # relative: resolve against this module's package
                stem = ".".join(list(prefix[: len(prefix) - node.level + 1]) + ([stem] if stem else []))
            found += [(f"{stem}.{a.name}", stem) for a in node.names]
    return tuple(found)


def reachable(graph: dict[str, set[str]], starts) -> set[str]:
    """Every module `starts` import, directly or through others, the starts included."""
    seen, todo = set(), list(starts)
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo += sorted(graph.get(m, ()))
    return seen


def notebook_imports(path, package: str = PACKAGE) -> set[str]:
    """The package's modules a notebook's code cells import."""
    cells = json.loads(Path(path).read_text())["cells"]
    modules = {p.stem for p in PACKAGE_DIR.glob("*.py")}
    found = set()
    for cell in cells:
        if cell["cell_type"] != "code":
            continue
        try:
            tree = ast.parse("".join(cell["source"]))
        except SyntaxError:  # IPython magics: a cell that is not plain Python imports nothing we can read
            continue
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [f"{node.module}.{a.name}" for a in node.names] + [node.module]
                     if isinstance(node, ast.ImportFrom) and node.module else [])
            for dotted in names:
                parts = dotted.split(".")
                if parts[0] == package and len(parts) > 1 and parts[1] in modules:
                    found.add(parts[1])
    return found


def depends_on(notebook, root=None) -> list[str]:
    """The repository files a notebook's numbers depend on: itself and every module it reaches."""
    root = Path(root) if root else PACKAGE_DIR.parent
    modules = reachable(import_graph(), notebook_imports(root / notebook)) - NOT_A_RESULT
    return [str(Path(notebook))] + [f"{PACKAGE}/{m}.py" for m in sorted(modules)]


@lru_cache(maxsize=None)
def _fingerprint(module: str, sources: tuple[tuple[str, str], ...]) -> str:
    blob = json.dumps([module, sources]).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def fingerprint(module: str) -> str:
    """A short hash of the source of `module` and of every module it reaches (results-relevant ones only).

    Read from disk each call (cheap: a few dozen small files), so an edit made while a notebook's kernel runs
    is seen by the next cached step, as a learner who edits a loss and re-runs a cell expects."""
    modules = sorted(reachable(import_graph(), [module]) - NOT_A_RESULT)
    return _fingerprint(module, tuple((m, (PACKAGE_DIR / f"{m}.py").read_text()) for m in modules))
