"""The `gpu` profile fits a free Colab T4 (each notebook within the hour, apo_utils/budget.py), and the `paper`
profile is the MADPO authors' scale."""

from pathlib import Path

from apo_utils import budget, profiles

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_cost_model_is_the_authors_t4_timing():
    assert round(budget.T4_TRAIN_S_PER_PAIR * 10_000 / 60, 1) == 11.0  # IPO: an epoch of 10,000 pairs in 11:04
    assert round(budget.T4_REFERENCE_S_PER_PAIR * 10_000) == 164  # reference log-probs: 2:44
    # 10,000 pairs of the authors' length, one epoch, no reference pass: their epoch plus the set-up
    assert budget.train_s(10_000, 1.0, budget.AUTHORS_TOKENS, reference=False) == 15 + 1.06 / 16 * 10_000


def test_every_notebook_of_the_gpu_profile_fits_an_hour_on_a_t4():
    minutes = budget.estimate("gpu")
    assert set(minutes) == {"01_imdb_preferences", "02_madpo_imdb", "03_gamma_po_noise", "04_amapo_ranking",
                            "05_mmpo_margins"}
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


def test_readme_shows_the_current_estimates():
    assert budget.markdown() in README.read_text(), "README.md: paste the table `python -m apo_utils.budget` prints"
