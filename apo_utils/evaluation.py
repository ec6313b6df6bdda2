"""Measuring a policy: the true reward of its samples on held-out prompts, its KL from the reference, and
its log-probs of given pairs (the starting policy's too). Samples and scores are cached on disk.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from .cache import cached_map
from .env import cpu_bf16_context
from .generation import generate
from .models import load_causal_lm
from .ranking import completion_stats, pair_logps

EXAMPLE_PROMPTS = 4  # the first held-out prompts whose samples a result keeps (`prompt_samples`): to read what it writes

def completion_logprobs(model, tok, prompts: list[str], completions: list[str], batch_size: int = 16) -> np.ndarray:
    """Summed log pi(completion | prompt) for each pair, over the completion tokens only."""
    return completion_stats(model, tok, prompts, completions, batch_size)[0]


def evaluate_policy(model, tok, prompts: list[str], scorer, *, key: dict, cache_dir, n_samples: int = 1,
                    max_new_tokens: int = 32, batch_size: int = 32, seed: int = 0, kl_prompts: int | None = None,
                    cpu_bf16: bool = False) -> dict:
    """Mean ground-truth reward of the policy's samples (with its standard error), the mean of each prompt's
    samples (`prompt_rewards`, in prompt order) and a KL(pi || ref) estimate.

    KL is estimated from the same samples: mean over y ~ pi of log pi(y|x) - log ref(y|x), where ref is the
    backbone with the LoRA adapters switched off; `kl_prompts`: from the samples of the first n prompts only
    (two forward passes a sample cost about as much as sampling it; `kl_n` says how many samples it used).
    cpu_bf16: sample under bfloat16 autocast on a CPU (`env.cpu_bf16_context`); log-probs stay in float32.
    """
    with cpu_bf16_context(cpu_bf16):
        samples = generate(model, tok, prompts, n_samples=n_samples, max_new_tokens=max_new_tokens, batch_size=batch_size,
                           seed=seed, cache_dir=cache_dir, key={**key, **({"cpu_bf16": True} if cpu_bf16 else {})},
                           progress=False)
    ps = [p for p, ys in zip(prompts, samples) for _ in ys]
    ys = [y for s in samples for y in s]
    rewards = np.array(cached_map(lambda b: scorer(b, progress=False), [p + y for p, y in zip(ps, ys)], 256,
                                  cache_dir, key={"scorer": scorer.description}, desc="scoring", progress=False,
                                  code="ground_truth"))
    kl, n_kl = float("nan"), sum(len(s) for s in samples[:kl_prompts])
    if hasattr(model, "disable_adapter"):
        lp = completion_logprobs(model, tok, ps[:n_kl], ys[:n_kl])
        with model.disable_adapter():
            start, tokens = completion_stats(model, tok, ps[:n_kl], ys[:n_kl])
        kl = float(np.mean(lp - start))
    else:  # the model is the start itself
        start, tokens = completion_stats(model, tok, ps[:n_kl], ys[:n_kl])
    ends = np.cumsum([len(s) for s in samples])
    spans = list(zip(ends - [len(s) for s in samples], ends))
    per_prompt = [float(rewards[a:b].mean()) for a, b in spans]
    per_token = np.asarray(start, dtype=float) / np.maximum(np.asarray(tokens, dtype=float), 1.0)
    return {"reward": float(rewards.mean()), "reward_se": float(rewards.std(ddof=1) / math.sqrt(len(rewards))),
            "kl": kl, "kl_n": n_kl, "n": int(len(rewards)), "prompt_rewards": per_prompt,  # for paired comparisons (stats.py)
            # the same per prompt, for the KL prompts' samples: a paired comparison of naturalness at matched KL
            "prompt_start_logp_per_token": [float(per_token[a:b].mean()) for a, b in spans if b <= n_kl],
            **text_quality(ys, start, tokens), "examples": [p + y for p, y in list(zip(ps, ys))[:3]],
            "prompt_samples": [list(s) for s in samples[:EXAMPLE_PROMPTS]]}


def text_quality(samples: list[str], start_logps, tokens) -> dict:
    """Two things a lexicon reward cannot buy, beside it: how natural the samples read to the starting model (its mean
    log-prob per token of the first samples, `start_logp_per_token`: text that games VADER with a string of
    'great great' reads badly) and how varied they are (`distinct_2`: distinct word pairs over all word pairs)."""
    per_token = np.asarray(start_logps, dtype=float) / np.maximum(np.asarray(tokens, dtype=float), 1.0)
    pairs = [(a, b) for y in samples for a, b in zip(y.split(), y.split()[1:])]
    return {"start_logp_per_token": float(per_token.mean()) if per_token.size else float("nan"),
            "distinct_2": len(set(pairs)) / len(pairs) if pairs else float("nan")}

def reference_pair_logps(backbone: str, sets: dict, out_dir) -> dict:
    """The starting policy's log-probs of each set's pairs (adapters off = the reference), cached on disk."""
    model, tok, _ = load_causal_lm(backbone, seed=0, log=lambda *_: None)
    if torch.cuda.is_available():
        model.to("cuda")
    return {name: pair_logps(model.eval(), tok, rs, cache_dir=Path(out_dir) / "ref_cache",
                             key={"policy": "reference", "backbone": backbone}) for name, rs in sets.items()}


def reference_metrics(backbone: str, prompts: list[str], scorer, out_dir, P, seed: int = 0) -> dict:
    """The starting policy's reward on the held-out prompts (KL 0 by definition), sampled like the others."""
    model, tok, _ = load_causal_lm(backbone, seed=seed, log=lambda *_: None)
    if torch.cuda.is_available():
        model.to("cuda")
    ev = evaluate_policy(model.eval(), tok, prompts, scorer, key={"policy": "reference", "backbone": backbone},
                         cache_dir=Path(out_dir) / "eval_cache", n_samples=P.eval_samples,
                         max_new_tokens=P.eval_max_new_tokens, batch_size=P.eval_batch_size, seed=1000 + seed,
                         cpu_bf16=P.cpu_bf16)
    ev["kl"] = 0.0
    return ev
