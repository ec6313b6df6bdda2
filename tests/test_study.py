"""The study skeleton's comparisons: paired by seed and unit, grouped by prompt, and verdicts that can fail."""

import numpy as np
import pandas as pd
import pytest

from apo_utils.skeleton import paired_comparison, verdict


def _runs(effect: float, n_prompts=200, seeds=(0, 1, 2), rng=None):
    rng = rng or np.random.default_rng(0)
    rows = []
    for s in seeds:
        base = rng.normal(0.3, 0.4, n_prompts)  # prompts differ a lot; the pairing removes that
        for m, shift in (("dpo", 0.0), ("madpo", effect)):
            r = base + shift + rng.normal(0, 0.05, n_prompts)
            correct = (rng.random(2 * n_prompts) < 0.6 + shift).astype(float)
            rows.append({"setting": "high", "seed": s, "method": m, "prompt_rewards": r.tolist(),
                         "test_correct": correct.tolist()})
    return pd.DataFrame(rows)


def test_paired_comparison_finds_an_effect_and_its_absence():
    sets = {"test": [{"prompt": f"p{i // 2}"} for i in range(400)]}
    on = paired_comparison(_runs(0.05), "high", "reward", "madpo", "dpo")
    assert on["ci95"][0] > 0 and on["diff"] == pytest.approx(0.05, abs=0.01) and on["n_seeds"] == 3
    assert on["n_units"] == 200 and verdict(on) == "higher"
    off = paired_comparison(_runs(0.0), "high", "reward", "madpo", "dpo")
    assert off["ci95"][0] < 0 < off["ci95"][1] and verdict(off).startswith("no difference")
    acc = paired_comparison(_runs(0.1), "high", "test_accuracy", "madpo", "dpo", sets)
    assert acc["n_groups"] == 200 and acc["n_units"] == 400 and acc["ci95"][0] > 0
    # the reverse comparison is the mirror image
    rev = paired_comparison(_runs(0.05), "high", "reward", "dpo", "madpo")
    assert rev["diff"] == pytest.approx(-on["diff"])


def test_verdict_says_not_resolved_when_the_interval_is_wide():
    assert verdict({"ci95": [-0.08, 0.05]}) == "not resolved"
    assert verdict({"ci95": [-0.02, 0.02]}).startswith("no difference")
    assert verdict({"ci95": [-0.09, -0.01]}) == "lower"


def test_a_missing_baseline_is_named():
    runs = _runs(0.0)
    with pytest.raises(ValueError, match="no seed has both 'madpo' and 'ipo' in setting 'high'"):
        paired_comparison(runs, "high", "reward", "madpo", "ipo")


def test_held_out_pairs_are_a_fixed_sample_turned_to_agree_with_the_truth():
    from apo_utils.skeleton import Study
    rng = np.random.default_rng(1)
    study = Study.__new__(Study)  # only the pairs matter here
    study.pairs = {q: {"test": [{"prompt": f"{q}{i}", "chosen": f"c{i}", "rejected": f"r{i}",
                                 "true_margin": float(rng.normal())} for i in range(50)]} for q in ("high", "low")}
    a, b = study.held_out_pairs(30), study.held_out_pairs(30)
    assert a == b and len(a) == 30 and len({r["prompt"] for r in a}) == 30
    assert all(r["true_margin"] >= 0 for r in a)
    turned = [r for r in a if r["chosen"].startswith("r")]  # a pair whose label disagreed with the truth is swapped
    assert turned and all(r["rejected"] == "c" + r["chosen"][1:] for r in turned)
    assert {r["prompt"][:3] for r in a} >= {"hig", "low"} and len(study.held_out_pairs(500)) == 100
