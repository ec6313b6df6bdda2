"""A study's comparisons (stats.paired_comparison): paired by seed and unit, grouped by prompt, verdicts that can
fail; and the Study's fixed samples of held-out pairs."""

import numpy as np
import pandas as pd
import pytest

from apo_utils.stats import paired_comparison, verdict


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


def test_a_paired_comparison_carries_the_interval_over_seeds_and_its_margin():
    """Beside the crossed bootstrap, the t interval over per-seed mean differences: a verdict takes the wider, so
    seeds that disagree keep it from 'higher' however many prompts agree within each seed."""
    from apo_utils.stats import seed_interval, verdict_cautious
    runs = _runs(0.05)
    c = paired_comparison(runs, "high", "reward", "madpo", "dpo", matters=0.01)
    per_seed = [np.mean(np.subtract(*(runs[(runs.seed == s) & (runs.method == m)].prompt_rewards.iloc[0]
                                      for m in ("madpo", "dpo")))) for s in (0, 1, 2)]
    assert c["seed_ci95"] == pytest.approx(seed_interval(per_seed)["ci95"]) and c["matters"] == 0.01
    assert verdict_cautious(c) == "higher"
    # seeds that disagree in sign: each seed's prompts agree tightly, the seeds do not
    mixed = runs.copy()
    for s, shift in ((0, 0.2), (1, -0.1), (2, 0.0)):
        i = mixed.index[(mixed.seed == s) & (mixed.method == "madpo")][0]
        mixed.at[i, "prompt_rewards"] = (np.asarray(mixed.at[i, "prompt_rewards"]) + shift).tolist()
    wide = paired_comparison(mixed, "high", "reward", "madpo", "dpo", matters=0.01)
    assert wide["seed_ci95"][1] - wide["seed_ci95"][0] > wide["ci95"][1] - wide["ci95"][0]
    assert verdict_cautious(wide) == "not resolved"
    assert "matters" not in paired_comparison(runs, "high", "reward", "madpo", "dpo")  # the verdict's default then
    # the sentence a notebook prints shows the interval its verdict reads, not the narrower bootstrap alone
    from apo_utils.stats import cautious_interval, findings
    lo, hi = cautious_interval(wide)
    assert f"[{lo:+.3f}, {hi:+.3f}], not resolved" in findings([wide])


def test_verdict_says_not_resolved_when_the_interval_is_wide():
    assert verdict({"ci95": [-0.08, 0.05]}) == "not resolved"
    assert verdict({"ci95": [-0.02, 0.02]}).startswith("no difference")
    assert verdict({"ci95": [-0.09, -0.01]}) == "lower"


def test_a_missing_baseline_is_named():
    runs = _runs(0.0)
    with pytest.raises(ValueError, match="no seed has both 'madpo' and 'ipo' in setting 'high'"):
        paired_comparison(runs, "high", "reward", "madpo", "ipo")


def test_held_out_pairs_are_a_fixed_sample_turned_to_agree_with_the_truth():
    from apo_utils.study import Study
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


def test_held_out_pairs_as_labelled_of_one_tier_continue_a_random_sequence():
    """04 draws its held-out pairs of one tier as labelled, then its training probe from the same generator; 05 draws
    both tiers as labelled: the same pairs the notebooks drew by hand."""
    from apo_utils.study import Study, sample_rows

    study = Study.__new__(Study)
    study.pairs = {q: {"test": [{"prompt": f"{q}{i}", "chosen": "c", "rejected": "r", "true_margin": -1.0}
                                for i in range(40)]} for q in ("high", "low")}
    rng = np.random.default_rng(0)
    one = study.held_out_pairs(10, tiers=["high"], turned=False, rng=rng)
    probe = sample_rows(list(range(30)), 5, rng)
    by_hand = np.random.default_rng(0)
    rows = study.pairs["high"]["test"]
    assert one == [rows[i] for i in sorted(by_hand.choice(40, 10, replace=False))]
    assert probe == sorted(by_hand.choice(30, 5, replace=False).tolist())
    assert all(r["chosen"] == "c" for r in one)  # as labelled: not turned
    both = study.held_out_pairs(80, turned=False)
    assert len(both) == 80 and {r["prompt"][:3] for r in both} == {"hig", "low"}


def test_frontier_rows_come_from_the_runs_that_measured_them():
    """A frame of runs where some measured reward and KL along training (a β-sweep run names its tier) and some
    measured none (a reward model beside the policies: NaN in the frame)."""
    from apo_utils.study import Study

    point = lambda step, kl: {"step": step, "kl": kl, "reward": 0.1 * step, "prompt_rewards": [0.1 * step]}  # noqa: E731
    runs = pd.DataFrame([
        {"setting": "high", "method": "dpo", "seed": 0, "beta": 0.1, "frontier": [point(0, 0.0), point(4, 1.0)]},
        {"setting": "high, β×2", "tier": "high", "method": "dpo", "seed": 0, "beta": 0.2, "frontier": [point(0, 0.0)]},
        {"setting": "reward model", "method": "bradley_terry", "seed": 0},
    ])
    rows = Study.frontier_rows(runs)
    assert [(r["setting"], r["beta"], r["step"]) for r in rows] == [("high", 0.1, 0), ("high", 0.1, 4), ("high", 0.2, 0)]
    assert rows[1]["kl"] == 1.0 and rows[1]["prompt_rewards"] == [0.4]


def test_the_naturalness_margin_is_a_fifth_of_the_starts_spread_between_prompts():
    """Set from the metric's own spread, never from how far one method moved (which can be about 0)."""
    from types import SimpleNamespace

    import numpy as np
    import pytest

    from apo_utils.study import Study

    values = [-2.9, -2.4, -2.7, -3.1, -2.5]
    start = SimpleNamespace(ref={"prompt_start_logp_per_token": values})
    assert Study.naturalness_margin(start) == pytest.approx(0.2 * np.std(values, ddof=1))
    with pytest.raises(ValueError, match="1 prompt"):
        Study.naturalness_margin(SimpleNamespace(ref={"prompt_start_logp_per_token": [-2.0]}))
