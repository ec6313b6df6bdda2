"""Where this machine keeps things and whether the hub answers: the two facts every loader asks first.

Kept apart from the loaders (models, prompts, ground_truth) so each of them can ask without importing another.
"""

from __future__ import annotations

import os
import urllib.request
from pathlib import Path


def cache_dir() -> Path:
    """$APO_CACHE, else ~/.cache/apo-kit: converted weights and tokenizers (never committed)."""
    return Path(os.environ.get("APO_CACHE") or Path.home() / ".cache" / "apo-kit")


def hub_reachable(timeout: float = 3.0) -> bool:
    """True only if the Hugging Face hub answers within `timeout` seconds and offline mode is not set."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on"):
            return False
    try:
        urllib.request.urlopen(urllib.request.Request("https://huggingface.co/api/models/gpt2", method="HEAD"),
                               timeout=timeout)
        return True
    except Exception:  # noqa: BLE001 - any failure means "use the offline path"
        return False


# Model families whose activations overflow float16 (max 65504): Gemma 3's large RMSNorm weights and post-norms
# push hidden states past it, so fp16 gives inf/NaN (transformers issue 36822; FunctionGemma-270M, a Gemma 3, the
# same). The MADPO authors trained Gemma-3-270M on their T4 in float32.
FP16_UNSAFE = ("gemma3", "gemma3_text", "gemma2")


def mixed_precision(model=None) -> dict:
    """{'bf16': ..., 'fp16': ...} for a Trainer config on this machine: why not simply bf16 on every GPU.

    bf16 only where the GPU computes it natively (compute capability >= 8: A100, L4, H100); a T4 (7.5)
    would emulate it, slower than float32. Below that, fp16 mixed precision, except for model families that
    overflow in fp16 (`FP16_UNSAFE`, every model of this kit): those train in float32. No GPU: both False.
    `model`: a model, a config, or a config's `model_type` string (None: assume fp16 is safe).
    """
    import torch

    if not torch.cuda.is_available():
        return {"bf16": False, "fp16": False}
    if torch.cuda.get_device_capability() >= (8, 0):
        return {"bf16": True, "fp16": False}
    config = getattr(model, "config", model)
    model_type = config if isinstance(config, str) or config is None else getattr(config, "model_type", None)
    return {"bf16": False, "fp16": model_type not in FP16_UNSAFE}


def cpu_has_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AMX or AVX-512 BF16). Without it bf16 is emulated: a matrix
    product of the size above took 0.35 s in bf16 against 0.10 s in float32 on such a CPU (AVX-512, no bf16), so a
    profile's `cpu_bf16` is then turned off (`Study`), not obeyed at 3x the cost."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:  # not Linux: assume no native bf16 rather than risk a 3x slower run
        return False
    return any(flag in flags for flag in ("amx_bf16", "avx512_bf16"))


def cpu_bf16_context(enabled: bool):
    """bfloat16 autocast for a CPU forward pass (sampling), or nothing: on a CPU with bf16 matrix units (Intel
    AMX, `lscpu` lists amx_bf16) a matrix product is ~4.7x faster in bf16 (measured, 880 x 640 x 15,715), so
    sampling 256 continuations took 11.1 s instead of 17.2 s. Never used on a GPU (mixed_precision decides there)."""
    import contextlib

    import torch

    if not enabled or torch.cuda.is_available():
        return contextlib.nullcontext()
    return torch.autocast("cpu", dtype=torch.bfloat16)
