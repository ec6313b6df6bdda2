"""The `gpu` profile fits a free Colab T4 (each notebook within the hour, apo_utils/budget.py), and the `paper`
profile is the MADPO authors' scale."""

from pathlib import Path

from apo_utils import budget, profiles

SIZING_PAGE = Path(__file__).resolve().parents[1] / "book" / "maintainer" / "gpu-sizing.md"  # the book's T4 page


def test_the_cost_model_is_the_authors_t4_timing():
    assert round(budget.T4_TRAIN_S_PER_PAIR * 10_000 / 60, 1) == 11.0  # IPO: an epoch of 10,000 pairs in 11:04
    assert round(budget.T4_REFERENCE_S_PER_PAIR * 10_000) == 164  # reference log-probs: 2:44
    # 10,000 pairs of the authors' length, one epoch, no reference pass: their epoch plus the set-up
    assert budget.train_s(10_000, 1.0, budget.AUTHORS_TOKENS, reference=False) == 15 + 1.06 / 16 * 10_000


def test_every_notebook_of_the_gpu_profile_fits_an_hour_on_a_t4():
    minutes = budget.estimate("gpu")
    assert set(minutes) == {"01_imdb_preferences", "02_madpo_imdb", "02b_madpo_sensitivity", "03_gamma_po_noise",
                            "03b_gamma_po_beta_sweep", "04_amapo_ranking", "04b_amapo_beta_sweep",
                            "04c_amapo_long_training", "05_mmpo_margins", "05b_mmpo_reward_models",
                            "05c_mmpo_beta_sweep"}
    over = {k: v for k, v in minutes.items() if not 0 < v <= budget.LIMIT_MIN}
    assert not over, f"over {budget.LIMIT_MIN:g} min on a T4: {over}"


def test_paper_profile_is_the_authors_scale():
    p = profiles.get("paper")
    n_train, n_test = budget.split_prompts(p.data)
    assert (n_train, n_test) == (10_000, 2_000)
    assert all(budget.pairs_per_prompt(p.data, q) == 1 for q in ("high", "low"))
    assert p.policy.epochs == 2 and p.policy.max_length == 196 == 20 + p.data.max_new_tokens
    assert p.policy.lr == 1e-5 and p.policy.lora_r == 16 and p.policy.n_eval_prompts == 2_000
    assert profiles.resolve("paper") == "paper" and "paper" in profiles.PROFILES
    assert all(v > budget.LIMIT_MIN for v in budget.estimate("paper").values())  # hours, as documented


def test_the_sizing_page_shows_the_current_estimates():
    assert budget.markdown() in SIZING_PAGE.read_text(), (
        "book/maintainer/gpu-sizing.md: paste the table `python -m apo_utils.budget` prints")


def test_each_notebook_trains_the_grid_the_budget_counts():
    """The budget counts the job grids of profiles.py; each study notebook must train exactly those lists (no grid
    of its own beside them), and the tiers the grids use are notebook 01's."""
    import json
    import re

    from apo_utils.data import QUALITIES
    from apo_utils.storage import repo_root

    assert profiles.TIERS == tuple(QUALITIES)
    calls = {"02_madpo_imdb": ["settings.jobs(study.seeds)"],
             "02b_madpo_sensitivity": ["settings.companion_jobs(study.seeds)"], "03_gamma_po_noise": ["settings.jobs(study.seeds)"],
             "04_amapo_ranking": ["settings.jobs(study.seeds)"],
             "04c_amapo_long_training": ["settings.jobs(study.seeds)"],
             "05_mmpo_margins": ["settings.policy_jobs(study.seeds)"],
             "05b_mmpo_reward_models": ["settings.reward_model_jobs(study.seeds)", "settings.sweep_jobs(study.seeds"],
             "03b_gamma_po_beta_sweep": ["settings.beta_jobs(study.seeds)"],
             "04b_amapo_beta_sweep": ["settings.beta_jobs(study.seeds)"],
             "05c_mmpo_beta_sweep": ["settings.beta_jobs(study.seeds)"]}
    for nb, expected in calls.items():
        cells = json.loads((repo_root() / "notebooks" / f"{nb}.ipynb").read_text())["cells"]
        code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        for call in expected:
            assert call in code, f"{nb} no longer trains {call}: update budget.estimate with it"
        # every study.run(...) is given one of the grids (a name bound to one of the calls above)
        bound = {m.group(1) for m in re.finditer(r"^(\w+) = settings\.\w*jobs\(", code, re.M)}
        runs = re.findall(r"study\.run\((\w+),", code)
        assert runs and set(runs) <= bound, f"{nb} runs {runs}, the grids are {bound}"


def test_the_grids_count_what_the_cpu_records_ran():
    """Where a committed cpu record ran at today's settings, its number of runs is what the grids give."""
    from apo_utils import summary

    def madpo_seeds(p):  # the MADPO study sets its own seeds
        return p.madpo.policy_changes().get("seeds", p.policy.seeds)

    def mmpo_seeds(p):  # and so does the MMPO study
        return p.mmpo.policy_changes().get("seeds", p.policy.seeds)

    grids = {"02_madpo_imdb": lambda p: len(p.madpo.jobs(madpo_seeds(p))),
             "02b_madpo_sensitivity": lambda p: len(p.madpo.companion_jobs(madpo_seeds(p))),
             "03_gamma_po_noise": lambda p: len(p.noise.jobs(p.noise.policy_changes().get("seeds", p.policy.seeds))),
             "03b_gamma_po_beta_sweep": lambda p: len(p.noise.beta_jobs(p.noise.policy_changes().get("seeds",
                                                                                                  p.policy.seeds))),
             "04_amapo_ranking": lambda p: len(p.ranking.jobs(p.ranking.policy_changes().get("seeds", p.policy.seeds))),
             "04c_amapo_long_training": lambda p: len(p.long_training.jobs(p.long_training.policy_changes().get(
                 "seeds", p.policy.seeds))),
             "04b_amapo_beta_sweep": lambda p: len(p.ranking.beta_jobs(p.ranking.policy_changes().get("seeds",
                                                                                                 p.policy.seeds))),
             "05_mmpo_margins": lambda p: len(p.mmpo.policy_jobs(mmpo_seeds(p))),
             "05b_mmpo_reward_models": lambda p: (len(p.mmpo.reward_model_jobs(mmpo_seeds(p)))
                                                  + len(p.mmpo.sweep_jobs(mmpo_seeds(p), p.data.label_scale))),
             "05c_mmpo_beta_sweep": lambda p: len(p.mmpo.beta_jobs(mmpo_seeds(p)))}
    cpu = profiles.get("cpu")
    # what the committed cpu records ran (05b lists its reward models and the sweep's extra models)
    # 02: DPO, DPO on the reward model's labels, beta-DPO and MADPO, 5 seeds, on the high tier; 02b: DPO and MADPO at
    # beta/3 and 3 beta on 5 seeds, IPO and the 3 variants on 1; 03: SimPO and gamma-SimPO at 20 % flips and with
    # none, 5 seeds each; 03b: SimPO and gamma-SimPO at beta/3 and 3 beta at 20 % flips on 5; 04: DPO, SimPO and
    # AMaPO on 5; 04b: DPO and AMaPO at beta/3 and 3 beta on 5; 04c: DPO, SimPO and AMaPO on 5; 05: 4 policy
    # methods on 5 seeds; 05b: reward models on hard labels, true and estimated margins on 5 seeds, the gamma_bt
    # sweep's 2 extra values on 5; 05c: DPO and MMPO at beta/3 and 3 beta on 5
    expected = {"02_madpo_imdb": 4 * 5, "02b_madpo_sensitivity": 2 * 2 * 5 + 1 + 3, "03_gamma_po_noise": 2 * 5 * 2,
                "03b_gamma_po_beta_sweep": 2 * 2 * 5, "04_amapo_ranking": 3 * 5, "04b_amapo_beta_sweep": 2 * 2 * 5,
                "04c_amapo_long_training": 3 * 5,
                "05_mmpo_margins": 4 * 5, "05b_mmpo_reward_models": 3 * 5 + 2 * 5, "05c_mmpo_beta_sweep": 2 * 2 * 5}
    assert {k: f(cpu) for k, f in grids.items()} == expected
    for rec in summary.records(committed_only=True):
        if rec["profile"] == "cpu" and rec["study"] in grids and not summary.settings_changed(rec):
            assert rec["metrics"]["runs_total"] == grids[rec["study"]](cpu), rec["_path"]
