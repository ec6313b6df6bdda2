"""One figure style for the whole kit: a fixed colour per method, labelled axes, PNG into figures/.

Baselines are drawn in cool/neutral tones, the four margin-adaptive methods in strong ones, and a
method keeps its colour in every notebook so a reader can compare figures across studies.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import textwrap

import numpy as np

from .stats import mean_ci95
from .storage import atomic_write_bytes

METHOD_COLORS = {
    "dpo": "#4C72B0",
    "dpo_rm_labels": "#1F3A68",  # DPO on the reward model's labels: a darker shade of DPO's colour
    "dpo_truth_labels": "#8FB3E0",  # DPO on truth-corrected labels: a lighter shade of DPO's colour
    "ipo": "#8C8C8C",
    "cdpo": "#64B5CD",
    "robust": "#2A9D8F",
    "beta_dpo": "#8172B3",
    "simpo": "#937860",
    "madpo": "#D1495B",
    "gamma_dpo": "#EDAE49",
    "gamma_simpo": "#C17C00",
    "amapo": "#00798C",
    "mmpo": "#6A994E",
    "mmpo_estimated": "#A7C957",  # MMPO with a reward model's margins: a lighter shade of MMPO's colour
    "bradley_terry": "#4C72B0",  # a reward model on hard labels: the counterpart of DPO, in DPO's colour
    "madpo_c2": "#F08A5D",  # MADPO's sensitivity point (c_max 2)
    "madpo_amplify": "#E8919B",  # MADPO ablations: lighter shades of MADPO's colour
    "madpo_dampen": "#8E1F2F",
}

METHOD_LABELS = {
    "dpo": "DPO", "dpo_rm_labels": "DPO (reward-model labels)",
    "dpo_truth_labels": "DPO (truth-corrected labels)", "ipo": "IPO", "cdpo": "cDPO", "robust": "rDPO (robust)", "beta_dpo": "β-DPO",
    "simpo": "SimPO", "madpo": "MADPO", "gamma_dpo": "γ-DPO", "gamma_simpo": "γ-SimPO", "amapo": "AMaPO",
    "mmpo": "MMPO", "mmpo_estimated": "MMPO (estimated margins)", "bradley_terry": "Bradley–Terry (hard labels)",
    "madpo_c2": "MADPO, c_max 2", "madpo_amplify": "MADPO, amplify only", "madpo_dampen": "MADPO, dampen only",
}

METHOD_ORDER = list(METHOD_COLORS)

# Notebook 01's quality tiers: neutral shades, so that a tier is never read as a method
TIER_COLORS = {"high": "#222222", "low": "#9E9E9E"}


# What a reader sees for each metric key a record holds.
METRIC_LABELS = {
    "reward": "true reward (VADER compound)",
    "test_accuracy": "held-out ranking accuracy",
    "start_logp_per_token": "start model's log-prob a token of the samples (nats)",
    "distinct_2": "distinct word pairs in the samples (share)",
    "test_mean_logp_accuracy": "held-out ranking accuracy by mean log-prob (no reference)",
    "test_truth_accuracy": "held-out agreement with the truth",
    "test_prob_error": "distance to the true preference probability (lower is better)",
    "ece": "expected calibration error (lower is better)",
    "test_ece": "ECE against the held-out labels (lower is better)",
}


def metric_label(metric: str) -> str:
    return METRIC_LABELS.get(metric, metric.replace("_", " "))


def color(method: str) -> str:
    return METHOD_COLORS.get(method, "#333333")


def label(method: str) -> str:
    return METHOD_LABELS.get(method, method)


def apply_style():
    plt.rcParams.update({
        "figure.dpi": 110, "savefig.dpi": 130, "font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10,
        "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3,
        "legend.frameon": False, "figure.constrained_layout.use": True,
    })


def savefig(fig, path, record=None) -> Path:
    """Save as PNG atomically (a killed run never leaves half a figure) and list it in the run record."""
    import io

    path = Path(path).with_suffix(".png")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())
    if record is not None:
        record.add_figure(path)
    return path


def reward_kl_figure(runs, settings, methods, start_reward: float, reward_label: str, titles=None):
    """True reward against KL from the start, one panel a setting: small dots seeds, large ones the mean with
    a 95 % interval over seeds (t), the star the starting policy."""
    fig, axes = plt.subplots(1, len(settings), figsize=(6 * len(settings), 4.4), sharey=True, squeeze=False)
    for ax, s in zip(axes[0], settings):
        ax.scatter([0], [start_reward], marker="*", s=160, color="k", zorder=5, label="starting policy")
        for m in methods:
            sub = runs[(runs.setting == s) & (runs.method == m)]
            if sub.empty:
                continue
            ax.scatter(sub.kl, sub.reward, s=14, alpha=0.45, color=color(m))
            (mk, ek), (mr, er) = (mean_ci95(sub[k]) for k in ("kl", "reward"))
            ax.errorbar(mk, mr, xerr=ek, yerr=er, fmt="o", ms=7, capsize=3, color=color(m), label=label(m))
        ax.set(xlabel="KL(π ‖ π_start) (nats per continuation)", title=(titles or {}).get(s, s))
    axes[0][0].set_ylabel(reward_label)
    handles = {lab: h for ax in axes[0] for h, lab in zip(*ax.get_legend_handles_labels())}  # every method once
    axes[0][-1].legend(handles.values(), handles.keys(), fontsize=8)
    fig.suptitle("Reward against KL: dots are seeds, large markers the mean with a 95 % interval over seeds")
    return fig


def comparison_figure(comparisons: list[dict], title: str | None = None):
    """Every comparison given, one panel a metric: the paired difference with its bootstrap 95 % interval (caps) and,
    where the comparison has one, the hull with the t interval over seeds (a pale band: what a verdict uses). Each
    row says where it was made: at a KL budget, or after the same steps."""
    from .stats import cautious_interval, verdict_cautious, where

    metrics = list(dict.fromkeys(c["metric"] for c in comparisons))
    counts = [sum(c["metric"] == m for c in comparisons) for m in metrics]
    # panels stacked, each as tall as its rows: readable at page width however many metrics there are
    fig, axes = plt.subplots(len(metrics), 1, figsize=(12, 1.3 + 0.36 * sum(counts) + 0.9 * len(metrics)),
                             height_ratios=[n + 1.5 for n in counts], squeeze=False, layout="constrained")
    for ax, metric in zip(axes[:, 0], metrics):
        cs = [c for c in comparisons if c["metric"] == metric]
        y = len(cs) - 1 - np.arange(len(cs))  # from the top
        ax.set_ylim(-0.6, len(cs) - 0.4)
        for yi, c in zip(y, cs):
            lo, hi = cautious_interval(c)
            if np.isfinite(lo) and np.isfinite(hi) and (lo, hi) != tuple(c["ci95"]):
                ax.plot([lo, hi], [yi, yi], color=color(c["method"]), alpha=0.25, lw=7, solid_capstyle="butt")
            ax.errorbar(c["diff"], yi, xerr=[[c["diff"] - c["ci95"][0]], [c["ci95"][1] - c["diff"]]], fmt="o",
                        capsize=4, color=color(c["method"]))
            if isinstance(c.get("matters"), (int, float)):  # the no-difference zone the verdict is read against
                ax.fill_betweenx([yi - 0.35, yi + 0.35], -c["matters"], c["matters"], color="0.88", zorder=0)
            ax.annotate(verdict_cautious(c), (1.01, yi), xycoords=("axes fraction", "data"), va="center", fontsize=8)
        ax.axvline(0, color="k", lw=0.8)
        most = max(c["n_seeds"] for c in cs)
        ax.set_yticks(y, [f"{c['setting']}: {label(c['method'])} − {label(c['baseline'])}, {where(c)}"
                          + (f" ({c['n_seeds']} seed{'s' * (c['n_seeds'] > 1)})" if c["n_seeds"] < most else "")
                          for c in cs], fontsize=9)
        ax.set(xlabel=f"paired difference in {metric_label(metric)}")
    fig.suptitle((title or "Method minus baseline, same seeds and held-out units")
                 + "\ncaps: 95 % bootstrap interval; pale band: with the interval over seeds (the verdict's); "
                   "grey: no difference that matters")
    return fig


# What a study calls a setting, as a reader should see it ("" where the study has only one)
SETTING_NAMES = {"high": "high-quality pairs", "low": "low-quality pairs", "policy": "", "reward model": ""}


def setting_label(setting: str) -> str:
    return SETTING_NAMES.get(setting, setting)


def verdict_figure(rows: list[dict], title: str = "Each paper's claim and the kit's verdict"):
    """One row a claim's comparison (`summary.verdicts`), one panel a metric: the difference and the interval the
    verdict uses, the no-difference band (±matters) shaded where known, the verdict written beside it. Each row is
    named on two lines (the comparison; then notebook, setting, where it was read and seeds), so that the figure
    stays readable at page width."""
    metrics = list(dict.fromkeys(r["metric"] for r in rows))
    heights = [sum(r["metric"] == m for r in rows) for m in metrics]
    fig, axes = plt.subplots(len(metrics), 1, figsize=(10, 1.4 + 0.62 * sum(heights) + 0.8 * len(metrics)),
                             height_ratios=[h + 1 for h in heights], squeeze=False, layout="constrained")
    for ax, metric in zip(axes[:, 0], metrics):
        rs = [r for r in rows if r["metric"] == metric]
        y = np.arange(len(rs))[::-1]
        for yi, r in zip(y, rs):
            lo, hi = r["interval"]
            lo, hi = (lo if np.isfinite(lo) else r["diff"]), (hi if np.isfinite(hi) else r["diff"])
            ax.errorbar(r["diff"], yi, xerr=[[r["diff"] - lo], [hi - r["diff"]]], fmt="o", capsize=4,
                        color=color(r["method"]))
            if isinstance(r.get("matters"), (int, float)):
                ax.fill_betweenx([yi - 0.35, yi + 0.35], -r["matters"], r["matters"], color="0.85", zorder=0)
            ax.annotate(textwrap.fill(r["verdict"], 22), (1.01, yi), xycoords=("axes fraction", "data"), va="center",
                        fontsize=10)
        ax.axvline(0, color="k", lw=0.8)
        names = []
        for r in rs:
            where = [f"notebook {r['study'][:3].rstrip('_')}", setting_label(r["setting"]), r["at"],
                     f"{r['n_seeds']} seed{'s' * (r['n_seeds'] > 1)}"]
            names.append(f"{label(r['method'])} − {label(r['baseline'])}\n" + " · ".join(w for w in where if w))
        ax.set_yticks(y, names, fontsize=10)
        ax.set_ylim(-0.6, len(rs) - 0.4)
        ax.set_xlabel(f"difference in {metric_label(metric)}")
    fig.suptitle(title + "\n(interval: the hull of the bootstrap and the seed intervals, the verdict's;\ngrey: no "
                         "difference that matters)")
    return fig


_BETA_MARKERS = ["o", "s", "^", "D", "v", "P", "X", "<", ">"]


def frontier_figure(rows, settings, methods, start_reward: float, reward_label: str, budgets=None, titles=None):
    """Reward against KL from the start along training, one panel a setting (the DPO paper's Fig. 2): every
    checkpoint of every (beta, seed) a small translucent dot in the method's colour (a marker per beta, in the
    order of the method's betas), the method's upper frontier over all its points a line, the start a black star,
    and the matched-KL budgets (`budgets[setting]`: a list, or {baseline: its pair's budgets}, each pair's lines
    then in its baseline's colour) dotted vertical lines. A method is better only where its
    frontier is higher at the same KL. The frontier is the envelope of the best points, so it is optimistic; the
    paired test at a budget is `stats.matched_kl_comparison`. `rows`: frontier rows (a list of dicts or a frame)."""
    from .stats import frontier

    if hasattr(rows, "to_dict"):
        rows = rows.to_dict("records")
    rows, n_prompts = _on_common_prompts(rows)
    starts = [r["reward"] for r in rows if r.get("step") == 0]
    if starts and n_prompts:  # the start as measured on the same prompts as every point (the mean over seeds)
        start_reward = float(np.mean(starts))
    fig, axes = plt.subplots(1, len(settings), figsize=(max(7.5, 6 * len(settings)), 4.8), sharey=True,
                             squeeze=False, layout="constrained")
    handles = {}
    for ax, s in zip(axes[0], settings):
        star = ax.scatter([0], [start_reward], marker="*", s=160, color="k", zorder=5)
        # on the checkpoints' prompts its mean differs from the start's reward over every held-out prompt
        handles.setdefault("starting policy" + (", on the same prompts" if starts and n_prompts else ""), star)
        for m in methods:
            sub = [r for r in rows if r["setting"] == s and r["method"] == m]
            if not sub:
                continue
            betas = sorted({float(r["beta"]) for r in sub})
            for i, b in enumerate(betas):
                pts = [(r["kl"], r["reward"]) for r in sub if float(r["beta"]) == b]
                dots = ax.scatter(*zip(*pts), s=12, alpha=0.35, color=color(m), marker=_BETA_MARKERS[i % 9],
                                  linewidths=0)
                handles.setdefault(f"{label(m)}, β = {b:.3g}", dots)  # 3 figures: β/3 of 0.1 reads 0.0333
            line, = ax.plot(*zip(*frontier((r["kl"], r["reward"]) for r in sub)), color=color(m), lw=2,
                            label=label(m))
            handles.setdefault(label(m), line)
        at = (budgets or {}).get(s, [])
        for against, kls in (at.items() if isinstance(at, dict) else [(None, at)]):
            name = "matched KL" + (f", against {label(against)}" if against else "")
            for b in kls:
                vline = ax.axvline(b, color=color(against) if against else "k", ls=":", lw=1.2, label=name)
                handles.setdefault(name, vline)
        ax.set(xlabel="KL(π ‖ π_start) (nats per continuation)", title=(titles or {}).get(s, s))
    # wrapped to the height of the panel: a one-line label this long runs into the title
    axes[0][0].set_ylabel(textwrap.fill(reward_label + (f", over the {n_prompts} prompts every checkpoint measured"
                                                        if n_prompts else ""), 34))
    fig.legend(handles.values(), handles.keys(), loc="outside lower center", fontsize=8, markerscale=1.8,
               ncol=max(2, min(4, 2 * len(settings))))
    fig.suptitle("Reward against KL along training: lines are each method's upper frontier, dots its checkpoints")
    return fig


def _on_common_prompts(rows: list[dict]) -> tuple[list[dict], int | None]:
    """Frontier rows with each reward re-averaged over the held-out prompts every row measured (intermediate
    checkpoints sample the first few prompts, the end all of them: a mean over different prompts would make the
    last point jump). Rows without per-prompt rewards are returned as they are, with None."""
    if not rows or not all(r.get("prompt_rewards") for r in rows):
        return rows, None
    n = min(len(r["prompt_rewards"]) for r in rows)
    return [dict(r, reward=float(np.mean(r["prompt_rewards"][:n]))) for r in rows], n
