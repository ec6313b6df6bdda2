"""apo_utils imports form a layered graph: no cycle, and the base modules never reach up to the trainers.

Counted from the source with `ast`, so imports inside functions count too: a function-level import hides a
cycle from Python at import time, not from a reader.
"""

import ast
from pathlib import Path

import apo_utils

PACKAGE_DIR = Path(apo_utils.__file__).parent

# Small helpers every other module may use; they must not reach the trainers, the studies or the scripts.
BASE = {"env", "storage", "losses", "stats", "prompts", "tiny", "progress", "cache", "plotting"}
UPPER = {"study", "trainer", "reward_model", "summary", "reproduce"}
# What notebooks and command lines call: nothing in the package imports them (reward_model once took a helper
# from study; such a helper belongs in a module below both).
TOP = {"skeleton", "summary", "reproduce", "bench"}  # study.py is what skeleton.py builds on


def import_graph(package_dir, package: str) -> dict[str, set[str]]:
    """{module: modules of the same package it imports}, module-level and function-level imports alike."""
    package_dir, prefix = Path(package_dir), package.split(".")
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
        tree = ast.parse((package_dir / f"{name}.py").read_text(), filename=f"{name}.py")
        found = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found |= {owner(a.name) for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                stem = node.module or ""
                if node.level:  # relative: resolve against this module's package
                    stem = ".".join(prefix[: len(prefix) - node.level + 1] + ([stem] if stem else []))
                # `from . import x` names module x; `from .m import x` names something in module m.
                found |= {owner(f"{stem}.{a.name}") or owner(stem) for a in node.names}
        graph[name] = found - {None, name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = "done"
        stack.pop()
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def path_between(graph: dict[str, set[str]], start: str, goal: str) -> list[str] | None:
    """The shortest import chain start -> ... -> goal, or None."""
    paths, seen = [[start]], {start}
    while paths:
        path = paths.pop(0)
        for nxt in sorted(graph.get(path[-1], ())):
            if nxt == goal:
                return path + [nxt]
            if nxt not in seen:
                seen.add(nxt)
                paths.append(path + [nxt])
    return None


def test_the_checker_finds_a_cycle_hidden_in_function_level_imports(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from .b import g\n    return g()\n")
    (pkg / "b.py").write_text("def g():\n    from . import c\n    return c\n")
    (pkg / "c.py").write_text("import os\n\ndef h():\n    import pkg.a\n")
    (pkg / "d.py").write_text("from pkg import c\nfrom pkg.a import f\n")
    graph = import_graph(pkg, "pkg")
    assert graph == {"__init__": set(), "a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a", "c"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert path_between(graph, "d", "b") == ["d", "a", "b"]
    (pkg / "c.py").write_text("import os\n")
    assert find_cycle(import_graph(pkg, "pkg")) is None


def test_apo_utils_has_no_import_cycle():
    graph = import_graph(PACKAGE_DIR, "apo_utils")
    assert {"env", "tiny", "progress", "models", "prompts"} <= set(graph)
    cycle = find_cycle(graph)
    assert cycle is None, f"import cycle in apo_utils: {' -> '.join(cycle)}"


def test_base_modules_do_not_reach_the_trainers_or_scripts():
    graph = import_graph(PACKAGE_DIR, "apo_utils")
    assert BASE <= set(graph) and UPPER <= set(graph), "a module of the layering was renamed: update this test"
    upward = [path for low in sorted(BASE) for high in sorted(UPPER) if (path := path_between(graph, low, high))]
    assert not upward, "base modules import upward: " + "; ".join(" -> ".join(p) for p in upward)


def test_nothing_in_the_package_imports_the_top_modules():
    graph = import_graph(PACKAGE_DIR, "apo_utils")
    assert TOP <= set(graph), "a top module was renamed: update this test"
    upward = sorted(f"{low} -> {high}" for low, highs in graph.items() for high in highs & TOP)
    assert not upward, "modules import a top module (notebook / command-line entry point): " + "; ".join(upward)
