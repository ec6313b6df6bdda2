"""Where a run's time goes (run_phases): each wrapped call keeps its own time, the wrapping is undone, and a real
run on the smoke profile is split into the phases a study spends its hour on."""

import json
import time
import types

import numpy as np
import pytest

from apo_utils import run_phases
from apo_utils.data import pairs_path, save_pairs
from apo_utils.prompts import offline_prompts
from apo_utils.tiny import REVIEW_WORDS


def test_a_call_inside_another_is_taken_out_of_the_outer_phase():
    owner = types.SimpleNamespace()
    owner.inner = lambda: time.sleep(0.05)

    def outer(cache_dir=None):
        time.sleep(0.02)
        owner.inner()
    owner.outer = outer
    clock = run_phases.PhaseClock()
    with clock.patched([(owner, "outer", "{stage}: outer", run_phases._stage), (owner, "inner", "{stage}: inner")]):
        owner.outer(cache_dir=None)
        owner.outer(cache_dir="somewhere")
        owner.inner()
    s = clock.seconds
    assert set(s) == {"checkpoints: outer", "checkpoints: inner", "end: outer", "end: inner",
                      "outside a measurement: inner"}
    assert s["checkpoints: inner"] == pytest.approx(0.05, abs=0.03) and s["checkpoints: outer"] == pytest.approx(0.02, abs=0.015)
    assert s["end: outer"] < s["end: inner"]  # the outer call's own time only
    assert owner.outer is outer  # unwrapped again


def test_the_wrapping_is_undone_when_a_call_fails():
    owner = types.SimpleNamespace()
    original = owner.fails = lambda: 1 / 0
    clock = run_phases.PhaseClock()
    with pytest.raises(ZeroDivisionError):
        with clock.patched([(owner, "fails", "failing")]):
            owner.fails()
    assert owner.fails is original and clock.seconds["failing"] >= 0 and clock._inner == []


def _smoke_pairs(root, n_train=48, n_test=16, seed=0):
    rng = np.random.default_rng(seed)
    words = [w for w in REVIEW_WORDS if w.isalpha()]
    prompts = offline_prompts(32, seed)
    for tier in ("high", "low"):
        for split, n in (("train", n_train), ("test", n_test)):
            rows = []
            for i in range(n):
                a, b = rng.normal(size=2)
                rows.append({"prompt": prompts[(i + (split == "test") * 16) % 32], "prompt_id": i,
                             "chosen": " " + " ".join(rng.choice(words, 8)), "rejected": " " + " ".join(rng.choice(words, 8)),
                             "margin": float(a), "true_margin": float(abs(b)), "label_correct": True,
                             "chosen_score": 0.5, "rejected_score": 0.4})
            save_pairs(rows, pairs_path(root, "smoke", tier, split))


def test_a_smoke_run_is_split_into_the_phases_of_a_frontier_run(tmp_path):
    data, results = tmp_path / "data", tmp_path / "results"
    _smoke_pairs(data)
    run_phases.main(["--study", "02_madpo_imdb", "--profile", "smoke", "--runs", "1", "--data", str(data),
                     "--results", str(results)])
    (path,) = results.glob("*_02_madpo_imdb_phases.json")
    res = json.loads(path.read_text())
    assert res["profile"] == "smoke" and res["git"]["commit"] and res["packages"] and res["settings"]["checkpoints"] == 3
    (run,) = res["runs"]
    phases = run["phases"]
    for name in ("training steps", "setup: model, adapters, data", "checkpoints: sampling", "end: sampling",
                 "end: log-probs (KL, naturalness)", "end: scoring"):
        assert phases[name] > 0, name
    assert all(v >= 0 for v in phases.values()) and run["other_s"] >= -0.05
    assert sum(phases.values()) + run["other_s"] == pytest.approx(run["total_s"], abs=0.05)
    assert not list((data / "02_madpo_imdb").glob("*"))  # the study's own folder untouched


def test_without_01s_data_it_says_what_to_run(tmp_path):
    with pytest.raises(SystemExit, match="run 01 first"):
        run_phases.main(["--profile", "smoke", "--data", str(tmp_path)])
