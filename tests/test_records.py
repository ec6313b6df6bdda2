"""Run records: a cached re-run never hides what a study costs (full_run_s), and cache reuse is counted."""

import ast
import inspect
import textwrap

from apo_utils import env, records
from apo_utils.cache import cached_map
from apo_utils.records import RunRecord
from apo_utils.storage import read_json


def test_full_run_time_survives_a_cached_rerun(tmp_path):
    def run(n_items):
        rec = RunRecord("99_test", "smoke", [0], figures_dir=tmp_path / "figures")
        cached_map(lambda b: [x * 2 for x in b], list(range(n_items)), 2, tmp_path / "cache", key={"k": 1},
                   progress=False)
        return read_json(rec.save())

    first = run(6)
    assert first["reused"] == {} and first["full_run_s"] == first["wall_time_s"]["total"]
    assert first["full_run_commit"] == first["git"]["commit"]
    second = run(6)  # every batch from the cache
    assert second["reused"] == {"cache batches": 3}
    assert second["full_run_s"] == first["full_run_s"]  # the cost of the run that computed everything
    third = run(8)  # other items: computed from nothing again
    assert third["reused"] == {} and third["full_run_s"] == third["wall_time_s"]["total"]


def test_a_first_record_from_a_cached_run_says_the_full_cost_is_unknown(tmp_path):
    cached_map(lambda b: b, [1, 2], 1, tmp_path / "cache", key={}, progress=False)
    rec = RunRecord("99_test", "smoke", [0], figures_dir=tmp_path / "figures")
    cached_map(lambda b: b, [1, 2], 1, tmp_path / "cache", key={}, progress=False)
    saved = read_json(rec.save())
    assert saved["reused"] == {"cache batches": 2} and saved["full_run_s"] is None


def test_a_learners_run_is_shown_beside_the_reference_not_over_it(tmp_path, monkeypatch, capsys):
    import json

    from apo_utils import records

    monkeypatch.setattr(records, "repo_root", lambda: tmp_path)
    monkeypatch.delenv(records.UPDATE_REFERENCE, raising=False)
    committed = tmp_path / "figures" / "02_x" / "cpu"
    assert records.RunRecord("02_x", "cpu", [0]).dir == committed  # no reference yet: this run makes it
    committed.mkdir(parents=True)
    row = {"setting": "high", "metric": "reward", "method": "madpo", "baseline": "dpo", "kl": 1.0, "note": "matched KL"}
    (committed / "run_record.json").write_text(json.dumps({"metrics": {"comparisons": [
        {**row, "diff": 0.1, "ci95": [0.0, 0.2]}]}}))
    mine = records.RunRecord("02_x", "cpu", [0])
    assert mine.dir == tmp_path / "outputs" / "figures" / "02_x" / "cpu"
    mine.metrics["comparisons"] = [{**row, "diff": 0.05, "ci95": [-0.01, 0.11]}]
    mine.save()
    assert json.loads((committed / "run_record.json").read_text())["metrics"]["comparisons"][0]["diff"] == 0.1
    out = capsys.readouterr().out
    assert "yours +0.050 [-0.010, +0.110], reference +0.100 [+0.000, +0.200]" in out
    monkeypatch.setenv(records.UPDATE_REFERENCE, "1")  # on purpose: the reference is replaced
    assert records.RunRecord("02_x", "cpu", [0]).dir == committed
    monkeypatch.delenv(records.UPDATE_REFERENCE)
    assert records.RunRecord("02_x", "smoke", [0]).dir == tmp_path / "figures" / "02_x" / "smoke"  # never committed


def test_a_cached_rerun_at_other_settings_does_not_inherit_the_old_cost(tmp_path):
    def run(settings):
        rec = RunRecord("99_test", "smoke", [0], settings=settings, figures_dir=tmp_path / "figures")
        cached_map(lambda b: b, [1, 2], 1, tmp_path / "cache", key={}, progress=False)
        return read_json(rec.save())

    first = run({"pairs": 400, "seeds": (0, 1)})
    assert first["full_run_s"] == first["wall_time_s"]["total"]
    again = run({"pairs": 400, "seeds": (0, 1)})  # the same settings (a tuple, read back from JSON as a list)
    assert again["reused"] and again["full_run_s"] == first["full_run_s"]
    second = run({"pairs": 300, "seeds": (0, 1)})  # its batches came from the cache, but the old cost was for other settings
    assert second["reused"] == {"cache batches": 2} and second["full_run_s"] is None
    assert second["full_run_commit"] is None


def test_time_from_nothing_is_never_below_the_records_own_wall_time():
    from apo_utils.records import time_from_nothing

    assert time_from_nothing({"full_run_s": 2400.0, "wall_time_s": {"total": 3600.0}}) == 3600.0
    assert time_from_nothing({"full_run_s": 3600.0, "wall_time_s": {"total": 60.0}}) == 3600.0
    assert time_from_nothing({"full_run_s": None, "wall_time_s": {"total": 60.0}}) == 60.0
    assert time_from_nothing({}) is None


AMX = """processor	: 0
model name	: Intel(R) Xeon(R) Platinum 8480+
flags		: fpu sse avx512f amx_bf16 amx_tile avx512_bf16
"""


def test_a_record_names_the_processor_and_its_bf16_units():
    """Two 2-core machines can differ 2x in time and, with bf16 on one only, in the last digits: say which ran."""
    assert records.processor_details(AMX) == ["Intel(R) Xeon(R) Platinum 8480+", "bf16 units: amx_bf16 and avx512_bf16"]
    amd = "model name : AMD EPYC\nflags : fpu avx512f avx512_bf16\n"
    assert records.processor_details(amd) == ["AMD EPYC", "bf16 units: avx512_bf16"]
    assert records.processor_details("model name : Old Xeon\nflags : fpu avx2 avx512f\n") == ["Old Xeon", "no bf16 units"]
    assert records.processor_details("") == []  # no /proc/cpuinfo fields (not Linux, a container hiding them)
    assert records.device_description().startswith(("cpu: ", "cuda: "))


def test_the_bf16_flags_a_record_names_are_the_ones_training_reads():
    tree = ast.parse(textwrap.dedent(inspect.getsource(env.cpu_has_bf16)))
    tuples = [ast.literal_eval(n) for n in ast.walk(tree)
              if isinstance(n, ast.Tuple) and all(isinstance(e, ast.Constant) for e in n.elts)]
    assert tuple(records.BF16_FLAGS) in tuples
