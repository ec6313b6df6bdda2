"""Where a study's hour goes: one policy run of a study's settings, timed phase by phase.

A study's record says how long its policy runs took together (`train_and_evaluate`); this says what one run
spends that time on, so that a lever is chosen by measurement: the frozen lower layers run once per text, the
training steps, the measurements along training (sampling, log-probs for KL, scoring) and the full measurement
at the end. `python -m apo_utils.run_phases --study 02_madpo_imdb --profile cpu` trains `--runs` DPO policies
(seeds 0, 1, ...) on the study's settings and one of 01's tiers, in a scratch folder (nothing cached is reused,
nothing of the study's is touched), and writes `benchmarks/results/<device>_<study>_phases.json`. The second run
shows the steady state: the lower layers' states are kept between runs, as within a study.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch

from . import evaluation, frozen_layers, policy_runs, trainer
from .bench import device_slug
from .records import device_description, git_commit, package_versions
from .storage import atomic_write_json, repo_root


class PhaseClock:
    """Each wrapped call's own time goes to its phase; a wrapped call inside it is subtracted (exclusive time),
    so the phases add up to the time spent inside wrapped calls. A phase name may carry `{stage}`: whether the
    policy is being measured along training ("checkpoints") or at the end ("end")."""

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)
        self._inner: list[float] = []  # time taken by wrapped calls inside each open call
        self.stage = "outside a measurement"

    def wrap(self, fn, phase: str, stage=None):
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            outer_stage = self.stage
            if stage is not None:
                self.stage = stage(*args, **kwargs)
            name = phase.format(stage=self.stage)
            self._inner.append(0.0)
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                took = time.perf_counter() - started
                inner = self._inner.pop()
                self.seconds[name] += took - inner
                if self._inner:
                    self._inner[-1] += took
                self.stage = outer_stage
        return timed

    @contextlib.contextmanager
    def patched(self, targets):
        """targets: (owner, attribute, phase[, stage]); each attribute replaced by its timed self while inside."""
        saved = []
        try:
            for owner, attribute, phase, *stage in targets:
                saved.append((owner, attribute, owner.__dict__[attribute]))
                original = getattr(owner, attribute)
                setattr(owner, attribute, self.wrap(original, phase, *stage))
            yield self
        finally:
            for owner, attribute, original in reversed(saved):
                setattr(owner, attribute, original)


def _stage(*args, cache_dir=None, **kwargs) -> str:
    # policy_runs measures along training with no cache (cache_dir=None) and at the end with one
    return "checkpoints" if cache_dir is None else "end"


# What a frontier run calls, named by what it does (the modules' own names, looked up where they are called).
TARGETS = [
    (policy_runs, "train_policy", "setup: model, adapters, data"),
    (frozen_layers.FrozenLowerLayers, "precompute", "lower layers (once per text)"),
    (trainer.ApoTrainer, "train", "training steps"),
    (policy_runs, "evaluate_policy", "{stage}: other", _stage),
    (evaluation, "generate", "{stage}: sampling"),
    (torch, "multinomial", "{stage}: sampling, the draw from the vocabulary"),  # transformers' sampler calls it
    (evaluation, "completion_stats", "{stage}: log-probs (KL, naturalness)"),
    (evaluation, "cached_map", "{stage}: scoring"),
    (policy_runs, "pair_logps", "ranking log-probs"),
]


def time_runs(study, tier: str, runs: int = 2, log=print) -> list[dict]:
    """`runs` DPO runs (seeds 0, 1, ...) on `tier`, each {seed, total_s, phases: {phase: s}, other_s}."""
    rows = study.train_rows(tier)
    out = []
    for seed in range(runs):
        clock = PhaseClock()
        started = time.perf_counter()
        with clock.patched(TARGETS):
            study.policy("dpo", "dpo", rows, seed=seed)
        total = time.perf_counter() - started
        phases = {k: round(v, 2) for k, v in sorted(clock.seconds.items(), key=lambda kv: -kv[1])}
        out.append({"seed": seed, "total_s": round(total, 2), "phases": phases,
                    "other_s": round(total - sum(clock.seconds.values()), 2)})
        log(f"run {seed}: {total:.0f} s — " + ", ".join(f"{k} {v:.0f} s" for k, v in phases.items()))
    return out


def main(argv=None):
    from .study import Study

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--study", default="02_madpo_imdb")
    p.add_argument("--profile", default="cpu")
    p.add_argument("--tier", default="high", help="01's tier the policies train on")
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--data", default="outputs", help="the output folder holding 01's data for the profile")
    p.add_argument("--results", default="benchmarks/results", help="where the result is written")
    a = p.parse_args(argv)
    data = Path(a.data) if Path(a.data).is_absolute() else repo_root() / a.data
    if not (data / "01_imdb_preferences" / a.profile).is_dir():
        raise SystemExit(f"no data of notebook 01 for profile {a.profile!r} under {data}: run 01 first "
                         f"(python -m apo_utils.reproduce --only 01 --profile {a.profile})")
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="apo-phases-") as scratch:
        os.symlink(data / "01_imdb_preferences", Path(scratch) / "01_imdb_preferences")
        study = Study(a.study, a.profile, 0, scratch)
        started = time.perf_counter()
        study.start({})
        start_s = time.perf_counter() - started
        runs = time_runs(study, a.tier, a.runs)
    P = study.policy_settings
    res = {"study": a.study, "profile": a.profile, "tier": a.tier, "method": "dpo", "device": device_description(),
           "git": git_commit(), "packages": package_versions(), "load_average_1min": [load_before[0], os.getloadavg()[0]],
           "settings": {k: getattr(P, k) for k in ("train_pairs", "batch_size", "epochs", "checkpoints",
                                                    "checkpoint_prompts", "n_eval_prompts", "eval_samples",
                                                    "kl_prompts", "top_layers", "cpu_bf16")},
           "start_s": round(start_s, 2), "runs": runs}
    results = Path(a.results) if Path(a.results).is_absolute() else repo_root() / a.results
    path = atomic_write_json(results / f"{device_slug(res['device'])}_{a.study}_phases.json", res)
    print(f"-> {path}")


if __name__ == "__main__":
    main()
