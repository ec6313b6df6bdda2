"""Where this machine keeps things and whether the hub answers: the two facts every loader asks first.

Kept apart from the loaders (models, prompts, rewards) so each of them can ask without importing another.
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
