"""Implicit rewards of preference pairs: ranking accuracy and where the gradient goes.

A preference-trained policy is also a reward model. DPO-style losses score a response by
beta * log(pi / pi_ref); reference-free ones (SimPO, gamma-SimPO, AMaPO) by the length-normalised
log-prob. A pair is *ranked correctly* when the implicit reward of the truly better response is higher.
Everything here works from summed completion log-probs, so one forward pass per response serves
accuracy, margins and gradient allocation alike.
"""

from __future__ import annotations

import numpy as np
import torch

from . import losses as L
from .cache import cached_map
from .frozen_layers import attached



@torch.no_grad()
def completion_stats(model, tok, prompts: list[str], completions: list[str], batch_size: int = 16):
    """(summed log pi(completion | prompt), number of completion tokens) for each pair, as arrays.

    A policy trained on its top layers (training.train_policy(top_layers=...)) is run from its kept lower-layer
    states: a text seen before (a held-out pair measured for another policy, a sample scored with adapters on
    and then off) costs the top layers only."""
    lower = attached(model)
    if lower is not None and lower._installed is None:
        with lower.installed():
            return completion_stats(model, tok, prompts, completions, batch_size)
    device = next(model.parameters()).device
    logps, counts = [], []
    side = tok.padding_side
    tok.padding_side = "right"
    try:
        for i in range(0, len(prompts), batch_size):
            ps, cs = prompts[i : i + batch_size], completions[i : i + batch_size]
            n_prompt = [len(tok(p)["input_ids"]) for p in ps]
            enc = tok([p + c for p, c in zip(ps, cs)], return_tensors="pt", padding=True).to(device)
            logits = model(**enc).logits.float()
            logp = torch.log_softmax(logits[:, :-1], -1).gather(-1, enc["input_ids"][:, 1:, None]).squeeze(-1)
            mask = enc["attention_mask"][:, 1:].clone()
            for j, n in enumerate(n_prompt):
                mask[j, : n - 1] = 0
            logps.append((logp * mask).sum(-1).cpu().numpy())
            counts.append(mask.sum(-1).cpu().numpy())
    finally:
        tok.padding_side = side
    return np.concatenate(logps), np.concatenate(counts).astype(float)


def pair_logps(model, tok, rows: list[dict], batch_size: int = 16, cache_dir=None, key: dict | None = None) -> dict:
    """{'chosen', 'rejected', 'chosen_len', 'rejected_len'}: arrays over `rows`, in row order.

    With `cache_dir` and a `key` naming the model, results are cached on disk per batch (resumable).
    """
    items = [(r["prompt"], r[side]) for r in rows for side in ("chosen", "rejected")]

    def run(batch):
        lp, n = completion_stats(model, tok, [p for p, _ in batch], [c for _, c in batch], batch_size)
        return [[float(a), float(b)] for a, b in zip(lp, n)]

    if cache_dir is not None and not key:
        raise ValueError("cached log-probs need a `key` naming the model they come from")
    out = np.array(cached_map(run, items, 4 * batch_size, cache_dir, key=key or {}, desc="log-probs",
                              progress=False, code="ranking"), dtype=float).reshape(len(rows), 2, 2)
    return {"chosen": out[:, 0, 0], "rejected": out[:, 1, 0], "chosen_len": out[:, 0, 1],
            "rejected_len": out[:, 1, 1]}


def implicit_margin(method: str, policy: dict, reference: dict | None = None) -> np.ndarray:
    """The margin a method's own implicit reward puts between chosen and rejected (per pair).

    Reference-free methods: log pi(y_w)/|y_w| - log pi(y_l)/|y_l| (h-bar). The others:
    [log pi(y_w) - log pi_ref(y_w)] - [log pi(y_l) - log pi_ref(y_l)] (h; beta does not change its sign).
    """
    if not L.capabilities(method).reference:
        return policy["chosen"] / policy["chosen_len"] - policy["rejected"] / policy["rejected_len"]
    if reference is None:
        raise ValueError(f"{method!r} scores pairs against the reference; pass reference log-probs")
    return (policy["chosen"] - reference["chosen"]) - (policy["rejected"] - reference["rejected"])


def correct(margin) -> np.ndarray:
    """1 where the margin ranks the pair right (> 0), 0 where wrong, 0.5 on a tie (margin exactly 0).

    The kit's one tie rule: a tie, such as DPO's implicit reward before any training, is a coin flip, so
    it counts as half right. Takes arrays, lists or torch tensors; returns floats (NaN counts as wrong).
    """
    if isinstance(margin, torch.Tensor):
        margin = margin.detach().double().cpu().numpy()
    m = np.asarray(margin, dtype=float)
    return np.where(m > 0, 1.0, np.where(m == 0, 0.5, 0.0))


def ranking_accuracy(margin: np.ndarray, truth_sign: np.ndarray | None = None) -> float:
    """Share of pairs whose implicit margin has the sign of the truth (default: chosen is better).

    A tie (margin exactly 0, e.g. DPO's reward before any training) counts as half right, like a coin flip.
    """
    m = np.asarray(margin, dtype=float)
    s = np.ones_like(m) if truth_sign is None else np.sign(np.asarray(truth_sign, dtype=float))
    return float(np.mean(np.where(m == 0, 0.5, (m * s > 0).astype(float))))


def oriented(rows: list[dict], by: str = "true_margin") -> tuple[list[dict], np.ndarray]:
    """Rows with chosen/rejected swapped where `by` < 0 (so chosen is truly better), and which were swapped."""
    flip = np.array([r[by] < 0 for r in rows])
    out = [dict(r, chosen=r["rejected"], rejected=r["chosen"], **{by: -r[by]}) if f else r for r, f in zip(rows, flip)]
    return out, flip


def swap_sides(logps: dict, mask) -> dict:
    """The log-probs of the same pairs with chosen and rejected exchanged where `mask` is true."""
    mask = np.asarray(mask, dtype=bool)
    out = {}
    for a, b in (("chosen", "rejected"), ("chosen_len", "rejected_len")):
        out[a] = np.where(mask, logps[b], logps[a])
        out[b] = np.where(mask, logps[a], logps[b])
    return out


def gradient_weights(loss_name: str, policy: dict, reference: dict | None = None, *, margin=None,
                     **loss_kwargs) -> np.ndarray:
    """|d loss_i / d h_i| for every pair, with the whole set treated as one batch.

    This is the scalar that multiplies grad h_i in the update (papers.md, "gradient weight"), so
    comparing its sum over correctly and wrongly ranked pairs shows where a method spends its effort.
    For batch-level losses (AMaPO's mean and std) the statistics are those of this set.
    """
    t = {k: torch.tensor(np.asarray(v, dtype=np.float64)) for k, v in policy.items()}
    ref = {k: torch.tensor(np.asarray(v, dtype=np.float64)) for k, v in (reference or {}).items()}
    kw = dict(loss_kwargs)
    out = L.compute_loss(loss_name, t["chosen"], t["rejected"], ref.get("chosen"), ref.get("rejected"),
                         chosen_lengths=t["chosen_len"], rejected_lengths=t["rejected_len"],
                         margin=None if margin is None else torch.tensor(np.asarray(margin, dtype=np.float64)), **kw)
    return out.grad_weight.abs().numpy()


def effort_split(grad_weight: np.ndarray, correct: np.ndarray) -> dict:
    """Share of total gradient weight on pairs ranked correctly vs wrongly, and the mean per pair of each."""
    g = np.asarray(grad_weight, dtype=float)
    c = np.asarray(correct, dtype=bool)
    total = g.sum()
    return {"share_on_correct": float(g[c].sum() / total) if total > 0 else float("nan"),
            "share_on_wrong": float(g[~c].sum() / total) if total > 0 else float("nan"),
            "mean_on_correct": float(g[c].mean()) if c.any() else float("nan"),
            "mean_on_wrong": float(g[~c].mean()) if (~c).any() else float("nan"),
            "fraction_correct": float(c.mean())}
