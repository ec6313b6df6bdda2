"""The committed matched-KL comparisons read again three ways (apo_utils/readings.py): each way checked on curves
whose answer is known, then run over every committed record."""

import json
import math
import subprocess

import pytest

from apo_utils import readings, summary
from apo_utils.stats import matched_kl_comparison
from apo_utils.storage import repo_root

ROOT = repo_root()


def _tracked(pattern: str) -> list[str]:
    out = subprocess.run(["git", "ls-files", pattern], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return out.split()


def _curve_rows(method, kls, seeds=range(5), prompts=8):
    """Reward exactly 0.4 + 0.2·√KL on every prompt (plus a prompt effect shared by all runs): one true curve."""
    effect = [0.01 * p for p in range(prompts)]
    return [{"setting": "high", "method": method, "seed": s, "beta": 0.1, "step": i, "kl": kl,
             "reward": 0.4 + 0.2 * math.sqrt(kl) + sum(effect) / prompts,
             "prompt_rewards": [0.4 + 0.2 * math.sqrt(kl) + e for e in effect]}
            for s in seeds for i, kl in enumerate(kls)]


def test_reading_in_root_kl_removes_the_bias_of_a_straight_line_across_a_bend():
    """Two methods on one curve, measured at different spacings: read straight in KL, the sparsely measured side
    reads low at a budget between its checkpoints (0.4 + 0.1·√2 against 0.6 at KL 1); read in √KL the curve is a
    straight line, so both read 0.6 and the difference vanishes."""
    metrics = {"frontiers": _curve_rows("sparse", [0.0, 2.0, 4.0]) + _curve_rows("dense", [0.0, 0.5, 1.0, 2.0, 4.0])}
    c = {"setting": "high", "method": "sparse", "baseline": "dense", "beta": 0.1, "baseline_beta": 0.1, "kl": 1.0,
         "metric": "reward", "matters": 0.01}
    in_kl = matched_kl_comparison(metrics["frontiers"], "high", "sparse", "dense", 1.0, 0.01)
    assert in_kl["diff"] == pytest.approx(0.1 * math.sqrt(2) - 0.2)
    again = readings.read_in_root_kl(metrics, c)
    assert again["diff"] == pytest.approx(0.0, abs=1e-12)
    assert (again["beta"], again["baseline_beta"], again["n_seeds"]) == (0.1, 0.1, 5)


def test_every_committed_matched_kl_comparison_is_read_again():
    """One row for each matched-KL comparison of the committed cpu records, each read again in √KL to a finite
    number, and each best-of-β one with β chosen on other prompts."""
    rows = readings.reading_sensitivity(summary.records(committed_only=True))
    at_kl = [c for path in _tracked("figures/*/cpu/run_record.json")
             for c in json.loads((ROOT / path).read_text())["metrics"].get("comparisons", []) if "kl" in c]
    assert at_kl and len(rows) == len(at_kl)
    assert all(math.isfinite(r["diff_sqrt_kl"]) and r["verdict_sqrt_kl"] for r in rows)
    best_of = sum("best of" in c.get("note", "") for c in at_kl)  # only these chose a β, so only these are redone
    assert best_of > 0 and sum(math.isfinite(r["diff_beta_elsewhere"] or math.nan) for r in rows) == best_of


def _two_beta_rows(method, beta, offset, seeds=range(5)):
    """Five seeds (or `seeds`), eight prompts, checkpoints at KL 0, 1 and 2; offset(seed, prompt) is added from KL 1 on."""
    return [{"setting": "high", "method": method, "seed": s, "beta": beta, "step": i, "kl": kl, "reward": 0.0,
             "prompt_rewards": [0.5 + (offset(s, p) if kl else 0.0) for p in range(8)]}
            for s in seeds for i, kl in enumerate([0.0, 1.0, 2.0])]


COMPARISON = {"setting": "high", "method": "method", "baseline": "base", "kl": 1.0, "metric": "reward",
              "matters": 0.01, "baseline_beta": 0.1}


def test_a_beta_lucky_on_half_the_prompts_loses_the_lead_it_buys_when_chosen_on_the_other_half():
    """β 0.1 is better on the even prompts and β 0.2 on the odd ones, by the same amount, and neither is better on
    average than the baseline's curve. Chosen on all prompts, the best β seems to lead the baseline by 0.05; chosen
    on the other half, each half is measured at the β that is worse there, and the lead is gone."""
    rows = (_two_beta_rows("method", 0.1, lambda s, p: 0.1 * (p % 2 == 0))
            + _two_beta_rows("method", 0.2, lambda s, p: 0.1 * (p % 2 == 1))
            + _two_beta_rows("base", 0.1, lambda s, p: 0))
    same = matched_kl_comparison(rows, "high", "method", "base", 1.0, 0.01)
    assert same["diff"] == pytest.approx(0.05)
    elsewhere = readings.beta_chosen_elsewhere({"frontiers": rows}, dict(COMPARISON, beta=same["beta"]))
    assert elsewhere["diff"] == pytest.approx(0.0, abs=1e-12)
    assert elsewhere["betas"] == [(0.2, 0.1), (0.1, 0.1)] * 5  # each seed's even half at the odd half's choice


def test_a_beta_lucky_on_one_seed_loses_the_lead_it_buys_when_chosen_on_the_other_seeds():
    """β 0.1 gains 0.1 on seed 0 alone, β 0.2 gains 0.01 on every seed. On all seeds β 0.1 wins (0.02 on average);
    chosen without seed 0, seed 0 is read at β 0.2 (+0.01), and the other seeds, which choose with seed 0, at β 0.1
    (0): the lead shrinks from 0.02 to 0.002."""
    rows = (_two_beta_rows("method", 0.1, lambda s, p: 0.1 * (s == 0))
            + _two_beta_rows("method", 0.2, lambda s, p: 0.01) + _two_beta_rows("base", 0.1, lambda s, p: 0))
    same = matched_kl_comparison(rows, "high", "method", "base", 1.0, 0.01)
    assert (same["beta"], same["diff"]) == (0.1, pytest.approx(0.02))
    elsewhere = readings.beta_chosen_elsewhere({"frontiers": rows}, dict(COMPARISON, beta=same["beta"]))
    assert elsewhere["diff"] == pytest.approx(0.002)


def test_beta_chosen_elsewhere_reads_the_seeds_every_beta_ran_and_says_when_no_beta_reaches():
    """A sweep's second β ran on three seeds of five, as on `smoke`: the best-of-β reading is made on those three
    seeds, as the record's is, not on all five with the second β left out. A budget no β reaches on those seeds is
    an error that names the side, the budget and the seeds."""
    rows = (_two_beta_rows("method", 0.1, lambda s, p: 0.0) + _two_beta_rows("method", 0.2, lambda s, p: 0.01, range(3))
            + _two_beta_rows("base", 0.1, lambda s, p: 0))
    three = [r for r in rows if r["seed"] < 3]
    same = matched_kl_comparison(three, "high", "method", "base", 1.0, 0.01)
    assert (same["beta"], same["n_seeds"]) == (0.2, 3)
    elsewhere = readings.beta_chosen_elsewhere({"frontiers": rows}, dict(COMPARISON, beta=same["beta"]))
    assert elsewhere["n_seeds"] == 3 and elsewhere["diff"] == pytest.approx(0.01)
    with pytest.raises(ValueError, match=r"no β of 'method' reaches KL 2.5 on every seed \[0, 1, 2\]"):
        readings.beta_chosen_elsewhere({"frontiers": rows}, dict(COMPARISON, beta=0.2, kl=2.5))
    with pytest.raises(ValueError, match=r"no β of 'method' reaches KL 1 on every seed \[\]"):  # a record without rows
        readings.beta_chosen_elsewhere({"frontiers": []}, dict(COMPARISON, beta=0.2))


def test_reading_beyond_the_shortest_seed_goes_as_far_as_enough_seeds_reach_and_reads_those_seeds():
    """Seed s moves to KL s + 1 on both sides, and the method's reward rises faster (0.3·√KL against 0.2·√KL). A
    record reads to KL 1, where every seed is; three seeds reach KL 3, and there the difference is 0.1·√3."""
    def rows(method, slope):
        return [{"setting": "high", "method": method, "seed": s, "beta": 0.1, "step": k, "kl": float(k),
                 "reward": 0.4 + slope * math.sqrt(k), "prompt_rewards": [0.4 + slope * math.sqrt(k)] * 4}
                for s in range(5) for k in range(s + 2)]

    metrics = {"frontiers": rows("method", 0.3) + rows("base", 0.2)}
    c = {"setting": "high", "method": "method", "baseline": "base", "beta": 0.1, "baseline_beta": 0.1, "kl": 1.0,
         "metric": "reward", "matters": 0.01}
    far = readings.reading_beyond_shortest_seed(metrics, c, 3)
    assert (far["kl"], far["n_seeds"]) == (3.0, 3)
    assert far["diff"] == pytest.approx(0.1 * math.sqrt(3))
    assert far["diff_same_seeds_at_recorded_kl"] == pytest.approx(0.1)  # those three seeds at the record's KL 1
    with pytest.raises(ValueError, match="fewer than the 6"):
        readings.reading_beyond_shortest_seed(metrics, c, 6)
    # the committed records: each comparison at 5, 4 and 3 seeds, each further out than the last
    rows_out = readings.beyond_shortest_seed(summary.records(committed_only=True))
    assert rows_out and {r["n_seeds"] for r in rows_out} >= {3, 4, 5}
    for five, four, three in zip(*[iter(rows_out)] * 3):
        assert five["n_seeds"] >= 5 and (four["n_seeds"], three["n_seeds"]) == (4, 3)
        assert five["kl"] <= four["kl"] <= three["kl"], five
