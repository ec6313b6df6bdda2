"""The results table comes from the run records, the README shows exactly that, and stale figures are flagged."""

import json
import subprocess

import pytest

from apo_utils import summary
from apo_utils.storage import repo_root

ROOT = repo_root()


def _tracked(pattern: str) -> list[str]:
    out = subprocess.run(["git", "ls-files", pattern], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return out.split()


def test_readme_results_section_is_what_the_records_give():
    readme = (ROOT / "README.md").read_text()
    assert summary.README_START in readme, "README.md lost its results section markers"
    assert summary.readme_section() in readme, (
        "README.md's results table differs from the committed run records: run "
        "`python -m apo_utils.summary --write-readme` and commit README.md")


def test_readme_notebook_times_are_what_the_records_and_the_budget_give():
    readme = (ROOT / "README.md").read_text()
    assert summary.PATHS_START in readme, "README.md lost its notebook-times section markers"
    assert summary.paths_section() in readme, (
        "README.md's table of notebooks and their times differs from the committed run records and "
        "apo_utils/budget.py: run `python -m apo_utils.summary --write-readme` and commit README.md")


def test_every_committed_figure_comes_with_the_record_that_lists_it():
    for png in _tracked("figures/*.png"):
        folder = ROOT / png.rsplit("/", 1)[0]
        record = folder / "run_record.json"
        assert record.exists(), f"{png} has no run_record.json beside it"
        assert png in json.loads(record.read_text())["figures"], f"{png} is not listed in {record}"


def test_stale_records_are_exactly_those_listed():
    """Stale: a file the study depends on changed after the record's commit, its profile's settings moved, or the
    record says dirty.

    figures/stale.json must list every stale committed record (with the reason), and nothing else, so a
    figure made by older code can neither hide nor stay listed after it is regenerated.
    """
    state = summary.staleness()
    if any(v["changed"] is None for v in state.values()):
        pytest.skip("git history of the records' commits is not available (shallow clone)")
    stale_now = {k for k, v in state.items() if v["changed"] or v["dirty"]}
    listed = summary.known_stale()
    assert all(isinstance(v, str) and v.strip() for v in listed.values()), "each stale entry needs a reason"
    missing = {k: state[k]["changed"] for k in stale_now - set(listed)}
    assert not missing, f"stale records not in figures/stale.json (regenerate them or list why): {missing}"
    assert not set(listed) - stale_now, f"listed as stale but current: {sorted(set(listed) - stale_now)}"


def test_markdown_table_from_records(tmp_path):
    rec = {"study": "02_madpo_imdb", "profile": "cpu", "device": "cpu: test", "seeds": [0, 1],
           "git": {"commit": "abcdef0123", "dirty": False}, "figures": [],
           "metrics": {"table": {"high/madpo": {"reward": {"mean": 0.5, "sd": 0.1, "se": 0.07, "n": 2}},
                                 "high/dpo": {"reward": {"mean": 0.4, "sd": 0.2, "se": 0.14, "n": 2}}}}}
    (tmp_path / "figures" / "02_madpo_imdb" / "cpu").mkdir(parents=True)
    (tmp_path / "figures" / "02_madpo_imdb" / "cpu" / "run_record.json").write_text(json.dumps(rec))
    rows = summary.collect(tmp_path)
    assert {(r["method"], r["mean"], r["sd"], r["n"]) for r in rows} == {("madpo", 0.5, 0.1, 2), ("dpo", 0.4, 0.2, 2)}
    md = summary.markdown(rows, {"figures/02_madpo_imdb/cpu/run_record.json": "test"})
    assert "| 02_madpo_imdb | true reward of samples | high quality | madpo | 0.500 ± 0.100 (2) † |" in md
    assert "abcdef0" in md and "stale" in md


def test_extractors_of_studies_03_to_05_read_their_records():
    """Each study's headline numbers come out of its record's metrics, with the study's own setting names."""
    stat = lambda m: {"mean": m, "sd": 0.01, "n": 3}  # noqa: E731
    base = {"profile": "cpu", "device": "cpu: test", "git": {"commit": "abc"}, "seeds": [0, 1, 2]}
    noise = {**base, "metrics": {"table": {f"{r:.2f}/{m}": {"accuracy": stat(0.7 - r), "reward": stat(0.1)}
                                           for r in (0.0, 0.2, 0.4) for m in ("dpo", "gamma_dpo")}}}
    rows = summary.EXTRACT["03_gamma_po_noise"](noise)
    assert {r["setting"] for r in rows} == {"0% labels flipped", "40% labels flipped"}  # the two ends only
    assert {(r["setting"], r["method"]): r["mean"] for r in rows}[("40% labels flipped", "gamma_dpo")] == pytest.approx(0.3)
    ranking = {**base, "metrics": {"quality": "high", "table": {m: {"test_accuracy": stat(0.6)} for m in ("dpo", "amapo")}}}
    assert [r["method"] for r in summary.EXTRACT["04_amapo_ranking"](ranking)] == ["amapo", "dpo"]
    mmpo = {**base, "metrics": {"reward_models": {"bradley_terry": {"ece": stat(0.2)}, "mmpo": {"ece": stat(0.1)}},
                                "policies": {"dpo": {"reward": stat(0.5)}, "mmpo": {"reward": stat(0.6)}}}}
    rows = summary.EXTRACT["05_mmpo_margins"](mmpo)  # a record made before the reward models moved to 05b
    assert {(r["setting"], r["method"]) for r in rows} == {("reward model", "bradley_terry"), ("reward model", "mmpo"),
                                                          ("policy", "dpo"), ("policy", "mmpo")}
    assert all(r["n"] == 3 and r["commit"] == "abc" for r in rows)
    policies_only = {**mmpo, "metrics": {"policies": mmpo["metrics"]["policies"]}}
    assert {r["setting"] for r in summary.EXTRACT["05_mmpo_margins"](policies_only)} == {"policy"}
    rows = summary.EXTRACT["05b_mmpo_reward_models"](mmpo)
    assert {(r["study"], r["method"]) for r in rows} == {("05b_mmpo_reward_models", "bradley_terry"),
                                                        ("05b_mmpo_reward_models", "mmpo")}


def test_a_notebook_whose_prose_alone_changed_leaves_its_record_current(tmp_path):
    def nb(markdown: str, code: str) -> str:
        return json.dumps({"cells": [{"cell_type": "markdown", "source": markdown, "metadata": {}},
                                     {"cell_type": "code", "source": [code], "metadata": {}, "outputs": []}]})
    git = lambda *a: subprocess.run(["git", *a], cwd=tmp_path, check=True, capture_output=True, text=True).stdout
    git("init", "-q")
    (tmp_path / "n.ipynb").write_text(nb("# findings to come", "x = 1\n"))
    git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "record made here")
    commit = git("rev-parse", "HEAD").strip()
    (tmp_path / "n.ipynb").write_text(nb("# what we found: x is 1", "x = 1\n"))
    assert summary._changed_since(commit, ["n.ipynb"], tmp_path) == []
    (tmp_path / "n.ipynb").write_text(nb("# what we found: x is 1", "x = 2\n"))
    assert summary._changed_since(commit, ["n.ipynb"], tmp_path) == ["n.ipynb"]


def test_a_record_made_at_other_settings_is_stale_even_with_the_code_unchanged():
    """profiles.py is not a watched file: each record's stored settings are compared with its profile today."""
    cpu = profiles_dict("cpu")
    rec = lambda study, settings: {"study": study, "profile": "cpu", "settings": settings}  # noqa: E731
    copy = lambda d: json.loads(json.dumps(d))  # noqa: E731
    same = as_stored("02_madpo_imdb")  # 02 sets its own checkpoints, seeds and pairs a policy; its record stores them
    assert same["policy"] != cpu["policy"] and summary.settings_changed(rec("02_madpo_imdb", same)) == []
    smaller = copy(same)
    smaller["policy"]["train_pairs"] = 250
    smaller["mmpo"]["gamma_bt"] = 4.0  # 05's setting: 02 does not read it
    assert summary.settings_changed(rec("02_madpo_imdb", smaller)) == ["policy.train_pairs"]
    smaller = copy(as_stored("05_mmpo_margins"))
    smaller["policy"]["train_pairs"] = 250
    smaller["mmpo"]["gamma_bt"] = 4.0
    assert summary.settings_changed(rec("05_mmpo_margins", smaller)) == ["policy.train_pairs", "mmpo.gamma_bt"]
    older = as_stored("03_gamma_po_noise")
    del older["policy"]["top_layers"]  # an option the record predates: today's 3 is not the default (None)
    del older["policy"]["eval_batch_size"]
    older["policy"]["eval_batch_size"] = 32  # the default; today's cpu value is 128
    assert summary.settings_changed(rec("03_gamma_po_noise", older)) == ["policy.eval_batch_size", "policy.top_layers"]
    older["policy"]["gone"] = 1
    assert "policy.gone (no longer a setting)" in summary.settings_changed(rec("03_gamma_po_noise", older))
    ranking = as_stored("04_amapo_ranking")  # 04 trains for its own epochs (RankingSettings), and its record says so
    assert ranking["policy"]["epochs"] == cpu["ranking"]["epochs"]
    assert summary.settings_changed(rec("04_amapo_ranking", ranking)) == []
    longer = copy(same)
    longer["policy"]["epochs"] = cpu["ranking"]["epochs"]
    assert summary.settings_changed(rec("02_madpo_imdb", longer)) == ["policy.epochs"]
    emulated = copy(same)  # Study turns cpu_bf16 off on a CPU without native bf16; the record stores what ran
    emulated["policy"]["cpu_bf16"] = False
    assert cpu["policy"]["cpu_bf16"] is True
    assert summary.settings_changed({**rec("02_madpo_imdb", emulated), "device": "cpu: x86_64, 2 cores"}) == []
    assert summary.settings_changed({**rec("02_madpo_imdb", emulated), "device": "cuda: NVIDIA T4"}) == [
        "policy.cpu_bf16"]  # on a GPU nothing turns it off: a real difference
    data = dict(cpu["data"], n_prompts=100)  # 01 stores its data settings flat
    assert summary.settings_changed(rec("01_imdb_preferences", data)) == ["data.n_prompts"]


def test_a_studys_dependencies_are_read_from_its_imports():
    """No hand-kept list: every module a notebook reaches is watched (env.py, which sets the mixed precision, was once
    missing from such a list while 02-04 imported it), and nothing it does not reach."""
    for study in summary.STUDIES[1:]:
        files = summary.depends_on(study)
        assert files[0] == f"notebooks/{study}.ipynb"
        assert {"apo_utils/env.py", "apo_utils/models.py", "apo_utils/data.py"} <= set(files)
    assert "apo_utils/policy_training.py" in summary.depends_on("02_madpo_imdb")
    zoo = summary.depends_on("00_margin_zoo")
    assert "apo_utils/bandit.py" in zoo and "apo_utils/env.py" not in zoo and "apo_utils/models.py" not in zoo
    assert not any(f.endswith(("records.py", "storage.py", "profiles.py")) for s in summary.STUDIES
                   for f in summary.depends_on(s))


def test_an_edit_to_env_py_makes_the_records_that_reach_it_stale(tmp_path):
    """A deliberate edit of env.py in a repository of our own: 02's record turns stale and names env.py; 00's,
    which never reaches env.py, stays current."""
    import shutil

    from apo_utils.storage import repo_root

    root = repo_root()
    shutil.copytree(root / "apo_utils", tmp_path / "apo_utils", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(root / "notebooks", tmp_path / "notebooks")
    git = lambda *a: subprocess.run(["git", *a], cwd=tmp_path, check=True, capture_output=True, text=True).stdout  # noqa: E731
    git("init", "-q")
    git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "code")
    commit = git("rev-parse", "HEAD").strip()
    for study, settings in (("00_margin_zoo", {"bandit": profiles_dict("cpu")["bandit"]}),
                            ("02_madpo_imdb", {k: as_stored("02_madpo_imdb")[k] for k in ("data", "policy", "madpo")})):
        folder = tmp_path / "figures" / study / "cpu"
        folder.mkdir(parents=True)
        (folder / "run_record.json").write_text(json.dumps({"study": study, "profile": "cpu", "metrics": {},
                                                            "settings": settings, "git": {"commit": commit}}))
    git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "records")
    assert all(v["changed"] == [] for v in summary.staleness(tmp_path).values())
    env = tmp_path / "apo_utils" / "env.py"
    env.write_text(env.read_text() + "\n# a deliberate edit\n")
    state = summary.staleness(tmp_path)
    assert state["figures/02_madpo_imdb/cpu/run_record.json"]["changed"] == ["apo_utils/env.py"]
    assert state["figures/00_margin_zoo/cpu/run_record.json"]["changed"] == []


def profiles_dict(name: str) -> dict:
    from apo_utils import profiles

    return json.loads(json.dumps(profiles.get(name).as_dict()))


def as_stored(study: str, name: str = "cpu") -> dict:
    """A profile's settings as `study`'s record stores them: the policy with the study's own changes applied."""
    from apo_utils import profiles

    stored = profiles_dict(name)
    own = profiles.get(name).study_settings(study)
    stored["policy"].update(json.loads(json.dumps(own.policy_changes())) if hasattr(own, "policy_changes") else {})
    return stored


@pytest.mark.parametrize("damage", ["conflict", "no_metrics", "metrics_without_table"])
def test_a_damaged_record_is_named_and_left_out_while_the_rest_is_summarised(tmp_path, damage):
    good = {"study": "00_margin_zoo", "profile": "cpu", "device": "cpu: test", "seeds": [0], "git": {"commit": "abc"},
            "metrics": {"bandit": {"dpo": {"ranking_accuracy": {"mean": 0.9, "sd": 0.0, "n": 1}}}}}
    bad = dict(good, study="02_madpo_imdb")
    for study, rec in (("00_margin_zoo", good), ("02_madpo_imdb", bad)):
        (tmp_path / "figures" / study / "cpu").mkdir(parents=True)
        text = json.dumps(rec)
        if study == "02_madpo_imdb":
            if damage == "conflict":
                text = "<<<<<<< HEAD\n" + text + "\n=======\n" + text + "\n>>>>>>> other\n"
            elif damage == "no_metrics":
                text = json.dumps({k: v for k, v in rec.items() if k != "metrics"})
            else:  # a 02 record whose metrics lack its table
                text = json.dumps(dict(rec, metrics={"comparisons": []}))
        (tmp_path / "figures" / study / "cpu" / "run_record.json").write_text(text)
    with pytest.warns(UserWarning, match=r"figures/02_madpo_imdb/cpu/run_record.json: .*the summary goes on without it"):
        rows = summary.collect(tmp_path)
    assert [r["study"] for r in rows] == ["00_margin_zoo"]


def test_a_cut_stale_file_is_named_and_marks_nothing(tmp_path):
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "stale.json").write_text('{"figures/01_imdb_preferences/gpu/run_record.json": "made by')
    with pytest.warns(UserWarning, match=r"figures/stale.json: not readable as JSON"):
        assert summary.known_stale(tmp_path) == {}


def test_each_notebook_states_the_times_the_readme_gives():
    """A notebook's time line is a second copy of the README's table: both come from `summary.notebook_times`."""
    for nb, (cpu, t4) in summary.notebook_times().items():
        if nb == "06_summary":  # "seconds on any profile": it trains nothing
            continue
        cells = json.loads((repo_root() / "notebooks" / f"{nb}.ipynb").read_text())["cells"]
        line = next(l for c in cells if c["cell_type"] == "markdown" for l in "".join(c["source"]).splitlines()
                    if l.startswith("**Time**"))
        assert cpu is not None and f"`cpu` about {summary._duration(cpu)} on 2 cores" in line, (nb, line)
        gpu = f"`gpu` about {summary._duration(t4)} on a free Colab T4" if t4 is not None else "`gpu` under a minute"
        assert gpu in line, (nb, line)


def test_the_studies_marked_stale_are_read_per_profile():
    stale = {"figures/04_amapo_ranking/cpu/run_record.json": "older code",
             "figures/01_imdb_preferences/gpu/run_record.json": "older code"}
    assert summary.studies_marked_stale(stale, "cpu") == {"04_amapo_ranking"}
    assert summary.studies_marked_stale(stale, "gpu") == {"01_imdb_preferences"}
    assert summary.studies_marked_stale({}, "cpu") == set()


def test_duration_reads_as_a_reader_wants_it():
    # a notebook that recomputes everything (00) jitters by a second or two between runs: its stated time must not
    assert {summary._duration(s) for s in (19.2, 20.6, 21.4)} == {"20 s"}
    assert [summary._duration(s) for s in (4.3, 25, 95, 2648, 15000)] == ["under 10 s", "30 s", "2 min", "44 min", "4.2 h"]
    # never a shorter reading for a longer time, across every threshold
    readings = [summary._duration(s / 4) for s in range(0, 4 * 9000)]
    seconds = [0 if r == "under 10 s" else float(r.split()[0]) * {"s": 1, "min": 60, "h": 3600}[r.split()[1]]
               for r in readings]
    assert seconds == sorted(seconds)


def test_every_verdict_setting_reads_in_words():
    from apo_utils import plotting, profiles
    assert {f"{t}-quality pairs" for t in profiles.TIERS} <= set(plotting.SETTING_NAMES.values())
    assert set(profiles.TIERS) <= set(plotting.SETTING_NAMES)
    for v in summary.verdicts():
        name = plotting.setting_label(v["setting"])
        # either a name in words or left out (a study with one setting); never a bare internal key
        assert name == "" or " " in name, (v["study"], v["setting"], name)


def test_the_conclusion_reads_one_comparison_a_method_at_the_paper_scale_its_study_set():
    rows = summary.conclusions()
    # every entry found in the committed cpu records, in order: a renamed setting or metric would drop one silently
    assert [(r["study"], r["method"], r["baseline"], r["metric"], r["setting"]) for r in rows] == list(summary.CONCLUSIONS)
    for r in rows:
        same = [v for v in summary.verdicts() if (v["study"], v["method"], v["baseline"], v["metric"], v["setting"])
                == (r["study"], r["method"], r["baseline"], r["metric"], r["setting"])]
        if r["metric"] == "reward":  # read at the furthest budget both sides reach, never after the same steps
            assert r["kl"] == max(v["kl"] for v in same) and len(same) >= 2
        assert r["paper_effect"] == pytest.approx(r["matters"] / summary.MARGIN_FRACTION)


def test_every_study_sets_its_margin_at_the_fraction_the_conclusion_assumes():
    import re
    for study in dict.fromkeys(c[0] for c in summary.CONCLUSIONS):
        cells = json.loads((ROOT / "notebooks" / f"{study}.ipynb").read_text())["cells"]
        lines = [line for c in cells if c["cell_type"] == "code" for line in "".join(c["source"]).splitlines()]
        # each margin a paper's effect sets (LOGP_MATTERS is the prompts' spread, not a paper's effect)
        sets = [line for line in lines if re.match(r"\s*(?!LOGP_)\w*MATTERS = ", line)]
        assert sets, study
        assert all(f"{summary.MARGIN_FRACTION} * " in line for line in sets), (study, sets)

