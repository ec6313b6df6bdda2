"""Matched-KL comparisons: reward bought by moving further from the start is not a better method.

Synthetic frontier rows where the truth is known: reward r = 0.4 + a·sqrt(KL) per prompt, plus a shared prompt
effect, a small per-seed shift and per-checkpoint noise."""

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from apo_utils.stats import (  # noqa: E402
    PER_PROMPT, cautious_interval, common_budgets, frontier, matched_kl_comparison, reward_at_kl, seed_interval,
    seeds_by_units_bootstrap, verdict, verdict_cautious,
)

N_PROMPTS, N_EARLY = 200, 150  # intermediate checkpoints measure the first 150 prompts, the final one all 200
PROMPT_EFFECT = np.random.default_rng(99).normal(0, 0.1, N_PROMPTS)  # the same held-out prompts for every run


def synthetic_rows(method, a, kl_per_step, seeds=range(5), betas=(0.1, 0.2), steps=10, noise=0.03,
                   setting="high", rng_seed=0):
    """One policy per (beta, seed); KL grows linearly with the step, more slowly for a larger beta; reward depends
    on KL alone, so every beta lies on the same true frontier."""
    rng = np.random.default_rng(rng_seed)
    rows = []
    for beta in betas:
        for seed in seeds:
            shift = rng.normal(0, 0.003)
            for step in range(steps + 1):
                kl = kl_per_step * step * 0.1 / beta
                n = N_PROMPTS if step == steps else N_EARLY
                pr = 0.4 + a * math.sqrt(kl) + PROMPT_EFFECT[:n] + shift + rng.normal(0, noise, n)
                rows.append({"setting": setting, "method": method, "seed": seed, "beta": beta, "step": step,
                             "kl": kl, "reward": float(pr.mean()), "prompt_rewards": pr.tolist()})
    return rows


def final_difference(rows, method, baseline, beta=0.1):
    """Paired difference of the final checkpoints (same seed, same prompts): the comparison at a fixed step."""
    final = {(r["method"], r["seed"]): np.array(r["prompt_rewards"]) for r in rows
             if r["beta"] == beta and r["step"] == max(q["step"] for q in rows)}
    seeds = sorted(s for m, s in final if m == method)
    return seeds_by_units_bootstrap(np.array([final[(method, s)] - final[(baseline, s)] for s in seeds]))


def test_moving_further_is_not_better_at_matched_kl():
    # the same reward-KL curve (a = 0.5), but "fast" moves twice as far from the start per step
    rows = synthetic_rows("fast", 0.5, 0.1, rng_seed=1) + synthetic_rows("slow", 0.5, 0.05, rng_seed=2)
    at_final = final_difference(rows, "fast", "slow")
    assert at_final["diff"] > 0.1 and verdict(at_final) == "higher"  # the trap: at a fixed step it looks better
    budgets = common_budgets(rows, "high", ["fast", "slow"])
    assert budgets == [0.25, 0.5]  # slow at beta 0.1 reaches 0.05 * 10 = 0.5 on every seed
    for budget in budgets:
        c = matched_kl_comparison(rows, "high", "fast", "slow", budget)
        assert abs(c["diff"]) < 0.015
        assert verdict_cautious(c) == "no difference (within ±0.03)", (budget, c)
        assert c["n_seeds"] == 5 and c["n_units"] == N_EARLY  # truncated to the prompts every checkpoint measured
        assert c["kl"] == budget and c["metric"] == "reward" and c["matters"] == 0.03
        assert c["beta"] in (0.1, 0.2) and c["baseline_beta"] in (0.1, 0.2)
    # at the top budget only beta 0.1 of slow reaches it: the chosen beta is the one that reaches it
    assert matched_kl_comparison(rows, "high", "fast", "slow", 0.5)["baseline_beta"] == 0.1


def test_a_steeper_frontier_is_higher_at_matched_kl():
    rows = synthetic_rows("steep", 0.8, 0.05, rng_seed=3) + synthetic_rows("slow", 0.5, 0.05, rng_seed=4)
    c = matched_kl_comparison(rows, "high", "steep", "slow", 0.5)
    assert c["diff"] == pytest.approx(0.3 * math.sqrt(0.5), abs=0.02)
    assert verdict_cautious(c) == "higher"
    assert verdict_cautious(matched_kl_comparison(rows, "high", "slow", "steep", 0.25)) == "lower"


def test_one_seed_is_not_resolved_however_narrow_the_bootstrap():
    rows = (synthetic_rows("steep", 0.8, 0.05, seeds=[0], rng_seed=5)
            + synthetic_rows("slow", 0.5, 0.05, seeds=[0], rng_seed=6))
    c = matched_kl_comparison(rows, "high", "steep", "slow", 0.5)
    assert verdict(c) == "higher"  # units alone: one seed resampled is no seed spread at all
    assert c["seed_ci95"] == [-math.inf, math.inf] and c["seed_half_width"] == math.inf
    assert cautious_interval(c) == [-math.inf, math.inf]
    assert verdict_cautious(c) == "not resolved"


def test_reward_at_kl_interpolates_over_common_prompts():
    curve = [{"kl": 0.0, "prompt_rewards": [0.0, 0.0, 0.0, 0.0]},
             {"kl": 0.2, "prompt_rewards": [1.0, 2.0, 3.0]},
             {"kl": 0.6, "prompt_rewards": [2.0, 4.0, 6.0, 8.0]}]
    np.testing.assert_allclose(reward_at_kl(curve, 0.0), [0, 0, 0, 0])  # the start: its full list
    np.testing.assert_allclose(reward_at_kl(curve, 0.05), [0.25, 0.5, 0.75])  # 3 prompts in common, weight 1/4
    np.testing.assert_allclose(reward_at_kl(curve, 0.2), [1.0, 2.0, 3.0])  # exactly a checkpoint
    np.testing.assert_allclose(reward_at_kl(curve, 0.5), [1.75, 3.5, 5.25])  # weight 3/4 on the last
    np.testing.assert_allclose(reward_at_kl(curve, 0.6), [2.0, 4.0, 6.0])  # truncated to the common 3
    assert reward_at_kl(curve, 0.61) is None  # never reached
    # the first time along training the KL reaches the budget counts, not a later one
    wobbly = [{"kl": 0.0, "prompt_rewards": [0.0]}, {"kl": 0.4, "prompt_rewards": [4.0]},
              {"kl": 0.2, "prompt_rewards": [9.0]}, {"kl": 0.8, "prompt_rewards": [9.0]}]
    np.testing.assert_allclose(reward_at_kl(wobbly, 0.3), [3.0])


def test_seed_interval_by_hand():
    r = seed_interval([0.1, 0.2, 0.3])
    half = 4.303 * 0.1 / math.sqrt(3)  # sd 0.1, t(2) = 4.303
    assert r["diff"] == pytest.approx(0.2) and r["n_seeds"] == 3
    assert r["half_width"] == pytest.approx(half)
    assert r["ci95"] == pytest.approx([0.2 - half, 0.2 + half])
    # 12 seeds: df 11 lies between the table's 10 and 15, the smaller df (the wider interval) is used
    v = np.arange(12.0)
    assert seed_interval(v)["half_width"] == pytest.approx(2.228 * v.std(ddof=1) / math.sqrt(12))
    one = seed_interval([0.5])
    assert one["ci95"] == [-math.inf, math.inf] and one["half_width"] == math.inf
    with pytest.raises(ValueError, match="at least one"):
        seed_interval([])


def test_cautious_verdict_uses_the_hull():
    c = {"ci95": [0.01, 0.02], "seed_ci95": [-0.01, 0.05]}
    assert cautious_interval(c) == [-0.01, 0.05]
    assert verdict(c) == "higher"  # verdict itself is unchanged: the bootstrap interval alone
    assert verdict_cautious(c) == "not resolved"  # 0.05 > 0.03
    assert verdict_cautious(c, matters=0.06) == "no difference (within ±0.06)"
    assert verdict_cautious({**c, "matters": 0.06}) == "no difference (within ±0.06)"
    assert verdict_cautious({"ci95": [-0.04, -0.01]}) == "lower"  # without seed_ci95: verdict's answer
    assert verdict_cautious({"ci95": [0.01, 0.02], "seed_ci95": [0.005, 0.03]}) == "higher"


def policy(method, beta, seed, kls, setting="high"):
    return [{"setting": setting, "method": method, "seed": seed, "beta": beta, "step": i, "kl": k,
             "reward": 0.5, "prompt_rewards": [0.5, 0.5]} for i, k in enumerate(kls)]


def test_common_budgets_need_one_beta_on_every_seed():
    rows = (policy("a", 0.1, 0, [0, 0.5, 1.0]) + policy("a", 0.1, 1, [0, 0.4, 0.8])
            + policy("a", 0.2, 0, [0, 0.5]) + policy("a", 0.2, 1, [0, 0.6])
            # b: seed 0 goes far only at beta 0.1, seed 1 only at beta 0.05; one beta reaches 0.4 on both
            + policy("b", 0.1, 0, [0, 2.0]) + policy("b", 0.1, 1, [0, 0.3])
            + policy("b", 0.05, 0, [0, 0.4]) + policy("b", 0.05, 1, [0, 0.9])
            + policy("b", 0.1, 0, [0, 9.0], setting="low"))
    assert common_budgets(rows, "high", ["a", "b"]) == [0.2, 0.4]
    assert common_budgets(rows, "high", ["a"], n=3) == [0.266, 0.533, 0.8]  # rounded down, never past the reach
    assert common_budgets(rows, "high", ["a", "b", "c"]) == []  # c has no rows
    assert common_budgets(rows, "low", ["a", "b"]) == []  # a has no rows in "low"
    c = matched_kl_comparison(rows, "high", "a", "b", 0.4)
    assert c["baseline_beta"] == 0.05 and c["diff"] == pytest.approx(0.0)
    # 0.5 is reached by every seed of b with some beta, but by no single beta on both seeds: named in the error
    with pytest.raises(ValueError, match=r"'b' does not reach KL 0.5 .*setting 'high'.*'a' with 'b'"):
        matched_kl_comparison(rows, "high", "a", "b", 0.5)


def test_errors_name_what_is_missing():
    rows = policy("a", 0.1, 0, [0, 1.0]) + policy("b", 0.1, 1, [0, 1.0]) + policy("b", 0.1, 0, [0, 0.2])
    with pytest.raises(ValueError, match=r"'b' does not reach KL 0.3 on every shared seed \[0\].*'high'"):
        matched_kl_comparison(rows, "high", "a", "b", 0.3)
    with pytest.raises(ValueError, match=r"'a' does not reach KL 1.5.*comparing 'a' with 'b'"):
        matched_kl_comparison(rows, "high", "a", "b", 1.5)
    with pytest.raises(ValueError, match=r"no seed has both 'a' and 'c' in setting 'high'"):
        matched_kl_comparison(rows, "high", "a", "c", 0.1)


def test_frontier_keeps_only_non_dominated_points():
    points = [(0.5, 0.6), (0.0, 0.4), (0.2, 0.55), (0.3, 0.5), (0.2, 0.45), (0.8, 0.6), (1.0, 0.7), (0.5, 0.6)]
    assert frontier(points) == [(0.0, 0.4), (0.2, 0.55), (0.5, 0.6), (1.0, 0.7)]
    assert frontier([]) == []


def test_frontier_figure_has_a_panel_a_setting_and_a_line_a_method():
    from apo_utils.plotting import frontier_figure, label

    rows = (synthetic_rows("dpo", 0.5, 0.1, seeds=[0, 1], steps=4)
            + synthetic_rows("madpo", 0.6, 0.05, seeds=[0, 1], steps=4)
            + synthetic_rows("dpo", 0.5, 0.1, seeds=[0], steps=4, setting="low"))
    fig = frontier_figure(rows, ["high", "low"], ["dpo", "madpo"], 0.4, "true reward (VADER compound)",
                          budgets={"high": [0.1, 0.2]}, titles={"high": "high noise"})
    try:
        assert len(fig.axes) == 2
        high, low = fig.axes
        assert high.get_title() == "high noise" and low.get_title() == "low"
        ylabel = " ".join(high.get_ylabel().split())
        assert "nats" in high.get_xlabel() and ylabel.startswith("true reward (VADER compound)")
        # every point on the prompts all of them measured (the intermediate ones measured the first 150 only)
        assert f"over the {N_EARLY} prompts" in ylabel
        # wrapped short enough to stay beside the panel rather than run into the title
        assert max(len(line) for line in high.get_ylabel().splitlines()) <= 34
        ends = [c for c in high.collections if len(c.get_offsets())]
        assert ends  # the dots are drawn
        solid = [ln.get_label() for ln in high.get_lines() if ln.get_linestyle() == "-"]
        assert solid == [label("dpo"), label("madpo")]
        assert sum(ln.get_label() == "matched KL" for ln in high.get_lines()) == 2
        assert [ln.get_label() for ln in low.get_lines()] == [label("dpo")]  # madpo has no rows in "low"
        legend = [t.get_text() for t in fig.legends[0].get_texts()]
        assert legend.count("matched KL") == 1 and legend.count("DPO, β = 0.1") == 1
        # the star is the start on the checkpoints' prompts, not its reward over every prompt: the legend says so
        assert "starting policy, on the same prompts" in legend
    finally:
        plt.close(fig)


def test_a_single_seed_comparison_read_back_from_a_record_is_not_resolved():
    """One seed's t interval is (-inf, inf); a JSON record stores it as [null, null], which must stay unbounded."""
    from apo_utils.stats import cautious_interval, verdict_cautious

    c = {"ci95": [0.01, 0.05], "seed_ci95": [None, None]}
    assert cautious_interval(c) == [float("-inf"), float("inf")] and verdict_cautious(c) == "not resolved"


def test_a_second_metric_is_read_at_the_budget_on_the_policies_reward_chose():
    """Naturalness (the start's log-prob a token) at matched KL: interpolated with the same KL weights as reward,
    on the beta each side's reward picked, so both numbers describe the same policies."""
    rows = synthetic_rows("madpo", 0.20, 0.10) + synthetic_rows("dpo", 0.20, 0.10, rng_seed=1)
    for r in rows:  # logp falls with KL, 0.5 nats a token per nat for MADPO, 0.1 for DPO
        slope = 0.5 if r["method"] == "madpo" else 0.1
        r["prompt_start_logp_per_token"] = [-3.0 - slope * r["kl"]] * len(r["prompt_rewards"])
    c = matched_kl_comparison(rows, "high", "madpo", "dpo", 0.5, matters=0.01, metric="start_logp_per_token")
    assert c["metric"] == "start_logp_per_token" and c["kl"] == 0.5
    assert c["diff"] == pytest.approx(-(0.5 - 0.1) * 0.5)  # exact: linear in KL, so interpolation is exact
    assert verdict_cautious(c) == "lower"
    with pytest.raises(ValueError, match="no per-prompt values"):
        matched_kl_comparison(rows, "high", "madpo", "dpo", 0.5, metric="distinct_2")


def test_the_end_of_training_is_one_point_from_the_full_evaluation():
    """With checkpoints only, training does not measure its last step twice: the full evaluation is the last point,
    at the run's last step, whether or not the checkpoint schedule lands on it."""
    from apo_utils.policy_runs import _frontier

    track = [{"step": s, "sampled": {"kl": s / 100, "reward": 0.1, "prompt_rewards": [0.1]}} for s in (0, 32, 64, 96)]
    final = {"kl": 1.3, "reward": 0.5, "prompt_rewards": [0.5, 0.4], "n": 4, "start_logp_per_token": -3.0}
    points = _frontier(track, final, steps=125)
    assert [p["step"] for p in points] == [0, 32, 64, 96, 125]
    assert points[-1]["prompt_rewards"] == [0.5, 0.4] and points[-1]["start_logp_per_token"] == -3.0
    # a tracked run that measured its last step too (04's probes): that point is replaced, not repeated
    track.append({"step": 125, "sampled": {"kl": 1.2, "reward": 0.4, "prompt_rewards": [0.4]}})
    assert [p["step"] for p in _frontier(track, final, steps=125)] == [0, 32, 64, 96, 125]
    assert _frontier(track, final, steps=125)[-1]["kl"] == 1.3


def test_comparison_figure_says_where_each_row_was_made_and_what_the_verdict_is():
    """One panel a metric; each row names its budget or 'same steps', carries its verdict word, and a row with a
    no-difference margin shows it as a grey band (the zone the verdict is read against)."""
    import matplotlib.pyplot as plt

    from apo_utils import plotting

    base = {"setting": "high", "method": "madpo", "baseline": "dpo", "n_seeds": 5}
    rows = [dict(base, metric="reward", diff=0.11, ci95=[0.08, 0.14]),
            dict(base, metric="reward", diff=0.005, ci95=[-0.05, 0.06], seed_ci95=[-0.07, 0.07], kl=0.46,
                 matters=0.037),
            dict(base, metric="start_logp_per_token", diff=-0.001, ci95=[-0.004, 0.003], kl=0.46, matters=0.009)]
    fig = plotting.comparison_figure(rows, "test")
    try:
        reward, logp = fig.axes
        labels = [t.get_text() for t in reward.get_yticklabels()]
        assert labels[0].endswith("same steps") and "KL 0.46 nats" in labels[1]
        texts = [t.get_text() for t in reward.texts]
        assert texts == ["higher", "not resolved"]  # top row first; the wide interval cannot decide
        assert [t.get_text() for t in logp.texts] == ["no difference (within ±0.009)"]
        bands = lambda ax: [c for c in ax.collections if "Poly" in type(c).__name__]  # noqa: E731
        assert len(bands(reward)) == 1 and len(bands(logp)) == 1  # one grey band a row with a margin
        assert "nats" in logp.get_xlabel() and "reward" in reward.get_xlabel()
    finally:
        plt.close(fig)


def _committed_records_with_frontiers():
    import json
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    tracked = subprocess.run(["git", "ls-files", "figures/*/run_record.json"], cwd=root, capture_output=True,
                             text=True, check=True).stdout.split()
    records = {p: json.loads((root / p).read_text())["metrics"] for p in tracked}
    return {p: m for p, m in records.items() if m.get("frontiers")}


@pytest.mark.parametrize("path", sorted(_committed_records_with_frontiers()))
def test_every_matched_kl_verdict_of_a_committed_record_follows_from_its_own_frontier_rows(path):
    """A reader holding one run record can redo each matched-KL comparison in it: the record keeps every frontier
    row the comparison read (another notebook's included, tagged with that notebook) with its per-prompt values.
    Redone on the rows of each side's recorded beta it gives the recorded difference and both intervals; where the
    beta was chosen as the best of several (the sweep), redone on all of them it picks the same betas."""
    metrics = _committed_records_with_frontiers()[path]
    rows = metrics["frontiers"]
    at_kl = [c for c in metrics["comparisons"] if "kl" in c]
    assert at_kl, f"{path}: frontiers but no comparison at matched KL"
    for c in at_kl:
        key = PER_PROMPT[c["metric"]]
        assert all(key in r for r in rows), f"{path}: frontier rows without {key!r}"

        # a comparison at one beta of a sweep ('policy, β/3') reads its tier's rows ('policy') at that beta
        tier = c["setting"].rsplit(", β", 1)[0]

        def on(method, beta):
            return [dict(r, setting=c["setting"]) for r in rows if r["setting"] in (c["setting"], tier)
                    and r["method"] == method and r["beta"] == beta]

        again = matched_kl_comparison(on(c["method"], c["beta"]) + on(c["baseline"], c["baseline_beta"]),
                                      c["setting"], c["method"], c["baseline"], c["kl"], c["matters"], c["metric"])
        where = f"{path}: {c['method']} - {c['baseline']} ({c['metric']}) at {c['kl']} nats"
        assert again["n_seeds"] == c["n_seeds"] and again["n_units"] == c["n_units"], where
        assert again["diff"] == pytest.approx(c["diff"], abs=1e-6), where
        assert again["ci95"] == pytest.approx(c["ci95"], abs=1e-5), where
        assert cautious_interval(again) == pytest.approx(cautious_interval(c), abs=1e-5), where
        if "best of" in c.get("note", ""):
            chosen = matched_kl_comparison(rows, c["setting"], c["method"], c["baseline"], c["kl"], c["matters"],
                                           c["metric"])
            assert (chosen["beta"], chosen["baseline_beta"]) == (c["beta"], c["baseline_beta"]), where


def test_variance_components_recover_known_seed_prompt_and_interaction_parts():
    """diff[s, p] = a_s + b_p + e_sp with known spreads: the two-way decomposition finds each (here with many
    seeds and prompts, so within sampling error), and an interval's width scales as the formula says."""
    from apo_utils.stats import variance_components, width_ratio

    rng = np.random.default_rng(3)
    d = (rng.normal(0, 0.05, (200, 1)) + rng.normal(0, 0.2, (1, 400)) + rng.normal(0, 0.1, (200, 400)))
    parts = variance_components(d)
    assert parts["seed"] == pytest.approx(0.05 ** 2, rel=0.25)
    assert parts["prompt"] == pytest.approx(0.2 ** 2, rel=0.15)
    assert parts["interaction"] == pytest.approx(0.1 ** 2, rel=0.05)
    assert (parts["seeds"], parts["prompts"]) == (200, 400)
    # a seed effect alone: more prompts do not help, four times the seeds halve the width
    only_seed = {"seed": 0.01, "prompt": 0.0, "interaction": 0.0, "seeds": 5, "prompts": 32}
    assert width_ratio(only_seed, prompts=256) == pytest.approx(1.0)
    assert width_ratio(only_seed, seeds=20) == pytest.approx(0.5)
    # a prompt effect alone: four times the prompts halve it, more seeds do nothing
    only_prompt = {"seed": 0.0, "prompt": 0.04, "interaction": 0.0, "seeds": 5, "prompts": 32}
    assert width_ratio(only_prompt, prompts=128) == pytest.approx(0.5)
    assert width_ratio(only_prompt, seeds=50) == pytest.approx(1.0)
    # the interaction shrinks with the product: twice the seeds and twice the prompts halve it
    only_interaction = {"seed": 0.0, "prompt": 0.0, "interaction": 0.05, "seeds": 5, "prompts": 32}
    assert width_ratio(only_interaction, seeds=10, prompts=64) == pytest.approx(0.5)
    assert width_ratio(parts) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="do not vary"):
        width_ratio({"seed": 0.0, "prompt": 0.0, "interaction": 0.0, "seeds": 5, "prompts": 32})
    with pytest.raises(ValueError, match="2 seeds x 2 prompts"):
        variance_components(np.zeros((1, 10)))


def test_the_differences_behind_a_matched_kl_comparison_average_to_it():
    from apo_utils.stats import matched_kl_differences

    rows = synthetic_rows("madpo", 0.25, 0.10) + synthetic_rows("dpo", 0.20, 0.10, rng_seed=1)
    c = matched_kl_comparison(rows, "high", "madpo", "dpo", 0.6)
    d = matched_kl_differences(rows, "high", "madpo", "dpo", 0.6, c["beta"], c["baseline_beta"])
    assert d.shape == (5, N_EARLY) and d.mean() == pytest.approx(c["diff"])
    with pytest.raises(ValueError, match="do not both reach KL 99"):
        matched_kl_differences(rows, "high", "madpo", "dpo", 99.0, 0.1, 0.1)


def test_each_pairs_budgets_are_drawn_in_its_baselines_colour():
    """With budgets per pair ({baseline: budgets}), a reader can tell which dotted line belongs to which comparison."""
    from matplotlib.colors import to_rgba

    from apo_utils.plotting import color, frontier_figure, label

    rows = synthetic_rows("dpo", 0.5, 0.1, seeds=[0, 1], steps=4) + synthetic_rows("madpo", 0.6, 0.05, seeds=[0, 1], steps=4)
    fig = frontier_figure(rows, ["high"], ["dpo", "madpo"], 0.4, "true reward",
                          budgets={"high": {"dpo": [0.1, 0.2], "beta_dpo": [0.05]}})
    try:
        dotted = [ln for ln in fig.axes[0].get_lines() if ln.get_linestyle() == ":"]
        by_label = {}
        for ln in dotted:
            by_label.setdefault(ln.get_label(), []).append(ln)
        assert {k: len(v) for k, v in by_label.items()} == {f"matched KL, against {label('dpo')}": 2,
                                                             f"matched KL, against {label('beta_dpo')}": 1}
        assert all(to_rgba(ln.get_color()) == to_rgba(color("dpo")) for ln in by_label[f"matched KL, against {label('dpo')}"])
        legend = [t.get_text() for t in fig.legends[0].get_texts()]
        assert legend.count(f"matched KL, against {label('dpo')}") == 1
    finally:
        plt.close(fig)


def test_more_data_scales_the_verdicts_interval_from_todays_design():
    """Today's design gives back today's half-width (the hull's); more seeds and prompts give a narrower one."""
    from apo_utils.stats import more_data

    rows = synthetic_rows("madpo", 0.25, 0.10) + synthetic_rows("dpo", 0.20, 0.10, rng_seed=1)
    c = matched_kl_comparison(rows, "high", "madpo", "dpo", 0.6)
    lo, hi = cautious_interval(c)
    parts, widths = more_data(rows, c, [(5, N_EARLY), (20, 4 * N_EARLY)])
    assert (parts["seeds"], parts["prompts"]) == (5, N_EARLY)
    assert widths[0]["half-width, about"] == pytest.approx((hi - lo) / 2)
    assert widths[1]["half-width, about"] < widths[0]["half-width, about"]


# Student t, 97.5 % point, by degrees of freedom: the glossary's seed interval for up to ten seeds.
T975_BY_DF = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def _glossary_reading(curve, budget, key):
    """The glossary's "Matched KL" steps 2 and 3 written out with numpy alone, as a reader without the kit would:
    the first crossing of the budget, linear in the two checkpoints' KL, prompt by prompt over the prompts both
    scored. None when the curve never reaches the budget."""
    if budget <= curve[0]["kl"]:
        return np.asarray(curve[0][key], dtype=float)
    for before, after in zip(curve, curve[1:]):
        if after["kl"] >= budget:  # every earlier checkpoint is below the budget: this is the first crossing
            w = (budget - before["kl"]) / (after["kl"] - before["kl"])
            n = min(len(before[key]), len(after[key]))
            return (1 - w) * np.asarray(before[key][:n], dtype=float) + w * np.asarray(after[key][:n], dtype=float)
    return None


@pytest.mark.parametrize("path", sorted(_committed_records_with_frontiers()))
def test_every_matched_kl_number_of_a_committed_record_follows_from_the_glossary_alone(path):
    """The test above redoes each comparison with the kit's own function; this one redoes it from the glossary's
    five steps with no kit code, so the published recipe and the code that made the records cannot drift apart.
    It checks the budgets, the β each side reads (best of several where the record says so), that no reading
    extends a curve past its last point, the point estimate and the t interval over seeds."""
    metrics = _committed_records_with_frontiers()[path]
    for c in (c for c in metrics["comparisons"] if "kl" in c):
        where = f"{path}: {c['method']} - {c['baseline']} ({c['metric']}) in {c['setting']} at {c['kl']} nats"
        tier = c["setting"].rsplit(", β", 1)[0]  # 'policy, β/3' reads the rows of 'policy' at that β
        curves = {}
        for r in sorted((r for r in metrics["frontiers"] if r["setting"] in (c["setting"], tier)),
                        key=lambda r: r["step"]):
            curves.setdefault((r["method"], r["beta"], r["seed"]), []).append(r)
        seeds = sorted({s for m, _, s in curves if m == c["method"]} & {s for m, _, s in curves if m == c["baseline"]})

        def readings(method, beta, key):
            got = [_glossary_reading(curves[(method, beta, s)], c["kl"], key) if (method, beta, s) in curves
                   else None for s in seeds]
            return None if any(g is None for g in got) else got

        def best_beta(method):  # step 4: highest mean reward over seeds at the budget, among β reaching it on all
            betas = {b for m, b, _ in curves if m == method}
            reaching = {beta: readings(method, beta, "prompt_rewards") for beta in betas}
            reaching = {beta: got for beta, got in reaching.items() if got is not None}
            n = min(len(g) for got in reaching.values() for g in got)  # the prompts every candidate scored
            return max(reaching, key=lambda beta: np.mean([g[:n] for g in reaching[beta]]))

        def reach(method, betas):  # step 1: the largest KL one β reaches on every seed compared
            return max(min(max((r["kl"] for r in curves.get((method, beta, s), [])), default=0.0) for s in seeds)
                       for beta in betas)

        best_of = "best of" in c.get("note", "")
        sides = {c["method"]: c["beta"], c["baseline"]: c["baseline_beta"]}
        if path.startswith("figures/04_amapo_ranking/"):  # notebook 04 reads every baseline at the same budgets
            sides.update({o["baseline"]: o["baseline_beta"] for o in metrics["comparisons"]
                          if "kl" in o and o["setting"] == c["setting"] and o["method"] == c["method"]})
        top = min(reach(m, {b for m2, b, _ in curves if m2 == m} if best_of else {beta}) for m, beta in sides.items())
        assert c["kl"] in (math.floor(top * 500) / 1000, math.floor(top * 1000) / 1000), where  # K/2 and K, rounded down
        if best_of:
            assert (best_beta(c["method"]), best_beta(c["baseline"])) == (c["beta"], c["baseline_beta"]), where
        key = PER_PROMPT[c["metric"]]
        ours, theirs = readings(c["method"], c["beta"], key), readings(c["baseline"], c["baseline_beta"], key)
        assert ours is not None and theirs is not None, f"{where}: a curve does not reach the budget"
        n = min(len(g) for g in ours + theirs)
        per_prompt = np.array([a[:n] - b[:n] for a, b in zip(ours, theirs)])  # step 5: seeds x prompts
        assert (len(seeds), n) == (c["n_seeds"], c["n_units"]), where
        assert per_prompt.mean() == pytest.approx(c["diff"], abs=1e-6), where
        per_seed = per_prompt.mean(axis=1)
        if len(seeds) == 1:
            assert c["seed_ci95"] == [None, None], f"{where}: one seed gives no interval over seeds"
            continue
        half = T975_BY_DF[len(seeds) - 1] * per_seed.std(ddof=1) / math.sqrt(len(seeds))
        assert c["seed_ci95"] == pytest.approx([per_seed.mean() - half, per_seed.mean() + half], abs=1e-6), where
