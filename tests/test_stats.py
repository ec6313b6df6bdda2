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
