"""The MADPO study's run table (notebooks 02 and 02b): every method maps to a loss, and the same-information
baseline trains on the reward model's labels."""

import pytest

from apo_utils import losses, profiles
from apo_utils.madpo_runs import METHODS, training_rows


class FakeStudy:
    def __init__(self, rows):
        self.rows = rows

    def train_rows(self, tier):
        return [dict(r) for r in self.rows]


ROWS = [{"prompt": "p", "chosen": f"c{i}", "rejected": f"r{i}", "margin": m, "true_margin": t}
        for i, (m, t) in enumerate([(1.5, 0.2), (-0.7, 0.3), (-2.0, -0.1), (0.4, -0.5)])]


def test_every_method_of_both_notebooks_has_a_loss():
    for p in profiles.PROFILES:
        s = profiles.get(p).madpo
        seeds = s.policy_changes().get("seeds", profiles.get(p).policy.seeds)
        for job in s.jobs(seeds) + s.companion_jobs(seeds):
            assert job["method"] in METHODS, (p, job)
            assert METHODS[job["method"]][0] in losses.LOSSES


def test_dpo_on_the_reward_models_labels_turns_the_pairs_it_disagrees_with():
    plain = training_rows(FakeStudy(ROWS), "dpo", "high")
    turned = training_rows(FakeStudy(ROWS), "dpo_rm_labels", "high")
    assert plain == ROWS  # DPO and MADPO: the data's labels
    assert [r["chosen"] for r in turned] == ["c0", "r1", "r2", "c3"]  # where the margin is negative
    assert all(r["margin"] >= 0 for r in turned) and len(turned) == len(ROWS)
    # same pairs in the same order: a seed gives both the same batches
    assert [{r["chosen"], r["rejected"]} for r in turned] == [{r["chosen"], r["rejected"]} for r in ROWS]


def test_cpu_headline_has_five_seeds_and_the_sweep_three_betas():
    s = profiles.get("cpu").madpo
    seeds = s.policy_changes()["seeds"]
    assert len(seeds) >= 5
    jobs = s.jobs(seeds)
    for m in ("dpo", "dpo_rm_labels", "beta_dpo", "madpo"):  # the paper's Table 1 baselines and the fair one
        assert sorted(j["seed"] for j in jobs if j["method"] == m) == list(seeds)
    swept = [j for j in s.companion_jobs(seeds) if "beta_scale" in j]
    sweep = {(j["method"], j["beta_scale"]) for j in swept}
    assert len({k for _, k in sweep} | {1.0}) >= 3 and {m for m, _ in sweep} == {"dpo", "madpo"}
    for key in sweep:  # a verdict on the best of three betas is a headline: every seed at every beta
        assert sorted(j["seed"] for j in swept if (j["method"], j["beta_scale"]) == key) == list(seeds)
    assert profiles.beta_label(3.0) == "β×3" and profiles.beta_label(1 / 3) == "β/3"


@pytest.mark.parametrize("profile", profiles.PROFILES)
def test_checkpoints_give_five_points_where_a_profile_draws_frontiers(profile):
    s = profiles.get(profile).madpo
    assert s.checkpoints is None or s.checkpoints >= (3 if profile == "smoke" else 5)
