"""A study notebook's runs and their record: what every study notebook (02-05) shares, so it reads as its study.

A `Study` resolves the profile and starts the run record, loads notebook 01's pairs and the held-out prompts,
builds the starting policy once and measures it (`start`), trains and measures each job of the study's grid with a
progress bar (`run`, `policy`: every result cached on disk, so a run resumes), keeps its paired comparisons
(`compare`) and saves the record (`save`). Figures are drawn by `plotting.py`, tables and intervals by `stats.py`;
one policy run is `policy_runs.py`.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, replace
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from . import plotting, profiles, stats
from .data import QUALITIES, load_pairs, pairs_path
from .env import cpu_has_bf16
from .evaluation import reference_metrics, reference_pair_logps
from .policy_runs import Checkpoints, as_arrays, train_and_evaluate
from .prompts import offline_prompts
from .ranking import correct, implicit_margin, oriented
from .records import RunRecord
from .ground_truth import make_scorer
from .storage import atomic_write_json, read_json_or_none, repo_root
from .vocab import study_backbone


class Study:
    """One study notebook's run: profile and settings, folders, record, data, starting policy, runs, comparisons."""

    def __init__(self, name: str, profile: str = "auto", seed: int = 0, output_dir="outputs"):
        self.name, self.profile, self.seed = name, profiles.resolve(profile), seed
        chosen = profiles.get(self.profile)
        self.settings = chosen.study_settings(name)  # this notebook's own settings (profiles.py)
        self.data_settings = chosen.data
        changes = self.settings.policy_changes() if hasattr(self.settings, "policy_changes") else {}
        self.policy_settings = replace(chosen.policy, **changes)
        if self.policy_settings.cpu_bf16 and not torch.cuda.is_available() and not cpu_has_bf16():
            # bf16 is emulated on this CPU, 3x slower than float32: train and sample in float32 (the record says so)
            print("this CPU has no native bfloat16: training and sampling in float32 (cpu_bf16 off)")
            self.policy_settings = replace(self.policy_settings, cpu_bf16=False)
        self.seeds = list(self.policy_settings.seeds)
        torch.manual_seed(seed)
        plotting.apply_style()
        out = Path(output_dir)
        self.out_dir = out if out.is_absolute() else repo_root() / out
        self.work = self.out_dir / name / self.profile
        section = profiles.STUDY_SECTIONS[name]
        self.record = RunRecord(name, self.profile, self.seeds,
                                settings={"data": asdict(self.data_settings), "policy": asdict(self.policy_settings),
                                          section: asdict(self.settings)})
        self.fig_dir = self.record.dir  # the committed reference only on purpose (records.figures_root)
        self.pairs = load_study_pairs(self.out_dir, self.profile)  # clear error if notebook 01 has not run
        self.prompts = held_out_prompts(self.pairs, self.policy_settings.n_eval_prompts, seed)
        self.sets: dict[str, list[dict]] = {}
        self.comparisons: list[dict] = []
        self.backbone, self.scorer, self.ref = None, None, {}  # set by `start` (a study of reward models never calls it)
        print(f"profile={self.profile}  device={self.record.data['device']}  seeds={self.seeds}  "
              f"held-out prompts={len(self.prompts)}")

    # -- data ---------------------------------------------------------------------------------------------
    def train_rows(self, quality: str, n: int | None = None) -> list[dict]:
        """The pairs a policy trains on: `n` (default the profile's `train_pairs`) drawn once from notebook 01's
        tier, the same for every method and seed (seeds differ in data order and adapter initialisation). One
        draw, not one a seed: the frozen lower layers of a tier's pairs then run once (90 s on cpu), not per seed;
        the price is that the intervals do not cover which 1,000 pairs were drawn."""
        rows = self.pairs[quality]["train"]
        n = self.policy_settings.train_pairs if n is None else n
        if n is None or n >= len(rows):
            return list(rows)
        return sample_rows(rows, n, np.random.default_rng(0))

    def held_out_pairs(self, n: int, tiers=QUALITIES, turned: bool = True, rng=None) -> list[dict]:
        """A fixed sample of `n` held-out pairs of `tiers`. turned: each pair turned so that chosen is never truly
        the worse response, so a policy's ranking accuracy on them is agreement with the truth, whatever the
        labels say; pairs the truth scores alike (12 of the 600 on cpu: VADER gives both the same score) stay in,
        adding noise, not bias, to a paired difference. rng: to draw more samples after this one in sequence."""
        rows = [r for q in tiers for r in self.pairs[q]["test"]]
        rows = oriented(rows)[0] if turned else rows
        return sample_rows(rows, n, np.random.default_rng(0) if rng is None else rng)

    # -- the starting policy ------------------------------------------------------------------------------
    def start(self, sets: dict[str, list[dict]] | None = None) -> dict:
        """Build the starting policy every method trains from (on cpu the vocabulary-trimmed copy) and the
        ground-truth scorer, then measure the start: its reward on the held-out prompts and its log-probs of
        each pair set (`sets`, {name: rows}; a policy's ranking accuracy is measured on these)."""
        self.sets = dict(sets or {})
        data = self.data_settings
        with self.record.step("backbone"):
            texts = [r["prompt"] + r[k] for q in QUALITIES for s in ("train", "test") for r in self.pairs[q][s]
                     for k in ("chosen", "rejected")] + self.prompts
            self.backbone = study_backbone(data.policy, self.policy_settings.trim_vocab, texts)
            self.scorer = make_scorer(data.scorer, vader_label_scale=data.label_scale)
        with self.record.step("reference"):
            self.ref = reference_metrics(self.backbone, self.prompts, self.scorer, self.work, self.policy_settings,
                                         seed=self.seed)
            self.ref_logps = reference_pair_logps(self.backbone, self.sets, self.work)
        print(f"starting policy: true reward {self.ref['reward']:.3f} ± {self.ref['reward_se']:.3f} "
              f"on {self.ref['n']} samples")
        return self.ref

    def naturalness_margin(self) -> float:
        """The 'no difference' margin for how natural the samples read (the start model's log-prob a token): a fifth
        of its standard deviation between the start's own held-out prompts. No paper reports an effect on this scale
        to take a fifth of, so the metric's own spread stands in (a fifth of a standard deviation is conventionally
        a small effect). A fifth of how far DPO's samples moved would be near 0 where DPO barely moves, a margin no
        interval could meet."""
        values = np.asarray(self.ref["prompt_start_logp_per_token"], dtype=float)
        if values.size < 2:
            raise ValueError(f"the start was measured on {values.size} prompt(s): no spread to set a margin from")
        return 0.2 * float(values.std(ddof=1))

    def start_accuracy(self, loss_name: str, name: str) -> float:
        """The starting policy's ranking accuracy on a set under a method's implicit reward (ties half right)."""
        return float(np.mean(correct(implicit_margin(loss_name, self.ref_logps[name], self.ref_logps[name]))))

    # -- training and measuring ---------------------------------------------------------------------------
    def policy(self, method: str, loss_name: str, rows: list[dict], *, seed: int, folder: str = "",
               loss_kwargs: dict | None = None, measure: tuple[str, ...] = (), **kw) -> dict:
        """Train one policy and measure it (cached): true reward (mean and per held-out prompt), KL from the start,
        and for each set in `measure` the ranking of its pairs by the method's implicit reward (per pair and
        the accuracy). `kw` goes to `policy_runs.train_and_evaluate` (track_sets, log_pairs, ...); its raw result
        is under 'raw'. With the profile's `checkpoints`, reward and KL are also measured along training
        ('frontier': [{step, kl, reward, prompt_rewards}], see `frontier_rows`)."""
        training = self.policy_settings
        if training.checkpoints is not None and training.checkpoints < 2:
            raise ValueError(f"checkpoints must be at least 2 (the start and the end), got {training.checkpoints!r}")
        if training.checkpoints and "checkpoints" not in kw:  # evenly along training, the start and the end included
            steps = math.ceil(training.epochs * math.ceil(len(rows) / training.batch_size))
            kw["checkpoints"] = Checkpoints(every=max(1, math.ceil(steps / (training.checkpoints - 1))),
                                            prompts=training.checkpoint_prompts)
        r = train_and_evaluate(method, loss_name, rows, self.prompts, self.scorer, self.backbone, self.work / folder,
                               training, seed=seed, loss_kwargs=loss_kwargs,
                               pair_sets={k: self.sets[k] for k in measure}, **kw)
        out = {"reward": r["reward"], "kl": r["kl"], "n": r["n"], "reused": r["reused"], "beta": r.get("beta"),
               "train_runtime_s": r["train_runtime_s"], "train_pairs": len(rows), "prompt_rewards": r["prompt_rewards"],
               "frontier": r.get("frontier", []),
               **{k: r[k] for k in ("start_logp_per_token", "distinct_2", "prompt_start_logp_per_token",
                                    "prompt_samples") if k in r}}
        for k in measure:
            c = correct(implicit_margin(loss_name, as_arrays(r["pairs"][k]), self.ref_logps[k]))
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

    def compare(self, runs: pd.DataFrame, setting: str, metric: str, method: str, baseline: str, note: str = "",
                matters: float | None = None) -> dict:
        """`stats.paired_comparison` on this study's runs and pair sets; kept for the record (`metrics.comparisons`).
        matters: the smallest difference that matters for this metric (the verdict's 'no difference' margin)."""
        entry = stats.paired_comparison(runs, setting, metric, method, baseline, self.sets, matters)
        self.comparisons.append({**entry, **({"note": note} if note else {})})
        return self.comparisons[-1]

    def compare_at_kl(self, rows: list[dict], setting: str, method: str, baselines, n_budgets: int = 2,
                      matters: float = 0.03, metric: str = "reward", budgets: list[float] | None = None,
                      note: str = "matched KL") -> list[float]:
        """`method` against each baseline at `n_budgets` KL budgets all of them reach (`stats.common_budgets`; or the
        `budgets` given): `stats.matched_kl_comparison` of `metric` on frontier rows (`frontier_rows`), each side on
        its best beta, kept for the record with its budget ('kl'). Returns the budgets."""
        if budgets is None:
            budgets = stats.common_budgets(rows, setting, [method, *baselines], n=n_budgets)
        for baseline in baselines:
            for budget in budgets:
                entry = stats.matched_kl_comparison(rows, setting, method, baseline, budget, matters=matters,
                                                    metric=metric)
                self.comparisons.append({**entry, "note": note})
        return budgets

    @staticmethod
    def frontier_rows(runs: pd.DataFrame) -> list[dict]:
        """One row a checkpoint of every run: {setting (the tier, a job's 'tier' when it has one), method, seed, beta,
        step, kl, reward, prompt_rewards}: what frontiers are drawn from and matched-KL comparisons made on."""
        out = []
        for job in runs.to_dict(orient="records"):
            tier = job.get("tier") if isinstance(job.get("tier"), str) else job["setting"]
            points = job.get("frontier")  # a list, or missing (NaN in a frame) for runs that measured none
            out += [{"setting": tier, "method": job["method"], "seed": job["seed"], "beta": job["beta"], **point}
                    for point in (points if isinstance(points, list) else [])]
        return out

    def metrics_of(self, study: str) -> dict:
        """Another study's metrics from its run in this output folder and profile (what a companion notebook builds
        on); a clear error naming the notebook to run when it has not run."""
        path = self.out_dir / study / self.profile / "metrics.json"
        metrics = read_json_or_none(path)
        if not metrics:
            raise FileNotFoundError(f"{path} is missing or unreadable: run notebook {study} with profile "
                                    f"{self.profile!r} first (python -m apo_utils.reproduce --only {study[:2]} "
                                    f"--profile {self.profile})")
        return metrics

    def frontiers_of(self, study: str) -> list[dict]:
        """Another study's frontier rows (per-prompt values included): a companion notebook draws and compares its
        runs with the main notebook's."""
        path = self.out_dir / study / self.profile / "metrics.json"
        rows = self.metrics_of(study).get("frontier_points")
        if not rows:
            raise FileNotFoundError(f"{path} has no frontier points: run notebook {study} with profile "
                                    f"{self.profile!r} first (python -m apo_utils.reproduce --only {study[:2]} "
                                    f"--profile {self.profile})")
        return [{**r, "notebook": study} for r in rows]  # where they were measured, kept in this record

    def samples_at_kl(self, rows: list[dict], setting: str, methods, budget: float, seed: int,
                      prompts: int = 2) -> pd.DataFrame:
        """What the start and each method write, at about the same KL: for one seed, each method's checkpoint whose
        KL is nearest `budget` (any beta), its samples of the first `prompts` held-out prompts. Reading them is the
        check a lexicon reward needs: a policy can earn VADER's praise with a string of 'great'."""
        out = [{"method": "starting policy", "beta": None, "step": 0, "kl": 0.0, "prompt": p, "sample": y}
               for p, ys in zip(self.prompts, self.ref.get("prompt_samples", [])[:prompts]) for y in ys]
        for m in methods:
            points = [r for r in rows if r["setting"] == setting and r["method"] == m and r["seed"] == seed
                      and r.get("prompt_samples")]
            if not points:
                continue
            near = min(points, key=lambda r: abs(r["kl"] - budget))
            out += [{"method": m, "beta": near["beta"], "step": near["step"], "kl": round(near["kl"], 2), "prompt": p,
                     "sample": y} for p, ys in zip(self.prompts, near["prompt_samples"][:prompts]) for y in ys]
        return pd.DataFrame(out)

    # -- figures, checks and the record -------------------------------------------------------------------
    def reward_label(self) -> str:
        return "mean true reward of samples" + (" (VADER compound)" if self.data_settings.scorer == "vader" else "")

    def savefig(self, fig, filename: str):
        path = plotting.savefig(fig, self.fig_dir / filename, self.record)
        plt.show()
        return path

    def check_runs(self, runs: pd.DataFrame, n_jobs: int):
        """What every study's runs must satisfy (nbval runs these): all jobs present, finite, in range, every policy
        measured on the same held-out prompts as the start, methods of a setting and seed on as many pairs, and every
        comparison an interval around its mean."""
        assert len(runs) == n_jobs, f"{len(runs)} runs for {n_jobs} jobs"
        assert np.isfinite(runs.reward).all() and np.isfinite(runs.kl).all()
        if self.data_settings.scorer == "vader":
            assert runs.reward.between(-1.0001, 1.0001).all()
        assert (runs.n == self.ref["n"]).all() and all(len(p) == len(self.prompts) for p in runs.prompt_rewards)
        for c in [c for c in runs.columns if c.endswith("_accuracy")]:
            assert runs[c].between(0, 1).all(), c
        if "train_pairs" in runs:  # within a setting and seed every method trained on the same number of pairs
            assert (runs.groupby(["setting", "seed"]).train_pairs.nunique() == 1).all()
        assert all(c["ci95"][0] <= c["diff"] <= c["ci95"][1] for c in self.comparisons)

    def save(self, runs: pd.DataFrame, table: dict, frontiers: list[dict] | None = None, **metrics) -> Path:
        """Write the run record (metrics, comparisons, sizes, provenance) and a copy of the metrics to output_dir.

        frontiers: the frontier rows this notebook compared and drew, when they include another notebook's
        (`frontiers_of`); default: its own runs' rows. The record keeps them with their per-prompt values (not the
        samples), so that every matched-KL comparison can be recomputed from the record alone (`record_rows`)."""
        per_unit = [c for c in runs.columns
                    if c in ("raw", "frontier") or c.startswith("prompt_") or c.endswith(("_correct", "_units"))]
        # without `start` (reward models only) no starting policy was built or measured: notebook 01's backbone
        backbone = self.data_settings.policy if self.backbone is None else self.backbone
        backbone = Path(backbone).name if Path(backbone).is_dir() else backbone
        metrics = {"reference": {k: v for k, v in self.ref.items() if k != "examples" and not k.startswith("prompt_")},
                   "table": {"/".join(map(str, k)): v for k, v in table.items()}, "comparisons": self.comparisons,
                   **metrics, "runs": runs.drop(columns=per_unit).to_dict(orient="records"), "backbone": backbone,
                   "held_out_prompts": len(self.prompts) if self.ref else 0, "held_out_pairs": {k: len(v) for k, v in self.sets.items()},
                   "train_pairs_per_policy": int(runs.train_pairs.min()) if "train_pairs" in runs else None,
                   "runs_reused": int(runs.reused.sum()), "runs_total": len(runs)}
        own = self.frontier_rows(runs) if "frontier" in runs else []
        if own or frontiers:
            metrics["frontiers"] = record_rows(own if frontiers is None else frontiers)
        self.record.metrics.update(metrics)
        scorer = self.data_settings.scorer if self.scorer is None else self.scorer.description
        self.record.data["provenance"] = {"scorer": scorer, "backbone": backbone}
        path = self.record.save()
        atomic_write_json(self.work / "metrics.json", {**metrics, **({"frontier_points": own} if own else {})})
        print("run record:", path.relative_to(repo_root()))
        return path


def record_rows(rows: list[dict], digits: int = 6) -> list[dict]:
    """Frontier rows as a run record keeps them: every field but the samples' text, per-prompt values rounded to
    `digits` decimals (a comparison moves by less than 1e-6). The per-prompt values are what a matched-KL
    difference is made of: the checkpoints along training measure fewer prompts than the last one, so it is
    interpolated over the prompts both neighbouring checkpoints measured (`stats.reward_at_kl`), which the rows'
    means alone cannot reproduce."""
    return [{k: ([round(float(x), digits) for x in v] if k.startswith("prompt_") else v)
             for k, v in r.items() if k != "prompt_samples"} for r in rows]


def sample_rows(rows: list[dict], n: int, rng) -> list[dict]:
    """`n` of `rows` drawn without replacement by `rng`, kept in their order (all of them when n >= len(rows))."""
    pick = sorted(rng.choice(len(rows), min(n, len(rows)), replace=False))
    return [rows[i] for i in pick]


def load_study_pairs(output_dir, profile: str, qualities=("high", "low")) -> dict[str, dict[str, list[dict]]]:
    """{quality: {'train': rows, 'test': rows}} from notebook 01's files for this profile (clear error if absent)."""
    return {q: {split: load_pairs(pairs_path(output_dir, profile, q, split), require_margin=True)
                for split in ("train", "test")} for q in qualities}


def held_out_prompts(pairs: dict, n: int, seed: int = 0) -> list[str]:
    """`n` prompts no policy trained on: notebook 01's test prompts, topped up with unused offline openings."""
    train = {r["prompt"] for q in pairs.values() for r in q["train"]}
    out = sorted({r["prompt"] for q in pairs.values() for r in q["test"]} - train)
    extra = [p for p in offline_prompts(1000, seed) if p not in train and p not in out]
    return (out + extra)[:n]
