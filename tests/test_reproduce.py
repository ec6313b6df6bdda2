"""The papermill harness: runs notebooks in order, stops at the first failure with a clear message."""

import json

import nbformat
import pytest

from apo_utils import reproduce
from apo_utils.storage import repo_root


def _nb(path, source):
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('profile = "auto"\nseed = 0\noutput_dir = "outputs"')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(source)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


def test_runs_in_order_and_stops_at_the_first_failure(tmp_path):
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    marker = tmp_path / "ran.txt"
    _nb(nbs / "00_ok.ipynb", f"open({str(marker)!r}, 'a').write(profile + ' ' + str(seed) + '\\n')")
    _nb(nbs / "01_bad.ipynb", "raise RuntimeError('deliberate failure in cell two')")
    _nb(nbs / "02_never.ipynb", f"open({str(marker)!r}, 'a').write('never\\n')")
    with pytest.raises(SystemExit) as exc:
        reproduce.run("smoke", seed=7, output_dir=tmp_path / "out", notebooks_dir=nbs, log=lambda *a: None)
    msg = str(exc.value)
    assert "FAILED: 01_bad.ipynb" in msg and "RuntimeError" in msg and "deliberate failure" in msg
    assert marker.read_text() == "smoke 7\n"  # parameters reached the notebook; 02 never ran
    assert (tmp_path / "out" / "executed" / "smoke" / "01_bad.ipynb").exists()


def test_unknown_profile_and_notebook_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="unknown profile 'laptop'"):
        reproduce.run("laptop", output_dir=tmp_path)
    with pytest.raises(SystemExit, match="no notebook matches"):
        reproduce.run("smoke", output_dir=tmp_path, only=["99"])


def test_margin_zoo_on_smoke_writes_its_record_and_figures(tmp_path):
    done = reproduce.run("smoke", output_dir=tmp_path, only=["00"], log=lambda *a: None)
    assert done[0].name == "00_margin_zoo.ipynb"
    rec = json.loads((repo_root() / "figures/00_margin_zoo/smoke/run_record.json").read_text())
    assert rec["profile"] == "smoke" and rec["git"]["commit"] and rec["packages"]["trl"] == "1.16.0"
    assert len(rec["seeds"]) >= 3 and rec["wall_time_s"]["total"] > 0
    for fig in rec["figures"]:
        assert (repo_root() / fig).stat().st_size > 10_000
    bandit = rec["metrics"]["bandit"]
    assert set(bandit) == {"dpo", "ipo", "cdpo", "robust", "beta_dpo", "simpo", "madpo", "gamma_dpo",
                           "gamma_simpo", "amapo", "mmpo"}
    assert all(0.5 < v["ranking_accuracy"]["mean"] <= 1.0 for v in bandit.values())
    metrics = json.loads((tmp_path / "00_margin_zoo" / "smoke" / "metrics.json").read_text())
    assert metrics["dpo"]["kl"]["mean"] > 0


def test_git_commit_from_environment_only_without_git(tmp_path, monkeypatch):
    """A tree copied without .git (a GPU machine) takes the commit from $APO_GIT_COMMIT, and says so."""
    from apo_utils.records import git_commit

    monkeypatch.delenv("APO_GIT_COMMIT", raising=False)
    assert git_commit(tmp_path)["commit"] is None
    monkeypatch.setenv("APO_GIT_COMMIT", "a" * 40)
    monkeypatch.setenv("APO_GIT_DIRTY", "0")
    got = git_commit(tmp_path)
    assert got["commit"] == "a" * 40 and got["dirty"] is False and "environment" in got["from"]
    # a real checkout ignores the variable
    assert git_commit()["commit"] != "a" * 40


def test_a_finished_notebook_is_skipped_unless_forced_or_changed(tmp_path):
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    marker = tmp_path / "ran.txt"
    _nb(nbs / "00_ok.ipynb", f"open({str(marker)!r}, 'a').write('00\\n')")
    _nb(nbs / "06_summary.ipynb", f"open({str(marker)!r}, 'a').write('06\\n')")
    out = tmp_path / "out"
    lines = []
    reproduce.run("smoke", output_dir=out, notebooks_dir=nbs, log=lambda *a: None)
    reproduce.run("smoke", output_dir=out, notebooks_dir=nbs, log=lines.append)
    assert marker.read_text() == "00\n06\n06\n"  # 00 skipped the second time; the summary always runs
    assert any("skipped" in line for line in lines)
    reproduce.run("smoke", output_dir=out, notebooks_dir=nbs, log=lambda *a: None, force=True)
    assert marker.read_text().count("00") == 2
    reproduce.run("smoke", seed=1, output_dir=out, notebooks_dir=nbs, log=lambda *a: None)  # another seed
    assert marker.read_text().count("00") == 3
    _nb(nbs / "00_ok.ipynb", f"open({str(marker)!r}, 'a').write('00 edited\\n')")  # the notebook changed
    reproduce.run("smoke", seed=1, output_dir=out, notebooks_dir=nbs, log=lambda *a: None)
    assert marker.read_text().endswith("00 edited\n06\n")


def test_updating_the_reference_runs_a_finished_notebook_again(tmp_path, monkeypatch):
    """A learner's run writes beside the committed reference; asking afterwards to replace the reference must run
    the notebook, not skip it as finished and leave the reference as it was."""
    from apo_utils.records import UPDATE_REFERENCE

    nbs = tmp_path / "nbs"
    nbs.mkdir()
    marker = tmp_path / "ran.txt"
    _nb(nbs / "00_ok.ipynb", f"import os; open({str(marker)!r}, 'a').write(os.environ.get({UPDATE_REFERENCE!r}, '-') + '\\n')")
    _nb(nbs / "06_summary.ipynb", "pass")
    out = tmp_path / "out"
    monkeypatch.delenv(UPDATE_REFERENCE, raising=False)
    reproduce.run("smoke", output_dir=out, notebooks_dir=nbs, log=lambda *a: None)
    monkeypatch.setenv(UPDATE_REFERENCE, "1")
    reproduce.run("smoke", output_dir=out, notebooks_dir=nbs, log=lambda *a: None)
    assert marker.read_text() == "-\n1\n"


def test_an_edit_to_the_code_a_notebook_imports_runs_it_again(tmp_path, monkeypatch):
    """A finished notebook is skipped only while the package code it reaches is unchanged: otherwise its record
    would be older than the code that `summary --stale` compares it with."""
    import shutil

    from apo_utils import code_version

    package = tmp_path / "apo_utils"
    shutil.copytree(code_version.PACKAGE_DIR, package, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(code_version, "PACKAGE_DIR", package)
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    marker = tmp_path / "ran.txt"
    # the import is read from the code, not executed (the kernel need not load torch for this test)
    _nb(nbs / "00_ok.ipynb", f"if False:\n    from apo_utils import bandit\nopen({str(marker)!r}, 'a').write('00\\n')")
    _nb(nbs / "06_summary.ipynb", "pass")
    out = tmp_path / "out"
    for _ in range(2):
        reproduce.run("smoke", output_dir=out, notebooks_dir=nbs, log=lambda *a: None)
    assert marker.read_text() == "00\n"  # unchanged code: skipped
    (package / "ranking.py").write_text((package / "ranking.py").read_text() + "\n# an edit it does not reach\n")
    reproduce.run("smoke", output_dir=out, notebooks_dir=nbs, log=lambda *a: None)
    assert marker.read_text() == "00\n"
    (package / "bandit.py").write_text((package / "bandit.py").read_text() + "\n# an edit\n")
    reproduce.run("smoke", output_dir=out, notebooks_dir=nbs, log=lambda *a: None)
    assert marker.read_text() == "00\n00\n"
    (package / "profiles.py").write_text((package / "profiles.py").read_text() + "\n# a settings edit\n")
    reproduce.run("smoke", output_dir=out, notebooks_dir=nbs, log=lambda *a: None)
    assert marker.read_text() == "00\n00\n00\n"  # the settings a notebook runs with changed


def _fake_notebooks(tmp_path, marker):
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    for stem in ("00_zoo", "01_prefs", "06_summary"):
        _nb(nbs / f"{stem}.ipynb", f"open({str(marker)!r}, 'a').write({stem[:2]!r} + '\\n')")
    return nbs


@pytest.mark.parametrize("only,words", [
    ([], "--only needs at least one notebook"),
    ([""], "--only '' is ambiguous"),
    (["0"], "--only '0' is ambiguous"),
    (["00", "99"], "no notebook matches --only 99"),
])
def test_an_empty_ambiguous_or_unknown_only_is_an_error_that_lists_the_notebooks(tmp_path, only, words):
    """`--only` with no value, '' or '0' used to select every notebook: hours on `cpu`."""
    marker = tmp_path / "ran.txt"
    nbs = _fake_notebooks(tmp_path, marker)
    with pytest.raises(SystemExit, match=rf"{words}.*have: 00_zoo, 01_prefs, 06_summary"):
        reproduce.run("smoke", output_dir=tmp_path / "out", notebooks_dir=nbs, only=only, log=lambda *a: None)
    assert not marker.exists()  # nothing ran


def test_only_from_the_command_line_with_no_value_is_an_error():
    with pytest.raises(SystemExit, match="--only needs at least one notebook.*00_margin_zoo"):
        reproduce.main(["--profile", "smoke", "--only"])


def test_only_selects_by_number_or_name_and_the_summary_still_runs_last(tmp_path):
    marker = tmp_path / "ran.txt"
    nbs = _fake_notebooks(tmp_path, marker)
    have = reproduce.notebooks(nbs)
    stems = lambda only: [nb.stem for nb in reproduce.select(only, have)]  # noqa: E731
    assert stems(["00"]) == ["00_zoo", "06_summary"]
    assert stems(["01_pr", "00"]) == ["00_zoo", "01_prefs", "06_summary"]
    assert stems(["06"]) == ["06_summary"] and stems(["06", "01"]) == ["01_prefs", "06_summary"]
    assert stems(None) == ["00_zoo", "01_prefs", "06_summary"]
    done = reproduce.run("smoke", output_dir=tmp_path / "out", notebooks_dir=nbs, only=["00"], log=lambda *a: None)
    assert [p.stem for p in done] == ["00_zoo", "06_summary"] and marker.read_text() == "00\n06\n"


def test_force_tells_every_notebook_to_recompute_what_was_cached_before_it(tmp_path):
    """--force used to re-execute the notebooks while their cached steps were reused; now each kernel is told when
    the forced run started (storage.RECOMPUTE_SINCE), and the variable is gone again afterwards."""
    import os

    from apo_utils.storage import RECOMPUTE_SINCE

    nbs = tmp_path / "nbs"
    nbs.mkdir()
    seen = tmp_path / "seen.txt"
    _nb(nbs / "00_ok.ipynb", f"import os\nopen({str(seen)!r}, 'a').write(os.environ.get({RECOMPUTE_SINCE!r}, '-') + '\\n')")
    reproduce.run("smoke", output_dir=tmp_path / "out", notebooks_dir=nbs, log=lambda *a: None)
    reproduce.run("smoke", output_dir=tmp_path / "out", notebooks_dir=nbs, log=lambda *a: None, force=True)
    first, forced = seen.read_text().split()
    assert first == "-" and float(forced) > 0
    assert RECOMPUTE_SINCE not in os.environ
