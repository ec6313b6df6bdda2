"""Quiet progress bars: a notebook training dozens of models shows one bar, its own.

Its own module so that both trainers (study, reward_model) can use it without one importing the other.
"""

from __future__ import annotations

import contextlib
import os


@contextlib.contextmanager
def quiet_progress():
    """No per-run dataset/precompute progress bars: a notebook training dozens of policies shows one bar, its own."""
    import datasets

    was_enabled = datasets.is_progress_bar_enabled()
    old = os.environ.get("TQDM_DISABLE")
    datasets.disable_progress_bars()
    os.environ["TQDM_DISABLE"] = "1"
    try:
        yield
    finally:
        if was_enabled:
            datasets.enable_progress_bars()
        if old is None:
            os.environ.pop("TQDM_DISABLE", None)
        else:
            os.environ["TQDM_DISABLE"] = old
