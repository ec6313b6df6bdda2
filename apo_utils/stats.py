"""Paired comparisons with a confidence interval: the one way this kit reports a difference between methods.

Also the tables a study shows: each method's mean and spread over seeds (`summarise`, `mean_sd`), its paired
comparisons (`paired_comparison`, `comparison_table`) and their verdicts in words (`findings`).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd


def paired_bootstrap(a, b, groups=None, n_boot: int = 4000, seed: int = 0) -> dict:
    """Mean of the paired differences a_i - b_i and its 95 % percentile-bootstrap interval.

    `groups` (e.g. the prompt of each pair): whole groups are resampled, since pairs of one prompt are not
    independent. Returns {'diff', 'ci95': [lo, hi], 'n', 'n_groups'}."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if d.ndim != 1 or d.size == 0:
        raise ValueError(f"a and b must be 1-D and of one non-zero length, got shapes {np.shape(a)} and {np.shape(b)}")
    g = np.arange(d.size) if groups is None else np.asarray(groups)
    if g.shape != d.shape:
        raise ValueError(f"groups has {g.size} entries for {d.size} pairs")
    keys, inv = np.unique(g, return_inverse=True)
    sums, counts = np.bincount(inv, weights=d), np.bincount(inv)
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, keys.size, size=(n_boot, keys.size))
    boots = sums[pick].sum(1) / counts[pick].sum(1)
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return {"diff": float(d.mean()), "ci95": [float(lo), float(hi)], "n": int(d.size), "n_groups": int(keys.size)}


def mean_spread(values) -> dict:
    """Mean, sample standard deviation and standard error over seeds (n = 1: spread 0, said by n)."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=float)
    if v.size == 0:
        return {"mean": float("nan"), "sd": float("nan"), "se": float("nan"), "n": 0}
    sd = float(v.std(ddof=1)) if v.size > 1 else 0.0
    return {"mean": float(v.mean()), "sd": sd, "se": sd / math.sqrt(v.size), "n": int(v.size)}


def seeds_by_units_bootstrap(diff, groups=None, n_boot: int = 4000, seed: int = 0) -> dict:
    """Mean of a paired difference measured for every seed on the same units, with a 95 % interval that counts
    both sources of chance: which seeds were run and which prompts (or pairs) were measured.

    diff: (n_seeds, n_units), e.g. method minus baseline on each held-out prompt, for each training seed.
    Seeds and unit groups (`groups`: e.g. the prompt of each pair; default every unit its own group) are
    resampled independently, the crossed-factor bootstrap (Owen 2007, "The pigeonhole bootstrap"); with 3 seeds
    the seed part is coarse, so the interval is honest about a small number of training runs rather than exact.
    Returns {'diff', 'ci95', 'half_width', 'n_seeds', 'n_units', 'n_groups'}."""
    d = np.asarray(diff, dtype=float)
    if d.ndim != 2 or 0 in d.shape:
        raise ValueError(f"diff must be (seeds, units) with both non-zero, got shape {d.shape}")
    if not np.isfinite(d).all():
        raise ValueError(f"diff has {int((~np.isfinite(d)).sum())} non-finite values")
    g = np.arange(d.shape[1]) if groups is None else np.asarray(groups)
    if g.shape != (d.shape[1],):
        raise ValueError(f"groups has {g.size} entries for {d.shape[1]} units")
    _, inv = np.unique(g, return_inverse=True)
    n_groups = int(inv.max()) + 1
    sums = np.stack([np.bincount(inv, weights=row, minlength=n_groups) for row in d])  # (seeds, groups)
    counts = np.bincount(inv, minlength=n_groups)
    s_pick, g_pick = crossed_draws(d.shape[0], n_groups, n_boot, seed)
    seed_sums = sums[s_pick].sum(1)  # (boot, groups): the chosen seeds' totals per group
    boots = np.take_along_axis(seed_sums, g_pick, 1).sum(1) / (d.shape[0] * counts[g_pick].sum(1))
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return {"diff": float(d.mean()), "ci95": [float(lo), float(hi)], "half_width": float((hi - lo) / 2),
            "n_seeds": int(d.shape[0]), "n_units": int(d.shape[1]), "n_groups": n_groups}


def crossed_draws(n_seeds: int, n_groups: int, n_boot: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The crossed bootstrap's draws: for each of n_boot resamples, seeds and unit groups drawn with replacement,
    independently ((n_boot, n_seeds) and (n_boot, n_groups) indices). Shared by `seeds_by_units_bootstrap` and
    `calibration.ece_difference`, so that a statistic of a whole set (an ECE) is resampled as a mean is."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, n_seeds, size=(n_boot, n_seeds)), rng.integers(0, n_groups, size=(n_boot, n_groups))


# Student's t 0.975 quantiles by degrees of freedom (standard tables); beyond 30 the normal's 1.96 is close enough.
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
         15: 2.131, 20: 2.086, 30: 2.042}


def mean_ci95(values) -> tuple[float, float]:
    """Mean over seeds and the half-width of its 95 % t interval (0 for a single seed): for drawing one method's
    spread; a comparison between methods uses the paired functions above."""
    s = mean_spread(values)
    if s["n"] < 2:
        return s["mean"], 0.0
    df = s["n"] - 1
    t = 1.96 if df > 30 else _T975[max(k for k in _T975 if k <= df)]  # the smaller df: a wider interval
    return s["mean"], t * s["se"]


def verdict(c: dict, matters: float = 0.03) -> str:
    """What a paired 95 % interval says: higher/lower when it excludes 0; 'no difference' only when it lies
    within +-`matters` (a difference too small to matter); otherwise 'not resolved'."""
    lo, hi = c["ci95"]
    if lo > 0 or hi < 0:
        return "higher" if lo > 0 else "lower"
    return f"no difference (within ±{matters:g})" if -matters <= lo and hi <= matters else "not resolved"


def mean_sd(stat: dict, digits: int = 3, signed: bool = False) -> str:
    """'0.660 ± 0.012' from a `mean_spread` result: how a table shows a method's mean over seeds."""
    return f"{stat['mean']:{'+' if signed else ''}.{digits}f} ± {stat['sd']:.{digits}f}"


def summarise(runs: pd.DataFrame, metrics=("reward", "kl")) -> dict:
    """{(setting, method): {metric: mean, sd, se, n over seeds}} for the metrics a frame of runs has."""
    return {(s, m): {k: mean_spread(sub[k]) for k in metrics if k in sub}
            for (s, m), sub in runs.groupby(["setting", "method"], sort=False)}


def summary_frame(table: dict, columns: dict | None = None, name=str) -> pd.DataFrame:
    """A `summarise` table as a reader sees it: a row a (setting, method name), a column a metric ('mean ± sd'), and
    the number of seeds. columns {heading: metric} picks and names them (default: every metric, by its key)."""
    rows = {}
    for (setting, method), stats_ in table.items():
        chosen = columns or {k: k for k in stats_}
        row = {heading: mean_sd(stats_[k], signed=k == "reward") for heading, k in chosen.items() if k in stats_}
        rows[(setting, name(method))] = {**row, "seeds": max(v["n"] for v in stats_.values())}
    return pd.DataFrame(rows).T


def paired_comparison(runs: pd.DataFrame, setting: str, metric: str, method: str, baseline: str,
                      sets: dict | None = None, matters: float | None = None) -> dict:
    """Paired difference `method` − `baseline` on `metric` in one setting: the same seeds (same data, order and
    adapter initialisation) and the same units. Units: held-out prompts for 'reward' (the mean of a prompt's
    samples, column 'prompt_rewards'); pairs of a set for '<set>_..._accuracy' (column '<set>_..._correct') and
    for any other '<set>_...' metric (column '<metric>_units'), grouped by the prompt of each pair in
    `sets[<set>]` (a prompt's pairs are not independent). 95 % interval by resampling seeds and units
    (`seeds_by_units_bootstrap`), and beside it the t interval over the per-seed mean differences (`seed_interval`;
    judge with `verdict_cautious`). matters: the smallest difference that matters for this metric, kept with it."""
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
    seed = seed_interval(diff.mean(1))
    return {"setting": setting, "metric": metric, "method": method, "baseline": baseline,
            **seeds_by_units_bootstrap(diff, groups), "seed_ci95": seed["ci95"], "seed_half_width": seed["half_width"],
            **({"matters": matters} if matters is not None else {})}


def comparison_table(comparisons: list[dict], name=str, metric_name=str) -> pd.DataFrame:
    """One row a paired comparison: method − baseline, where it was made (at a matched KL or after the same number of
    steps), the difference, its intervals, seeds, units and the cautious verdict (`verdict_cautious`).
    `name` and `metric_name` turn method and metric keys into what a reader sees (plotting.label, ...)."""
    return pd.DataFrame([{"setting": c["setting"], "metric": metric_name(c["metric"]),
                          "comparison": f"{name(c['method'])} − {name(c['baseline'])}", "at": where(c),
                          "difference": f"{c['diff']:+.3f}", "95 % CI": f"[{c['ci95'][0]:+.3f}, {c['ci95'][1]:+.3f}]",
                          "95 % CI over seeds": (f"[{c['seed_ci95'][0]:+.3f}, {c['seed_ci95'][1]:+.3f}]"
                                                 if isinstance(c.get("seed_ci95"), (list, tuple)) else "–"),
                          "seeds": c["n_seeds"], "units": c["n_units"], "verdict": verdict_cautious(c)}
                         for c in comparisons])


def where(c: dict) -> str:
    """'KL 2.50 nats' for a comparison at a matched KL budget, else 'same steps' (both trained equally long)."""
    kl = c.get("kl")
    return f"KL {kl:.2f} nats" if isinstance(kl, (int, float)) and math.isfinite(kl) else "same steps"


def findings(comparisons: list[dict], name=str, metric_name=str) -> str:
    """The comparisons as sentences, one a line: what a notebook's last cell prints for the run just made. The
    interval shown is the one the verdict reads (`cautious_interval`), so the two never disagree on the page."""
    def line(c):
        lo, hi = cautious_interval(c)
        return (f"{c['setting']}: {name(c['method'])} − {name(c['baseline'])} in {metric_name(c['metric'])} "
                f"({where(c)}): {c['diff']:+.3f} [{lo:+.3f}, {hi:+.3f}], {verdict_cautious(c)} "
                f"({c['n_seeds']} seed{'s' * (c['n_seeds'] != 1)}{'; ' + c['note'] if c.get('note') else ''})")
    return "\n".join(line(c) for c in comparisons)


def seed_interval(per_seed_diffs) -> dict:
    """Mean of per-seed paired differences and its 95 % Student-t interval over seeds.

    The crossed bootstrap (`seeds_by_units_bootstrap`) resamples 3 seeds coarsely; this t interval is the
    classical view of the same seed-to-seed spread, and the two together (`cautious_interval`) keep a verdict from
    resting on one of them. With a single seed the interval is (-inf, inf): one training run says nothing about how
    much another seed would move the result. Uses the `_T975` table, the smaller df when between entries (as
    `mean_ci95` does), 1.96 beyond 30. Returns {'diff', 'ci95', 'half_width', 'n_seeds'}."""
    v = np.asarray(per_seed_diffs, dtype=float).ravel()
    if v.size == 0:
        raise ValueError("seed_interval needs at least one per-seed difference, got none")
    if not np.isfinite(v).all():
        raise ValueError(f"per_seed_diffs has {int((~np.isfinite(v)).sum())} non-finite values")
    mean = float(v.mean())
    if v.size == 1:
        return {"diff": mean, "ci95": [-math.inf, math.inf], "half_width": math.inf, "n_seeds": 1}
    df = v.size - 1
    t = 1.96 if df > 30 else _T975[max(k for k in _T975 if k <= df)]
    half = t * float(v.std(ddof=1)) / math.sqrt(v.size)
    return {"diff": mean, "ci95": [mean - half, mean + half], "half_width": half, "n_seeds": int(v.size)}


# The per-prompt values behind each metric a frontier point carries (evaluation.evaluate_policy)
PER_PROMPT = {"reward": "prompt_rewards", "start_logp_per_token": "prompt_start_logp_per_token"}


def reward_at_kl(curve, budget: float, key: str = "prompt_rewards") -> np.ndarray | None:
    """Per-prompt rewards of one policy (one method, beta and seed) at the first point along training where its
    KL from the start reaches `budget`: what the policy earned for that much movement.

    `curve`: its frontier rows in training order (not re-sorted here). Between the checkpoint before the budget is
    first reached and the one that reaches it, the per-prompt rewards are interpolated linearly with the weight set
    by their mean KLs, over the prompts both measured (the shorter list; its first prompts are the same prompts). A
    budget equal to a checkpoint's KL gives that checkpoint's rewards, truncated to the prompts it shares with the
    checkpoint before it (so the result does not jump in length at the checkpoint); a budget at or below the first
    checkpoint's KL gives the first checkpoint's full list. None if the policy never reaches the budget.
    key: another per-prompt list of the rows to interpolate the same way (`PER_PROMPT`)."""
    for i, row in enumerate(curve):
        if row["kl"] >= budget:
            here = np.asarray(row[key], dtype=float)
            if i == 0:
                return here
            before = np.asarray(curve[i - 1][key], dtype=float)
            n = min(before.size, here.size)
            w = (budget - curve[i - 1]["kl"]) / (row["kl"] - curve[i - 1]["kl"])  # previous KL < budget <= this KL
            return (1 - w) * before[:n] + w * here[:n]
    return None


def _curves(rows, setting: str) -> dict:
    """{(method, beta, seed): that policy's rows of `setting`, in training order (by step)}."""
    out: dict = {}
    for r in rows:
        if r["setting"] == setting:
            out.setdefault((r["method"], float(r["beta"]), int(r["seed"])), []).append(r)
    return {k: sorted(v, key=lambda r: r["step"]) for k, v in out.items()}


def common_budgets(rows, setting: str, methods, n: int = 2) -> list[float]:
    """KL budgets at which every method in `methods` can be compared: `n` budgets evenly spaced in (0, K],
    at K·k/n for k = 1..n, rounded DOWN to 3 decimals (a budget never exceeds what the policies reach); budgets that
    round to 0 are dropped.

    K is the largest KL every method reaches with ONE beta on every one of its seeds, the condition
    `matched_kl_comparison` needs: K = min over methods of (max over betas of (min over the method's seeds of the
    largest KL that (method, beta, seed) reaches)); a beta not run on one of the method's seeds counts as reaching
    nothing. (The looser "each seed reaches it with some beta" can name a budget no single beta reaches on every
    seed.) The top budget K is the furthest out all methods can be compared, where differences are largest.
    Empty list if a method has no rows in `setting`."""
    curves = _curves(rows, setting)
    largest = []
    for m in methods:
        keys = [k for k in curves if k[0] == m]
        if not keys:
            return []
        seeds = {s for _, _, s in keys}
        betas = {b for _, b, _ in keys}
        reach = {b: min(max((r["kl"] for r in curves.get((m, b, s), [])), default=0.0) for s in seeds)
                 for b in betas}
        largest.append(max(reach.values()))
    top = min(largest)
    budgets = []
    for k in range(1, n + 1):
        x = min(top * k / n, top)
        b = round(x, 3)
        if b > x:
            b = round(b - 0.001, 3)
        if b > 0 and b not in budgets:
            budgets.append(b)
    return budgets


def matched_kl_comparison(rows, setting: str, method: str, baseline: str, budget: float,
                          matters: float = 0.03, metric: str = "reward") -> dict:
    """Paired difference `method` − `baseline` in reward at the same KL from the start (`budget`), on the same
    seeds and held-out prompts: the DPO paper's reward-KL frontier comparison made into a paired test.

    Each side's beta: one for all seeds, the beta whose seeds' mean reward at the budget is highest among the
    betas that reach the budget on every shared seed (compared on the prompts all those candidates measured): the
    method's frontier at that budget. Choosing it on the same prompts the difference is then measured on is
    optimistic, but for both sides alike. For each shared seed, both sides' per-prompt rewards are interpolated at
    the budget along that seed's curve (`reward_at_kl`) and truncated to the prompts every seed and both sides
    measured; diff (seeds × prompts) gets the crossed seeds-and-prompts bootstrap, and its per-seed means the t
    interval over seeds (`seed_interval`: 'seed_ci95', 'seed_half_width'; judge with `verdict_cautious`).
    Raises ValueError if the two share no seed or a side does not reach the budget on every shared seed at any
    one beta. metric: 'reward', or another of `PER_PROMPT` (its per-prompt values at the budget; each side keeps
    the beta its reward chose, so both metrics describe the same policies)."""
    if metric not in PER_PROMPT:
        raise ValueError(f"metric {metric!r} has no per-prompt values on a frontier; choose one of {sorted(PER_PROMPT)}")
    curves = _curves(rows, setting)
    seeds_of = {m: {s for mm, _, s in curves if mm == m} for m in (method, baseline)}
    shared = sorted(seeds_of[method] & seeds_of[baseline])
    if not shared:
        raise ValueError(f"no seed has both {method!r} and {baseline!r} in setting {setting!r} "
                         f"(seeds: {sorted(seeds_of[method])} and {sorted(seeds_of[baseline])})")

    def side(m):
        betas = sorted({b for mm, b, _ in curves if mm == m})
        at = {b: [reward_at_kl(curves.get((m, b, s), []), budget) for s in shared] for b in betas}
        ok = {b: v for b, v in at.items() if all(x is not None for x in v)}
        if not ok:
            reach = {f"beta {b:g}": {s: round(max((r["kl"] for r in curves.get((m, b, s), [])), default=0.0), 4)
                                     for s in shared} for b in betas}
            raise ValueError(f"{m!r} does not reach KL {budget:g} on every shared seed {shared} at any one beta in "
                             f"setting {setting!r} (comparing {method!r} with {baseline!r}); largest KL reached: "
                             f"{reach}")
        n = min(x.size for v in ok.values() for x in v)
        return max(ok, key=lambda b: np.mean([x[:n].mean() for x in ok[b]]))

    beta, baseline_beta = side(method), side(baseline)
    diff = matched_kl_differences(rows, setting, method, baseline, budget, beta, baseline_beta, metric)
    seed = seed_interval(diff.mean(1))
    return {**seeds_by_units_bootstrap(diff), "setting": setting, "metric": metric, "method": method,
            "baseline": baseline, "kl": budget, "beta": beta, "baseline_beta": baseline_beta,
            "seed_ci95": seed["ci95"], "seed_half_width": seed["half_width"], "matters": matters}


def matched_kl_differences(rows, setting: str, method: str, baseline: str, budget: float, beta: float,
                           baseline_beta: float, metric: str = "reward") -> np.ndarray:
    """The seeds x prompts paired differences a matched-KL comparison rests on, each side on the given beta: on
    every seed both ran, `metric`'s per-prompt values at `budget` along that seed's curve (`reward_at_kl`),
    truncated to the prompts every seed and both sides measured. `matched_kl_comparison` summarises this matrix;
    `variance_components` asks where its uncertainty comes from."""
    curves = _curves(rows, setting)
    shared = sorted({s for m, b, s in curves if m == method and b == beta}
                    & {s for m, b, s in curves if m == baseline and b == baseline_beta})
    a = [reward_at_kl(curves[(method, beta, s)], budget, PER_PROMPT[metric]) for s in shared]
    b = [reward_at_kl(curves[(baseline, baseline_beta, s)], budget, PER_PROMPT[metric]) for s in shared]
    if not shared or any(x is None for x in a + b):
        raise ValueError(f"{method!r} at beta {beta:g} and {baseline!r} at beta {baseline_beta:g} do not both reach KL "
                         f"{budget:g} on a common seed in setting {setting!r}")
    n = min(x.size for x in a + b)
    return np.array([x[:n] - y[:n] for x, y in zip(a, b)])


def variance_components(diff) -> dict:
    """Where the uncertainty of a mean paired difference comes from, for a seeds x prompts matrix (every seed on the
    same prompts): a seed effect (the training run), a prompt effect (some prompts favour one side) and their
    interaction, estimated by the two-way analysis of variance without replication (method of moments; a negative
    estimate is set to 0). The variance of the mean is seed/S + prompt/P + interaction/(S P): more prompts shrink
    the last two terms only, more seeds the first and the last. Returns the three variances, 'seeds', 'prompts'."""
    d = np.asarray(diff, dtype=float)
    if d.ndim != 2 or min(d.shape) < 2:
        raise ValueError(f"variance_components needs at least 2 seeds x 2 prompts, got shape {d.shape}")
    n_seeds, n_prompts = d.shape
    grand, by_seed, by_prompt = d.mean(), d.mean(1), d.mean(0)
    ms_seed = n_prompts * float(((by_seed - grand) ** 2).sum()) / (n_seeds - 1)
    ms_prompt = n_seeds * float(((by_prompt - grand) ** 2).sum()) / (n_prompts - 1)
    residual = d - by_seed[:, None] - by_prompt[None, :] + grand
    ms_residual = float((residual ** 2).sum()) / ((n_seeds - 1) * (n_prompts - 1))
    return {"seed": max((ms_seed - ms_residual) / n_prompts, 0.0), "prompt": max((ms_prompt - ms_residual) / n_seeds, 0.0),
            "interaction": ms_residual, "seeds": n_seeds, "prompts": n_prompts}


def width_ratio(parts: dict, seeds: int | None = None, prompts: int | None = None) -> float:
    """How many times as wide an interval of the mean difference would be with `seeds` seeds and `prompts` prompts
    at each checkpoint (default: as measured) as it is now, from `variance_components`: the ratio of the standard
    errors. Multiply a measured interval's half-width by it to plan a study. A guide, not a promise: the estimates
    come from few seeds, and with more seeds the t interval also loses some of its excess over the normal one."""
    def variance(s, p):
        return parts["seed"] / s + parts["prompt"] / p + parts["interaction"] / (s * p)

    now = variance(parts["seeds"], parts["prompts"])
    if now <= 0:
        raise ValueError("the differences do not vary: there is no interval to scale")
    s = parts["seeds"] if seeds is None else seeds
    p = parts["prompts"] if prompts is None else prompts
    return math.sqrt(variance(s, p) / now)


def more_data(rows, c: dict, designs) -> tuple[dict, list[dict]]:
    """What more data would buy a matched-KL comparison `c` (a `matched_kl_comparison` result or a record's entry)
    made on frontier `rows`: the variance split of its paired differences (`variance_components`) and, for each
    (seeds, prompts a checkpoint) design, its verdict interval's half-width (`cautious_interval`) scaled to that
    design (`width_ratio`)."""
    diff = matched_kl_differences(rows, c["setting"], c["method"], c["baseline"], c["kl"], c["beta"],
                                  c["baseline_beta"], c.get("metric", "reward"))
    parts = variance_components(diff)
    lo, hi = cautious_interval(c)
    return parts, [{"seeds": s, "prompts a checkpoint": p, "half-width, about": (hi - lo) / 2 * width_ratio(parts, s, p)}
                   for s, p in designs]


def cautious_interval(c: dict) -> list[float]:
    """The hull of a comparison's bootstrap interval 'ci95' and, when present, its t interval over seeds
    'seed_ci95': with few seeds the two can disagree, and a verdict should survive both."""
    lo, hi = c["ci95"]
    seed = c.get("seed_ci95")
    if isinstance(seed, (list, tuple)) and len(seed) == 2:  # absent, None or a table's NaN: bootstrap only
        # one seed gives (-inf, inf), which a JSON record stores as [null, null]: still unbounded
        lo = min(lo, -math.inf if seed[0] is None else seed[0])
        hi = max(hi, math.inf if seed[1] is None else seed[1])
    return [float(lo), float(hi)]


def verdict_cautious(c: dict, matters: float | None = None) -> str:
    """`verdict`'s words applied to `cautious_interval(c)`: 'higher'/'lower' only when the whole hull excludes 0,
    'no difference (within ±m)' only when the whole hull lies within ±m; `matters` defaults to c['matters'] (else
    0.03). A single seed gives an infinite seed interval, hence 'not resolved'."""
    m = c.get("matters", 0.03) if matters is None else matters
    return verdict({"ci95": cautious_interval(c)}, m)


def frontier(points) -> list[tuple[float, float]]:
    """The upper reward-KL frontier of (kl, reward) points, as in the DPO paper's Fig. 2: sorted by KL, a point is
    kept only if its reward is higher than that of every point with lower or equal KL (no point gets at least as
    much reward for no more KL). Of points with equal KL only the highest is kept (the first of exact duplicates)."""
    out, best = [], -math.inf
    for kl, reward in sorted(((float(k), float(r)) for k, r in points), key=lambda p: (p[0], -p[1])):
        if reward > best:
            out.append((kl, reward))
            best = reward
    return out
