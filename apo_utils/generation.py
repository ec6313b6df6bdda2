"""Sampling continuations from a policy: batched, seeded per batch, cached on disk and resumable.

Each batch is seeded from (seed, its first item), so a resumed run draws exactly the samples the
killed one would have, and the cache (see `cache.py`) keeps every finished batch.
"""

from __future__ import annotations

import torch

from .cache import cached_map


@torch.no_grad()
def generate(model, tokenizer, prompts: list[str], n_samples: int = 1, max_new_tokens: int = 32,
             temperature: float = 1.0, top_p: float = 1.0, min_new_tokens: int = 4, batch_size: int = 16,
             seed: int = 0, cache_dir=None, key: dict | None = None, progress: bool = True) -> list[list[str]]:
    """`n_samples` continuations of every prompt: a list (per prompt) of lists of strings.

    With `cache_dir`, `key` must name everything that changes the result that the prompts do not
    (which model, which checkpoint): a different key never reads another model's samples.
    """
    if n_samples < 1 or max_new_tokens < 1 or batch_size < 1:
        raise ValueError("n_samples, max_new_tokens and batch_size must be >= 1")
    if not (temperature > 0):
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if cache_dir is not None and not key:
        raise ValueError("a cached generation needs a `key` naming the model it comes from")
    items = [{"prompt": p, "i": i, "k": k} for i, p in enumerate(prompts) for k in range(n_samples)]
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"

    def run(batch):
        torch.manual_seed(seed * 1_000_003 + batch[0]["i"] * n_samples + batch[0]["k"])
        enc = tokenizer([b["prompt"] for b in batch], return_tensors="pt", padding=True).to(device)
        out = model.generate(**enc, do_sample=True, temperature=temperature, top_p=top_p, top_k=0,
                             max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens,
                             pad_token_id=tokenizer.pad_token_id)
        # Decode prompt+continuation together and cut off the decoded prompt: tokenizers that drop the
        # leading space of a first token (SentencePiece, Metaspace) keep the continuation's space this way.
        full = tokenizer.batch_decode(out, skip_special_tokens=True)
        head = tokenizer.batch_decode(enc["input_ids"], skip_special_tokens=True)
        return [f[len(h):] if f.startswith(h) else tokenizer.decode(o[enc["input_ids"].shape[1]:], skip_special_tokens=True)
                for f, h, o in zip(full, head, out)]

    try:
        params = {"n_samples": n_samples, "max_new_tokens": max_new_tokens, "temperature": temperature,
                  "top_p": top_p, "min_new_tokens": min_new_tokens, "seed": seed}
        flat = cached_map(run, items, batch_size, cache_dir, key={**(key or {}), **params}, desc="generating",
                          progress=progress, code="generation")
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    return [flat[i * n_samples : (i + 1) * n_samples] for i in range(len(prompts))]
