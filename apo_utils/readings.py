"""Does the way a matched-KL curve is read decide a verdict? Every committed comparison read again three ways.

A matched-KL comparison (`stats.matched_kl_comparison`) makes three choices a skeptic may question: it draws a
straight line in KL between the two checkpoints around the budget; where each side trained at several β, it picks
the best β on the very seeds and prompts it then scores; and its budgets stop where the shortest-moving seed
stops. Each function here redoes the comparisons of the committed run records with one choice changed
(`read_in_root_kl`, `beta_chosen_elsewhere`, `reading_beyond_shortest_seed`), reading only what the records keep,
and `reading_sensitivity` / `beyond_shortest_seed` gather them over the records notebook 06 reads.
"""

from __future__ import annotations

import math

import numpy as np

from .stats import (
    PER_PROMPT, cautious_interval, matched_kl_comparison, matched_kl_differences, seed_interval,
    seeds_by_units_bootstrap, verdict_cautious,
)


def _rows_read(metrics: dict, c: dict, every_beta: bool = False) -> list[dict]:
    """The frontier rows a matched-KL comparison `c` of a record read: its setting's (a sweep's 'policy, β/3' reads
    the rows of 'policy'), relabelled with the comparison's setting, and only each side's recorded β unless
    `every_beta`."""
    tier = c["setting"].rsplit(", β", 1)[0]
    read = {(c["method"], c["beta"]), (c["baseline"], c["baseline_beta"])}
    return [dict(r, setting=c["setting"]) for r in metrics.get("frontiers", [])
            if r["setting"] in (c["setting"], tier) and (every_beta or (r["method"], r["beta"]) in read)]


def read_in_root_kl(metrics: dict, comparison: dict) -> dict:
    """One matched-KL comparison of a record (`metrics`: its 'frontiers' and one of its 'comparisons'), read again
    straight between two checkpoints in √KL instead of in KL. Reward first grows roughly in proportion to √KL (Gao
    et al. 2023, arXiv 2210.10760, write it as a function of √KL), so a straight line in KL reads a bending curve
    low, the more so the further apart its checkpoints lie, and the two sides of a comparison are rarely measured at
    the same spacing. Each side keeps the β it was read at, so both readings describe the same policies; KL is mapped
    by sign(KL)·√|KL|, which keeps a slightly negative estimate in order."""
    def root_kl(x: float) -> float:
        return math.copysign(math.sqrt(abs(x)), x)

    c = comparison
    rows = [dict(r, kl=root_kl(r["kl"])) for r in _rows_read(metrics, c)]
    return matched_kl_comparison(rows, c["setting"], c["method"], c["baseline"], root_kl(c["kl"]),
                                 c.get("matters", 0.03), c["metric"])


def beta_chosen_elsewhere(metrics: dict, comparison: dict) -> dict:
    """A best-of-β matched-KL comparison of a record, redone so that no seed and no prompt votes for the β it is
    measured at. The record picks each side's β on the same seeds and prompts it then measures the difference on:
    optimistic for both sides, though not necessarily equally. Here the held-out prompts are split by position, even
    and odd, and each seed's half is measured at the βs that the other seeds' other half chose (by reward, among the
    βs that reach the budget on every seed, as the record's rule); the pieces are put back together into one
    seeds x prompts matrix. Adds 'betas': the (method β, baseline β) chosen for each seed and half."""
    c = comparison
    rows = _rows_read(metrics, c, every_beta=True)
    # the seeds every β of both sides ran, which the record's best-of-β reading compared (a sweep's other βs may run
    # on fewer seeds than the main notebook's β)
    runs = {(r["method"], r["beta"]) for r in rows if r["method"] in (c["method"], c["baseline"])}
    seeds = sorted(set.intersection(*[{r["seed"] for r in rows if (r["method"], r["beta"]) == k} for k in runs])
                   if runs else [])  # no rows for either side: the check below says so
    rows = [r for r in rows if r["seed"] in seeds]
    reach: dict[tuple, float] = {}
    for r in rows:
        key = (r["method"], r["beta"], r["seed"])
        reach[key] = max(reach.get(key, 0.0), r["kl"])
    candidates = {(m, b) for m, b, _ in reach if all(reach.get((m, b, s), 0.0) >= c["kl"] for s in seeds)}
    for side in (c["method"], c["baseline"]):
        if not any(m == side for m, _ in candidates):
            raise ValueError(f"no β of {side!r} reaches KL {c['kl']:g} on every seed {seeds} that all its βs and the "
                             f"other side's ran, in setting {c['setting']!r}")
    rows = [r for r in rows if (r["method"], r["beta"]) in candidates]

    def elsewhere(seed: int, parity: int) -> list[dict]:  # the other seeds, the other half of the prompts
        return [dict(r, **{k: r[k][1 - parity::2] for k in PER_PROMPT.values() if k in r}) for r in rows
                if r["seed"] != seed]

    pieces, betas = {}, []
    for seed in seeds:
        for parity in (0, 1):
            chosen = matched_kl_comparison(elsewhere(seed, parity), c["setting"], c["method"], c["baseline"], c["kl"],
                                           c.get("matters", 0.03))
            betas.append((chosen["beta"], chosen["baseline_beta"]))
            pieces[(seed, parity)] = matched_kl_differences(
                [r for r in rows if r["seed"] == seed], c["setting"], c["method"], c["baseline"], c["kl"],
                chosen["beta"], chosen["baseline_beta"], c["metric"])[0]
    n = min(p.size for p in pieces.values())
    diff = np.empty((len(seeds), n))
    for i, seed in enumerate(seeds):
        diff[i, 0::2], diff[i, 1::2] = pieces[(seed, 0)][:n][0::2], pieces[(seed, 1)][:n][1::2]
    seed_ci = seed_interval(diff.mean(1))
    return {**seeds_by_units_bootstrap(diff), "seed_ci95": seed_ci["ci95"], "seed_half_width": seed_ci["half_width"],
            "matters": c.get("matters", 0.03), "betas": betas}


def reading_beyond_shortest_seed(metrics: dict, comparison: dict, n_seeds: int) -> dict:
    """One matched-KL comparison of a record, read further out than its budgets go. A record's budgets stop where
    the shortest-moving seed stops, so that every seed is read; here the budget is the largest KL that `n_seeds`
    seeds reach on both sides (rounded down to three decimals), read on those seeds alone, each side at the β the
    record read, and also at the record's budget on those same seeds ('diff_same_seeds_at_recorded_kl'), to tell
    what changes with the budget from what changes with the seeds kept. Fewer seeds make the interval wider, and the
    seeds kept are those that moved furthest: a hint of which way a difference goes further out, not a verdict."""
    c = comparison
    rows = _rows_read(metrics, c)
    reach: dict[tuple[str, int], float] = {}
    for r in rows:
        reach[(r["method"], r["seed"])] = max(reach.get((r["method"], r["seed"]), 0.0), r["kl"])
    both = {s: min(reach.get((c["method"], s), 0.0), reach.get((c["baseline"], s), 0.0)) for _, s in reach}
    if len(both) < n_seeds:
        raise ValueError(f"{c['method']!r} - {c['baseline']!r} in {c['setting']!r}: {len(both)} seeds, "
                         f"fewer than the {n_seeds} asked for")
    budget = math.floor(sorted(both.values(), reverse=True)[n_seeds - 1] * 1000 + 1e-9) / 1000
    kept = [r for r in rows if r["seed"] in {s for s, kl in both.items() if kl >= budget}]
    further = matched_kl_comparison(kept, c["setting"], c["method"], c["baseline"], budget, c.get("matters", 0.03),
                                    c["metric"])
    # the same seeds at the record's own budget: what changes with the budget alone
    here = matched_kl_comparison(kept, c["setting"], c["method"], c["baseline"], c["kl"], c.get("matters", 0.03),
                                 c["metric"])
    return {**further, "diff_same_seeds_at_recorded_kl": here["diff"]}


def beyond_shortest_seed(records: list[dict], profile: str = "cpu", seed_counts=(4, 3)) -> list[dict]:
    """Each reward comparison at matched KL on five or more seeds and one β a side, of the `profile` run records
    among `records` (`summary.records`, each with its 'study', 'profile' and 'metrics'): its largest budget as
    recorded, then read further out on fewer seeds (`reading_beyond_shortest_seed`, one row for each of
    `seed_counts`). Rows: study, setting, method, baseline, n_seeds, kl, diff, interval,
    verdict, diff_same_seeds_at_recorded_kl (the recorded row's own diff on its own row)."""
    out = []
    for rec in records:
        if rec["profile"] != profile:
            continue
        metrics = rec.get("metrics") or {}
        largest: dict[tuple, dict] = {}
        for c in metrics.get("comparisons", []):
            if (isinstance(c.get("kl"), (int, float)) and c["metric"] == "reward" and c["n_seeds"] >= 5
                    and "best of" not in c.get("note", "")):
                key = (c["setting"], c["method"], c["baseline"])
                if key not in largest or c["kl"] > largest[key]["kl"]:
                    largest[key] = c
        for c in largest.values():
            for r in [c] + [reading_beyond_shortest_seed(metrics, c, n) for n in seed_counts]:
                out.append({"study": rec["study"], "setting": c["setting"], "method": c["method"],
                            "baseline": c["baseline"], "n_seeds": int(r["n_seeds"]), "kl": r["kl"],
                            "diff": float(r["diff"]), "interval": cautious_interval(r), "verdict": verdict_cautious(r),
                            "diff_same_seeds_at_recorded_kl": float(r.get("diff_same_seeds_at_recorded_kl",
                                                                          r["diff"]))})
    return out


def reading_sensitivity(records: list[dict], profile: str = "cpu") -> list[dict]:
    """Every matched-KL comparison of the `profile` run records among `records` (`summary.records`), as recorded
    and read two other ways: in √KL (`read_in_root_kl`), and, where the record chose each side's best β, with β
    chosen on other seeds and prompts (`beta_chosen_elsewhere`). A verdict that changed with the reading would rest
    on how the curves were read rather than on the policies. Rows: study, setting, method, baseline, metric, kl,
    diff and verdict as recorded; diff_sqrt_kl, interval_sqrt_kl, verdict_sqrt_kl; diff_beta_elsewhere,
    interval_beta_elsewhere, verdict_beta_elsewhere, betas_elsewhere (None where the record read one β a side)."""
    out = []
    for rec in records:
        if rec["profile"] != profile:
            continue
        metrics = rec.get("metrics") or {}
        for c in (c for c in metrics.get("comparisons", []) if isinstance(c.get("kl"), (int, float))):
            again = read_in_root_kl(metrics, c)
            elsewhere = beta_chosen_elsewhere(metrics, c) if "best of" in c.get("note", "") else None
            out.append({"study": rec["study"], "setting": c["setting"], "method": c["method"],
                        "baseline": c["baseline"], "metric": c["metric"], "kl": c["kl"], "diff": float(c["diff"]),
                        "verdict": verdict_cautious(c), "diff_sqrt_kl": float(again["diff"]),
                        "interval_sqrt_kl": cautious_interval(again), "verdict_sqrt_kl": verdict_cautious(again),
                        "diff_beta_elsewhere": float(elsewhere["diff"]) if elsewhere else None,
                        "interval_beta_elsewhere": cautious_interval(elsewhere) if elsewhere else None,
                        "verdict_beta_elsewhere": verdict_cautious(elsewhere) if elsewhere else None,
                        "betas_elsewhere": elsewhere["betas"] if elsewhere else None})
    return out
