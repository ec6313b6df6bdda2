"""ranking.py and calibration.py: implicit margins, accuracy, gradient allocation, reliability and ECE."""

import numpy as np
import pandas as pd
import pytest
import torch

from apo_utils import losses as L
from apo_utils.calibration import expected_calibration_error, reliability, sigmoid, symmetrised
from apo_utils.ranking import (correct, effort_split, gradient_weights, implicit_margin, oriented, ranking_accuracy,
                               swap_sides)

rng = np.random.default_rng(0)


def _logps(n=32):
    return {"chosen": rng.normal(-40, 5, n), "rejected": rng.normal(-42, 5, n),
            "chosen_len": rng.integers(5, 30, n).astype(float), "rejected_len": rng.integers(5, 30, n).astype(float)}


def test_implicit_margin_follows_each_methods_reward():
    pol, ref = _logps(), _logps()
    h = implicit_margin("dpo", pol, ref)
    np.testing.assert_allclose(h, (pol["chosen"] - ref["chosen"]) - (pol["rejected"] - ref["rejected"]))
    hb = implicit_margin("amapo", pol)  # reference-free: length-normalised, no reference needed
    np.testing.assert_allclose(hb, pol["chosen"] / pol["chosen_len"] - pol["rejected"] / pol["rejected_len"])
    with pytest.raises(ValueError, match="reference"):
        implicit_margin("dpo", pol)


def test_ranking_accuracy_counts_ties_as_half_and_uses_the_truth_sign():
    assert ranking_accuracy([1.0, -1.0, 0.0, 2.0]) == pytest.approx((1 + 0 + 0.5 + 1) / 4)
    assert ranking_accuracy([1.0, 1.0], truth_sign=[1.0, -0.3]) == 0.5
    assert ranking_accuracy(np.zeros(7)) == 0.5  # the untrained DPO policy: a coin flip, not 0


def test_correct_is_one_right_zero_wrong_half_on_a_tie():
    """The kit's one tie rule, for arrays, lists and tensors alike."""
    expected = [1.0, 0.0, 0.5, 1.0, 0.0, 0.5]
    margins = [2.0, -0.1, 0.0, 1e-30, -1e-30, -0.0]
    for given in (margins, np.array(margins), torch.tensor(margins), torch.tensor(margins, dtype=torch.bfloat16)):
        out = correct(given)
        assert isinstance(out, np.ndarray) and out.dtype == np.float64 and out.tolist() == expected
    assert correct(torch.zeros(3, requires_grad=True)).tolist() == [0.5] * 3  # a live tensor: no grad needed
    assert correct([float("nan")]).tolist() == [0.0]
    assert correct(5.0).shape == ()
    m = np.array([1.0, -1.0, 0.0, 2.0])
    assert correct(m).mean() == ranking_accuracy(m)  # the same rule as the accuracy


def test_oriented_and_swap_sides():
    rows = [{"prompt": "p", "chosen": "a", "rejected": "b", "true_margin": -0.4},
            {"prompt": "p", "chosen": "c", "rejected": "d", "true_margin": 0.2}]
    out, flip = oriented(rows)
    assert flip.tolist() == [True, False]
    assert (out[0]["chosen"], out[0]["rejected"], out[0]["true_margin"]) == ("b", "a", 0.4) and out[1] is rows[1]
    lp = _logps(2)
    sw = swap_sides(lp, [True, False])
    assert sw["chosen"][0] == lp["rejected"][0] and sw["chosen_len"][0] == lp["rejected_len"][0]
    assert sw["chosen"][1] == lp["chosen"][1]


@pytest.mark.parametrize("name,kw", [("dpo", {"beta": 0.1}), ("ipo", {"beta": 0.1}),
                                     ("simpo", {"beta": 2.0}), ("amapo", {"beta": 2.0})])
def test_gradient_weights_are_the_autograd_derivative_of_each_pairs_loss(name, kw):
    """|d loss_i / d h_i| computed by the loss, checked against autograd on the loss written from papers.md."""
    pol, ref = _logps(), _logps()
    g = gradient_weights(name, pol, None if name in ("simpo", "amapo") else ref, **kw)
    t = lambda k, d=pol: torch.tensor(d[k], dtype=torch.float64)  # noqa: E731
    if name in ("simpo", "amapo"):
        h = (t("chosen") / t("chosen_len") - t("rejected") / t("rejected_len")).requires_grad_()
    else:
        h = ((t("chosen") - t("chosen", ref)) - (t("rejected") - t("rejected", ref))).requires_grad_()
    b = kw["beta"]
    if name == "dpo":
        loss = -torch.nn.functional.logsigmoid(b * h)
    elif name == "ipo":
        loss = (h - 1 / (2 * b)) ** 2
    elif name == "simpo":
        loss = -torch.nn.functional.logsigmoid(b * h - 0.5 * b)
    else:  # AMaPO: margin from detached batch statistics
        hd = h.detach()
        mu, s = hd.mean(), hd.std()
        m = torch.where(hd < mu, b * torch.exp((mu - hd) / s * mu), torch.zeros_like(hd))
        loss = -torch.nn.functional.logsigmoid(b * h - m)
    (grad,) = torch.autograd.grad(loss.sum(), h)
    np.testing.assert_allclose(g, grad.abs().numpy(), rtol=1e-4, atol=1e-6)  # the losses compute in float32


def test_gradient_weights_for_margin_losses_and_effort_split():
    pol, ref = _logps(16), _logps(16)
    m = rng.normal(size=16)
    g = gradient_weights("madpo", pol, ref, margin=m, beta=0.1)
    base = gradient_weights("dpo", pol, ref, beta=0.1)
    np.testing.assert_allclose(g, base * L.madpo_weight(torch.tensor(m, dtype=torch.float64)).numpy(), rtol=1e-6)
    split = effort_split(np.array([1.0, 3.0, 0.0, 4.0]), np.array([True, False, True, False]))
    assert split["share_on_correct"] == pytest.approx(1 / 8) and split["share_on_wrong"] == pytest.approx(7 / 8)
    assert split["mean_on_wrong"] == 3.5 and split["fraction_correct"] == 0.5


def test_calibration_ece_small_when_calibrated_large_when_overconfident():
    p = rng.uniform(0, 1, 20000)
    y = (rng.uniform(0, 1, p.size) < p).astype(float)
    assert expected_calibration_error(p, y) < 0.02
    over = np.where(p > 0.5, 0.99, 0.01)  # same ranking, claims near-certainty
    assert expected_calibration_error(over, y) > 0.2
    bins = reliability(p, y, 5)
    assert len(bins) == 5 and sum(b["count"] for b in bins) == p.size
    ps, ys = symmetrised([0.8], [1.0])
    assert ps.tolist() == pytest.approx([0.8, 0.2]) and ys.tolist() == [1.0, 0.0]
    np.testing.assert_allclose(sigmoid([-800.0, 0.0, 800.0]), [0.0, 0.5, 1.0])


def test_calibration_rejects_bad_input():
    with pytest.raises(ValueError, match="length"):
        expected_calibration_error([0.5, 0.5], [1.0])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        expected_calibration_error([1.5], [1.0])
    with pytest.raises(ValueError, match="finite"):
        reliability([float("nan")], [1.0])
    with pytest.raises(ValueError, match="n_bins"):
        reliability([0.5], [1.0], n_bins=0)


def test_ece_of_a_resampled_set_from_bin_residuals_matches_rebuilding_it():
    from apo_utils.calibration import _bin_residuals

    p = np.concatenate([rng.uniform(0, 1, 300), [0.0, 0.5, 1.0, 0.1, 0.9]])  # bin edges and a pair in one bin both ways
    for n_bins in (10, 7):
        r = _bin_residuals(p, n_bins)
        assert np.abs(r.sum(0)).sum() / (2 * p.size) == pytest.approx(
            expected_calibration_error(*symmetrised(p, np.ones_like(p)), n_bins), abs=1e-12)
        w = rng.integers(0, 4, p.size).astype(float)  # a bootstrap draw: pair i taken w_i times
        repeated = np.repeat(p, w.astype(int))
        assert np.abs(w @ r).sum() / (2 * w.sum()) == pytest.approx(
            expected_calibration_error(*symmetrised(repeated, np.ones_like(repeated)), n_bins), abs=1e-12)


def test_ece_difference_sees_overconfidence_and_nothing_between_equals():
    from apo_utils.calibration import ece_difference, paired_ece

    truth = rng.uniform(0.05, 0.95, (5, 400))  # P(the first response wins) of each pair, for 5 seeds' models
    won = rng.uniform(size=truth.shape) < truth  # the label: which response was marked chosen
    calibrated = truth  # a model predicting the truth, and one just as right on order but sure of everything
    as_labelled = lambda q: np.where(won, q, 1 - q)  # noqa: E731
    sure = np.where(truth > 0.5, 0.99, 0.01)
    groups = np.repeat(np.arange(100), 4)
    c = ece_difference(as_labelled(sure), as_labelled(calibrated), groups)
    expected = np.mean([expected_calibration_error(*symmetrised(x, np.ones_like(x)))
                        - expected_calibration_error(*symmetrised(y, np.ones_like(y)))
                        for x, y in zip(as_labelled(sure), as_labelled(calibrated))])
    assert c["diff"] == pytest.approx(expected) and c["diff"] > 0.2
    assert 0 < c["ci95"][0] < c["diff"] < c["ci95"][1] and 0 < c["seed_ci95"][0]
    assert (c["n_seeds"], c["n_units"], c["n_groups"]) == (5, 400, 100)
    same = ece_difference(as_labelled(sure), as_labelled(sure), groups)
    assert same["diff"] == 0 and same["ci95"] == [0.0, 0.0]
    one = ece_difference(as_labelled(sure)[:1], as_labelled(calibrated)[:1])
    assert one["seed_ci95"] == [-np.inf, np.inf] and one["ci95"][0] > 0  # one seed: the bootstrap alone is bounded
    with pytest.raises(ValueError, match="groups has 3 entries for 400 pairs"):
        ece_difference(sure, truth, [0, 1, 2])
    with pytest.raises(ValueError, match="one non-empty shape"):
        ece_difference(sure, truth[:, :10])
    runs = pd.DataFrame([{"setting": "rm", "method": m, "seed": s, "p": as_labelled(q)[s].tolist()}
                         for s in range(5) for m, q in (("sure", sure), ("calibrated", calibrated))
                         if not (m == "sure" and s == 4)])  # seed 4 only for one side: compared on seeds 0-3
    entry = paired_ece(runs, "rm", "sure", "calibrated", groups, matters=0.01)
    assert entry["metric"] == "test_ece" and entry["n_seeds"] == 4 and entry["matters"] == 0.01
    with pytest.raises(ValueError, match="no seed has both"):
        paired_ece(runs, "rm", "sure", "missing")


def test_ece_difference_bootstrap_is_seeds_and_prompt_groups_resampled_with_both_ecs_recomputed():
    from apo_utils.calibration import ece_difference

    a, b = rng.uniform(0, 1, (3, 30)), rng.uniform(0, 1, (3, 30))
    groups = np.repeat(np.arange(10), 3)[rng.permutation(30)]  # a prompt's pairs scattered through the set
    n_boot = 40
    got = ece_difference(a, b, groups, n_boot=n_boot, seed=7)
    # the same draws, done the slow way: the drawn seeds, and on each the drawn prompts' pairs repeated
    draw = np.random.default_rng(7)
    s_pick, g_pick = draw.integers(0, 3, (n_boot, 3)), draw.integers(0, 10, (n_boot, 10))

    def ece(p):
        return expected_calibration_error(*symmetrised(p, np.ones_like(p)))

    boots = []
    for seeds, prompts in zip(s_pick, g_pick):
        pairs = np.concatenate([np.flatnonzero(groups == g) for g in prompts])
        boots.append(np.mean([ece(a[s][pairs]) - ece(b[s][pairs]) for s in seeds]))
    np.testing.assert_allclose(got["ci95"], np.percentile(boots, [2.5, 97.5]), atol=1e-12)
    assert got["n_groups"] == 10
