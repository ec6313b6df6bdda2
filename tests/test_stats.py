"""paired_bootstrap: the interval covers the truth at about the nominal rate, and grouping widens it."""

import numpy as np
import pytest

from apo_utils.stats import paired_bootstrap


def test_coverage_and_grouping():
    rng = np.random.default_rng(0)
    hits = 0
    for k in range(200):
        a = rng.normal(0.1, 1.0, 300)
        b = rng.normal(0.0, 1.0, 300)
        r = paired_bootstrap(a, b, n_boot=1000, seed=k)
        hits += r["ci95"][0] <= 0.1 <= r["ci95"][1]
    assert 0.90 <= hits / 200 <= 0.99  # nominal 0.95
    # the same 300 differences in 30 groups of 10 identical values: far fewer independent units, wider interval
    d = np.repeat(rng.normal(0, 1, 30), 10)
    wide = paired_bootstrap(d, np.zeros(300), groups=np.repeat(np.arange(30), 10))
    narrow = paired_bootstrap(d, np.zeros(300))
    assert wide["ci95"][1] - wide["ci95"][0] > 2 * (narrow["ci95"][1] - narrow["ci95"][0])
    assert wide["n_groups"] == 30 and narrow["n"] == 300


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match="groups has 2 entries for 3 pairs"):
        paired_bootstrap([1, 2, 3], [0, 0, 0], groups=[0, 1])
    with pytest.raises(ValueError, match="one non-zero length"):
        paired_bootstrap([], [])


def test_seeds_by_units_bootstrap_counts_seed_and_unit_chance():
    from apo_utils.stats import seeds_by_units_bootstrap

    rng = np.random.default_rng(1)
    # a true difference of 0.1; each seed shifts all its units together (training luck), units add their own noise
    hits, widths = 0, []
    for k in range(150):
        d = 0.1 + rng.normal(0, 0.05, (5, 1)) + rng.normal(0, 0.5, (5, 200))
        r = seeds_by_units_bootstrap(d, n_boot=1000, seed=k)
        hits += r["ci95"][0] <= 0.1 <= r["ci95"][1]
        widths.append(r["half_width"])
    assert 0.85 <= hits / 150 <= 1.0  # 5 seeds make the seed part coarse: near-nominal, not exact
    # the mean is the plain mean; resampling units alone (seed effect ignored) gives a narrower interval
    d = 0.1 + rng.normal(0, 0.2, (3, 1)) + rng.normal(0, 0.5, (3, 300))
    both = seeds_by_units_bootstrap(d)
    units_only = paired_bootstrap(d.mean(0), np.zeros(300))
    assert both["diff"] == pytest.approx(d.mean())
    assert both["half_width"] > 1.5 * (units_only["ci95"][1] - units_only["ci95"][0]) / 2
    # grouped units: 30 prompts of 10 identical pairs are 30 units, not 300
    g = np.repeat(np.arange(30), 10)
    d = np.repeat(rng.normal(0, 1, (1, 30)), 10, axis=1) + np.zeros((3, 1))
    assert seeds_by_units_bootstrap(d, groups=g)["half_width"] > 2 * seeds_by_units_bootstrap(d)["half_width"]
    with pytest.raises(ValueError, match="groups has 2 entries for 300 units"):
        seeds_by_units_bootstrap(d, groups=[0, 1])
    with pytest.raises(ValueError, match="non-finite"):
        seeds_by_units_bootstrap(np.array([[0.0, np.nan]]))


def test_margins_against_the_truth_per_pair_and_on_average():
    from apo_utils.calibration import against_truth, sigmoid

    d = np.array([2.0, -1.0, 0.5, 0.0])
    truth = np.array([1.0, 1.0, -1.0, 1.0])
    p_true = np.array([0.9, 0.6, 0.3, 0.5])
    out = against_truth(d, truth, p_true)
    assert out["test_truth_correct"] == [1.0, 0.0, 0.0, 0.0]  # a margin of exactly 0 ranks nothing: sign 0
    np.testing.assert_allclose(out["test_prob_error_units"], np.abs(sigmoid(d) - p_true))
    assert out["truth_accuracy"] == 0.25 and out["prob_error"] == pytest.approx(np.mean(np.abs(sigmoid(d) - p_true)))
    assert 0 <= out["ece"] <= 1 and len(out["p"]) == 4
