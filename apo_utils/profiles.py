"""The `smoke`, `cpu` and `gpu` settings in one place, so a learner switches scale with one parameter.

`auto` resolves to $APO_PROFILE when set (CI sets smoke), else `gpu` when CUDA is present, else `cpu`.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field

PROFILES = ("smoke", "cpu", "gpu")


@dataclass(frozen=True)
class BanditSettings:
    """The Bradley-Terry bandit of notebook 00: a softmax policy over `n_responses` with known rewards."""

    n_responses: int = 300
    n_pairs: int = 2000
    steps: int = 400
    batch_size: int = 64
    seeds: tuple[int, ...] = (0, 1, 2)


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    bandit: BanditSettings = field(default_factory=BanditSettings)

    def as_dict(self) -> dict:
        return asdict(self)


_SETTINGS = {
    "smoke": Profile("smoke", "CI check: tiny random model, a few dozen prompts, minutes on 2 CPU cores",
                     bandit=BanditSettings(n_responses=200, n_pairs=1000, steps=150, batch_size=64, seeds=(0, 1, 2))),
    "cpu": Profile("cpu", "laptop: pretrained Gemma-3-270M offline, a few hundred pairs, <= 60 min a study",
                   bandit=BanditSettings(n_responses=300, n_pairs=3000, steps=600, batch_size=64,
                                         seeds=(0, 1, 2, 3, 4))),
    "gpu": Profile("gpu", "paper scale on one GPU",
                   bandit=BanditSettings(n_responses=300, n_pairs=3000, steps=600, batch_size=64,
                                         seeds=(0, 1, 2, 3, 4))),
}


def resolve(profile: str = "auto") -> str:
    """Turn 'auto' into a concrete profile name; reject unknown names with the list of valid ones."""
    if profile == "auto":
        env = os.environ.get("APO_PROFILE")
        if env:
            profile = env
        else:
            try:
                import torch

                profile = "gpu" if torch.cuda.is_available() else "cpu"
            except ImportError:
                profile = "cpu"
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)} or 'auto'")
    return profile


def get(profile: str = "auto") -> Profile:
    return _SETTINGS[resolve(profile)]
