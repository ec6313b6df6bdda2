"""Every interval a chapter's prose or the README quotes is one a committed run record holds.

The findings are written in words, so their numbers are typed; this test is what keeps them from drifting from
the records. A quoted "difference [low, high]" must be some comparison's difference with the interval its verdict
reads (`stats.cautious_interval`, the hull of the bootstrap and the t interval over seeds), each number the
rounding of the record's to the decimals shown. The one exception is a single-seed comparison, whose hull is
unbounded: its prose quotes the bootstrap over prompts and says so. A chapter may quote a companion's record (02
and 02b, 05 and 05c: the notebooks sharing its number). A share may be quoted in percentage points
(notebook 01); notebook 00 keeps its bandit's comparisons under `paired_ranking_accuracy`, notebook 04c its
changes along training under `late_change`.
"""

import json
import re

import pytest

from apo_utils import book
from apo_utils.stats import cautious_interval
from apo_utils.storage import repo_root

ROOT = repo_root()
NUMBER = r"([+−-]?\d+(?:\.\d+)?)"
QUOTED = re.compile(NUMBER + r" \[" + NUMBER + r", " + NUMBER + r"\]")


def quoted_intervals(text: str) -> list[tuple[str, str, str]]:
    return QUOTED.findall(text)


def _value(s: str) -> float:
    return float(s.replace("−", "-"))


def _rounds_to(x: float, shown: str) -> bool:
    if shown.lstrip("+−-") == "0":  # the kit prints exactly 0 as "0" (apo_utils.formatting), nothing else
        return x == 0
    decimals = len(shown.split(".")[1]) if "." in shown else 0
    return abs(x - _value(shown)) <= 0.5 * 10 ** -decimals + 1e-9


def matches(quote: tuple[str, str, str], comparisons: list[dict]) -> bool:
    for c in comparisons:
        intervals = [cautious_interval(c)]
        if c["n_seeds"] == 1:
            intervals.append(c["ci95"])
        for scale in (1, 100):  # a share, or the same share in percentage points
            if any(all(_rounds_to(scale * x, s) for x, s in zip((c["diff"], *iv), quote)) for iv in intervals):
                return True
    return False


def _comparisons(study: str) -> list[dict]:
    rec = book.cpu_records(ROOT).get(study)
    if not rec:
        return []
    metrics = rec["metrics"]  # 00 keeps its bandit's comparisons apart, 04c its changes along training
    return (metrics.get("comparisons", []) + list(metrics.get("paired_ranking_accuracy", {}).values())
            + list(metrics.get("late_change", {}).values()))


def _all_comparisons() -> list[dict]:
    return [c for study in book.CHAPTERS for c in _comparisons(study)]


@pytest.mark.parametrize("study", book.CHAPTERS)
def test_a_chapter_quotes_only_intervals_its_record_holds(study):
    nb = json.loads((ROOT / "notebooks" / f"{study}.ipynb").read_text())
    prose = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    # a chapter may quote its companions' records too (05 quotes 05c's): the notebooks sharing its number
    family = [s for s in book.CHAPTERS if s[:2] == study[:2]]
    comparisons = _all_comparisons() if study == "06_summary" else [c for s in family for c in _comparisons(s)]
    unknown = [q for q in quoted_intervals(prose) if not matches(q, comparisons)]
    assert not unknown, f"{study}: intervals in the prose that no comparison of its record holds: {unknown}"


def test_the_readme_quotes_only_intervals_the_records_hold():
    text = (ROOT / "README.md").read_text()
    quotes = quoted_intervals(text)
    assert quotes, "the README's results table is gone"
    unknown = [q for q in quotes if not matches(q, _all_comparisons())]
    assert not unknown, f"README: intervals no committed record holds: {unknown}"


def test_a_changed_number_is_caught():
    c = {"diff": 0.0112, "ci95": [-0.0331, 0.0541], "seed_ci95": [-0.02, 0.05], "n_seeds": 5}
    assert matches(("+0.011", "−0.033", "+0.054"), [c])
    assert not matches(("+0.012", "−0.033", "+0.054"), [c])      # the difference typed wrong
    assert not matches(("+0.011", "−0.020", "+0.050"), [c])      # the seed interval alone is not what decides
    assert matches(("+1.1", "−3.3", "+5.4"), [c])                # in percentage points
    assert not matches(("+1.2", "−3.3", "+5.4"), [c])
    one_seed = dict(c, seed_ci95=[None, None], n_seeds=1)
    assert matches(("+0.011", "−0.033", "+0.054"), [one_seed])   # one seed: the bootstrap, said so in the prose
