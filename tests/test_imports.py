"""apo_utils imports form a layered graph: no cycle, and the base modules never reach up to the trainers.

Counted from the source with `ast`, so imports inside functions count too: a function-level import hides a
cycle from Python at import time, not from a reader.
"""

from apo_utils.code_version import PACKAGE_DIR, import_graph

# Small helpers every other module may use; they must not reach the trainers, the studies or the scripts.
BASE = {"env", "storage", "losses", "stats", "prompts", "tiny", "progress", "cache", "plotting", "code_version"}
UPPER = {"study", "trainer", "reward_model", "policy_training", "lora_run", "summary", "reproduce"}
# What notebooks and command lines call: nothing in the package imports them (a helper two of them need belongs in
# a module below both).
TOP = {"study", "summary", "reproduce", "bench"}  # study.py is what the study notebooks build on
# Above the top: the book (apo_utils/book.py) lays out what the summary computes, and run_phases times what a study
# runs; each may import a top module, and nothing in the package imports them.
OUTERMOST = {"book", "run_phases"}


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
    assert TOP <= set(graph) and OUTERMOST <= set(graph), "a top module was renamed: update this test"
    upward = sorted(f"{low} -> {high}" for low, highs in graph.items() for high in highs & (TOP | OUTERMOST)
                    if low not in OUTERMOST or high in OUTERMOST)
    assert not upward, "modules import a top module (notebook / command-line entry point): " + "; ".join(upward)


def test_the_package_map_lists_every_module():
    """The book's package map (book/maintainer/package.md) has a row for every module of apo_utils."""
    from apo_utils.storage import repo_root

    page = (repo_root() / "book" / "maintainer" / "package.md").read_text()
    table = "\n".join(line for line in page.splitlines() if line.startswith("| `"))
    missing = sorted(m for m in import_graph() if m != "__init__" and f"`{m}.py`" not in table)
    assert not missing, f"book/maintainer/package.md's module table does not list: {missing}"
