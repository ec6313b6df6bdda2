"""The frame every study notebook (02-05) shares, so that a notebook reads as its study and nothing else.

A `Study` resolves the profile and makes the run record, loads notebook 01's pairs and the held-out prompts,
builds the starting policy once and measures it (`start`), trains and measures each job of a method x setting
x seed grid with a progress bar (`run`, `policy`: every result cached on disk, so a run resumes), compares
methods by paired differences with 95 % intervals (`compare`), draws the figures the studies share and saves
the record (`save`).
"""

from __future__ import annotations

import time
from dataclasses import asdict, replace
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from . import plotting, profiles
from .data import QUALITIES
from .evaluation import reference_metrics, reference_pair_logps
from .ranking import implicit_margin, oriented
from .records import RunRecord
from .rewards import make_scorer
from .stats import mean_ci95, mean_spread, seeds_by_units_bootstrap, verdict  # noqa: F401 (notebooks import it here)
from .storage import atomic_write_json, repo_root
from .study import as_arrays, held_out_prompts, load_study_pairs, study_backbone, train_and_evaluate


class Study:
    """One study notebook's run: profile, folders, record, data, starting policy, jobs, comparisons."""

    def __init__(self, name: str, profile: str = "auto", seed: int = 0, output_dir="outputs", **policy_changes):
        """policy_changes: fields of the profile's PolicySettings this study sets otherwise (e.g. epochs=...)."""
        self.name, self.profile, self.seed = name, profiles.resolve(profile), seed
        prof = profiles.get(self.profile)
        self.D, self.P, self.S = prof.data, replace(prof.policy, **policy_changes), prof.study
        torch.manual_seed(seed)
        plotting.apply_style()
        out = Path(output_dir)
        self.out_dir = out if out.is_absolute() else repo_root() / out
        self.work = self.out_dir / name / self.profile
        self.fig_dir = repo_root() / "figures" / name / self.profile
        self.record = RunRecord(name, self.profile, list(self.P.seeds),
                                settings={"data": asdict(self.D), "policy": asdict(self.P), "study": asdict(self.S)})
        self.pairs = load_study_pairs(self.out_dir, self.profile)  # clear error if notebook 01 has not run
        self.prompts = held_out_prompts(self.pairs, self.P.n_eval_prompts, seed)
        self.sets: dict[str, list[dict]] = {}
        self.comparisons: list[dict] = []
        print(f"profile={self.profile}  device={self.record.data['device']}  seeds={list(self.P.seeds)}  "
              f"held-out prompts={len(self.prompts)}")

    # -- data ---------------------------------------------------------------------------------------------
    def train_rows(self, quality: str, n: int | None = None) -> list[dict]:
        """The pairs a policy trains on: `n` (default the profile's `train_pairs`) drawn once from notebook 01's
        tier, the same for every method and seed (seeds differ in data order and adapter initialisation). One
        draw, not one a seed: the frozen lower layers of a tier's pairs then run once (90 s on cpu), not per seed;
        the price is that the intervals do not cover which 1,000 pairs were drawn."""
        rows = self.pairs[quality]["train"]
        n = self.P.train_pairs if n is None else n
        if n is None or n >= len(rows):
            return list(rows)
        pick = np.sort(np.random.default_rng(0).choice(len(rows), n, replace=False))
        return [rows[i] for i in pick]

    def held_out_pairs(self, n: int) -> list[dict]:
        """A fixed sample of `n` held-out pairs of both tiers, turned so that chosen is never truly the worse
        response: a policy's ranking accuracy on them is agreement with the truth, whatever the tier's labels say.
        Pairs the truth scores alike (12 of the 600 on cpu: VADER gives both the same score) stay in; no ranking
        of them is right, so they add noise, not bias, to a paired difference."""
        rows, _ = oriented([r for q in QUALITIES for r in self.pairs[q]["test"]])
        pick = sorted(np.random.default_rng(0).choice(len(rows), min(n, len(rows)), replace=False))
        return [rows[i] for i in pick]

    # -- the starting policy ------------------------------------------------------------------------------
    def start(self, sets: dict[str, list[dict]] | None = None) -> dict:
        """Build the starting policy every method trains from (on cpu the vocabulary-trimmed copy) and the
        ground-truth scorer, then measure the start: its reward on the held-out prompts and its log-probs of
        each pair set (`sets`, {name: rows}; a policy's ranking accuracy is measured on these)."""
        self.sets = dict(sets or {})
        with self.record.step("backbone"):
            texts = [r["prompt"] + r[k] for q in QUALITIES for s in ("train", "test") for r in self.pairs[q][s]
                     for k in ("chosen", "rejected")] + self.prompts
            self.backbone = study_backbone(self.D.policy, self.P.trim_vocab, texts)
            self.scorer = make_scorer(self.D.scorer, vader_label_scale=self.D.label_scale)
        with self.record.step("reference"):
            self.ref = reference_metrics(self.backbone, self.prompts, self.scorer, self.work, self.P, seed=self.seed)
            self.ref_logps = reference_pair_logps(self.backbone, self.sets, self.work)
        print(f"starting policy: true reward {self.ref['reward']:.3f} ± {self.ref['reward_se']:.3f} "
              f"on {self.ref['n']} samples")
        return self.ref

    def start_accuracy(self, loss_name: str, name: str) -> float:
        """The starting policy's ranking accuracy on a set under a method's implicit reward (ties half right)."""
        return float(np.mean(_correct(implicit_margin(loss_name, self.ref_logps[name], self.ref_logps[name]))))

    # -- training and measuring ---------------------------------------------------------------------------
    def policy(self, method: str, loss_name: str, rows: list[dict], *, seed: int, folder: str = "",
               loss_kwargs: dict | None = None, measure: tuple[str, ...] = (), **kw) -> dict:
        """Train one policy and measure it (cached): true reward (mean and per held-out prompt), KL from the start,
        and for each set in `measure` the ranking of its pairs by the method's implicit reward (per pair and
        the accuracy). `kw` goes to `study.train_and_evaluate` (track_sets, log_pairs, ...); its raw result is
        under 'raw'."""
        r = train_and_evaluate(method, loss_name, rows, self.prompts, self.scorer, self.backbone, self.work / folder,
                               self.P, seed=seed, loss_kwargs=loss_kwargs,
                               pair_sets={k: self.sets[k] for k in measure}, **kw)
        out = {"reward": r["reward"], "kl": r["kl"], "n": r["n"], "reused": r["reused"],
               "train_runtime_s": r["train_runtime_s"], "train_pairs": len(rows), "prompt_rewards": r["prompt_rewards"]}
        for k in measure:
            c = _correct(implicit_margin(loss_name, as_arrays(r["pairs"][k]), self.ref_logps[k]))
            out[f"{k}_correct"], out[f"{k}_accuracy"] = c.tolist(), float(c.mean())
        return {**out, "raw": r}

    def run(self, jobs: list[dict], train_one, desc: str = "policies", step: str = "train_and_evaluate") -> pd.DataFrame:
        """Each job (a dict with at least 'setting', 'seed' and 'method') through `train_one(job) -> dict`, with a
        progress bar and one line a job, timed as the record's `step`. Rows: the job's keys, then the result's."""
        rows = []
        with self.record.step(step):
            for job in tqdm(jobs, desc=desc):
                t0 = time.time()
                rows.append({**job, **train_one(job)})
                r = rows[-1]
                shown = "  ".join(f"{k} {r[k]:+.3f}" for k in ("reward", "test_accuracy", "truth_accuracy")
                                  if k in r and np.isfinite(r[k]))
                tqdm.write(f"{job['setting']:>10s} seed {job['seed']} {job['method']:15s} {shown}  "
                           f"({time.time() - t0:.0f} s{', finished before' if r.get('reused') else ''})")
        return pd.DataFrame(rows)

    # -- statistics ---------------------------------------------------------------------------------------
    def table(self, runs: pd.DataFrame, metrics=("reward", "kl")) -> dict:
        """{(setting, method): {metric: mean, sd, se, n over seeds}} for the metrics a frame has."""
        return {(s, m): {k: mean_spread(sub[k]) for k in metrics if k in sub}
                for (s, m), sub in runs.groupby(["setting", "method"], sort=False)}

    def compare(self, runs: pd.DataFrame, setting: str, metric: str, method: str, baseline: str, note: str = "") -> dict:
        """`paired_comparison` on this study's runs and pair sets; kept for the record (`metrics.comparisons`)."""
        entry = paired_comparison(runs, setting, metric, method, baseline, self.sets)
        self.comparisons.append({**entry, **({"note": note} if note else {})})
        return self.comparisons[-1]

    def comparison_frame(self) -> pd.DataFrame:
        return pd.DataFrame([{"setting": c["setting"], "metric": c["metric"],
                              "comparison": f"{plotting.label(c['method'])} − {plotting.label(c['baseline'])}",
                              "difference": f"{c['diff']:+.3f}", "95 % CI": f"[{c['ci95'][0]:+.3f}, {c['ci95'][1]:+.3f}]",
                              "half-width": round(c["half_width"], 3), "seeds": c["n_seeds"], "units": c["n_units"],
                              "verdict": verdict(c)} for c in self.comparisons])

    # -- figures ------------------------------------------------------------------------------------------
    def reward_kl_figure(self, runs: pd.DataFrame, settings, methods, filename: str = "reward_vs_kl", titles=None):
        """True reward against KL from the start, one panel a setting: small dots seeds, large ones the mean with
        a 95 % interval over seeds (t), the star the starting policy."""
        fig, axes = plt.subplots(1, len(settings), figsize=(6 * len(settings), 4.4), sharey=True, squeeze=False)
        for ax, s in zip(axes[0], settings):
            ax.scatter([0], [self.ref["reward"]], marker="*", s=160, color="k", zorder=5, label="starting policy")
            for m in methods:
                sub = runs[(runs.setting == s) & (runs.method == m)]
                if sub.empty:
                    continue
                ax.scatter(sub.kl, sub.reward, s=14, alpha=0.45, color=plotting.color(m))
                (mk, ek), (mr, er) = (mean_ci95(sub[k]) for k in ("kl", "reward"))
                ax.errorbar(mk, mr, xerr=ek, yerr=er, fmt="o", ms=7, capsize=3, color=plotting.color(m),
                            label=plotting.label(m))
            ax.set(xlabel="KL(π ‖ π_start) (nats per continuation)", title=(titles or {}).get(s, s))
        axes[0][0].set_ylabel(self.reward_label())
        handles = {lab: h for ax in axes[0] for h, lab in zip(*ax.get_legend_handles_labels())}  # every method once
        axes[0][-1].legend(handles.values(), handles.keys(), fontsize=8)
        fig.suptitle("Reward against KL: dots are seeds, large markers the mean with a 95 % interval over seeds")
        return self.savefig(fig, filename)

    def comparison_figure(self, filename: str = "paired_differences", title: str | None = None):
        """Every comparison made so far: the paired difference and its 95 % interval, one panel a metric."""
        metrics = list(dict.fromkeys(c["metric"] for c in self.comparisons))
        rows = max(sum(c["metric"] == m for c in self.comparisons) for m in metrics)
        fig, axes = plt.subplots(1, len(metrics), figsize=(6.5 * len(metrics), 0.9 + 0.45 * rows), squeeze=False)
        for ax, metric in zip(axes[0], metrics):
            cs = [c for c in self.comparisons if c["metric"] == metric]
            y = rows - 1 - np.arange(len(cs))  # from the top, one row's height in every panel
            ax.set_ylim(-0.5, rows - 0.5)
            for yi, c in zip(y, cs):
                ax.errorbar(c["diff"], yi, xerr=[[c["diff"] - c["ci95"][0]], [c["ci95"][1] - c["diff"]]], fmt="o",
                            capsize=4, color=plotting.color(c["method"]))
            ax.axvline(0, color="k", lw=0.8)
            most = max(c["n_seeds"] for c in cs)
            ax.set_yticks(y, [f"{c['setting']}: {plotting.label(c['method'])} − {plotting.label(c['baseline'])}"
                              + (f" ({c['n_seeds']} seed{'s' * (c['n_seeds'] > 1)})" if c["n_seeds"] < most else "")
                              for c in cs], fontsize=8)
            ax.set(xlabel=f"paired difference in {METRIC_LABELS.get(metric, metric)} (95 % CI)")
        fig.suptitle(title or "Method minus baseline, same seeds and held-out units")
        return self.savefig(fig, filename)

    def reward_label(self) -> str:
        return "mean true reward of samples" + (" (VADER compound)" if self.D.scorer == "vader" else "")

    def savefig(self, fig, filename: str):
        path = plotting.savefig(fig, self.fig_dir / filename, self.record)
        plt.show()
        return path

    # -- checks and the record ----------------------------------------------------------------------------
    def check_runs(self, runs: pd.DataFrame, n_jobs: int):
        """What every study's runs must satisfy (nbval runs these): all jobs present, finite, in range, and every
        policy measured on the same held-out prompts as the start."""
        assert len(runs) == n_jobs, f"{len(runs)} runs for {n_jobs} jobs"
        assert np.isfinite(runs.reward).all() and np.isfinite(runs.kl).all()
        if self.D.scorer == "vader":
            assert runs.reward.between(-1.0001, 1.0001).all()
        assert (runs.n == self.ref["n"]).all() and all(len(p) == len(self.prompts) for p in runs.prompt_rewards)
        for c in [c for c in runs.columns if c.endswith("_accuracy")]:
            assert runs[c].between(0, 1).all(), c

    def save(self, runs: pd.DataFrame, table: dict, **metrics) -> Path:
        """Write the run record (metrics, comparisons, sizes, provenance) and a copy of the metrics to output_dir."""
        per_unit = [c for c in runs.columns if c in ("raw", "prompt_rewards") or c.endswith(("_correct", "_units"))]
        backbone = Path(self.backbone).name if Path(self.backbone).is_dir() else self.backbone
        metrics = {"reference": {k: v for k, v in self.ref.items() if k not in ("examples", "prompt_rewards")},
                   "table": {"/".join(map(str, k)): v for k, v in table.items()}, "comparisons": self.comparisons,
                   **metrics, "runs": runs.drop(columns=per_unit).to_dict(orient="records"), "backbone": backbone,
                   "held_out_prompts": len(self.prompts), "held_out_pairs": {k: len(v) for k, v in self.sets.items()},
                   "train_pairs_per_policy": int(runs.train_pairs.min()) if "train_pairs" in runs else None,
                   "runs_reused": int(runs.reused.sum()), "runs_total": len(runs)}
        self.record.metrics.update(metrics)
        self.record.data["provenance"] = {"scorer": self.scorer.description, "backbone": backbone}
        path = self.record.save()
        atomic_write_json(self.work / "metrics.json", metrics)
        print("run record:", path.relative_to(repo_root()))
        return path


METRIC_LABELS = {"reward": "true reward (VADER compound)", "test_accuracy": "held-out ranking accuracy",
                 "test_mean_logp_accuracy": "held-out ranking accuracy by mean log-prob (no reference)",
                 "ece": "expected calibration error"}


def paired_comparison(runs: pd.DataFrame, setting: str, metric: str, method: str, baseline: str,
                      sets: dict | None = None) -> dict:
    """Paired difference `method` − `baseline` on `metric` in one setting: the same seeds (same data, order and
    adapter initialisation) and the same units. Units: held-out prompts for 'reward' (the mean of a prompt's
    samples, column 'prompt_rewards'); pairs of a set for '<set>_..._accuracy' (column '<set>_..._correct') and
    for any other '<set>_...' metric (column '<metric>_units'), grouped by the prompt of each pair in
    `sets[<set>]` (a prompt's pairs are not independent). 95 % interval by resampling seeds and units
    (stats.seeds_by_units_bootstrap)."""
    sub = runs[runs.setting == setting]
    col = ("prompt_rewards" if metric == "reward" else metric.removesuffix("_accuracy") + "_correct"
           if metric.endswith("_accuracy") else metric + "_units")
    a, b = (sub[sub.method == m].set_index("seed")[col] for m in (method, baseline))
    seeds = sorted(set(a.index) & set(b.index))
    if not seeds:
        raise ValueError(f"no seed has both {method!r} and {baseline!r} in setting {setting!r}")
    diff = np.array([np.asarray(a[s], dtype=float) - np.asarray(b[s], dtype=float) for s in seeds])
    pairs = (sets or {}).get(metric.split("_")[0]) if metric != "reward" else None
    groups = None if pairs is None else [r["prompt"] for r in pairs]
    return {"setting": setting, "metric": metric, "method": method, "baseline": baseline,
            **seeds_by_units_bootstrap(diff, groups)}


def _correct(h) -> np.ndarray:
    h = np.asarray(h, dtype=float)
    return np.where(h == 0, 0.5, (h > 0).astype(float))

