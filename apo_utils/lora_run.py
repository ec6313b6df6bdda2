"""One cached LoRA training run: the road every trained model here takes (policies, reward models, the benchmark).

A run lives in a folder named by a key of everything that changes its result, the code it runs included
(`code_version.fingerprint`): edit a loss and the runs that use it train again, the others are kept. A finished
run (`DONE` beside its weights and `info.json`) is loaded instead of trained; one whose files cannot be read back
is named in a warning and trained again. LoRA is configured in one place (`lora_config`), and with `top_layers`
the frozen layers below the adapters run once per text and are kept (`frozen_lower`).
"""

from __future__ import annotations

import shutil
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

from . import code_version
from .cache import fingerprint
from .frozen_layers import FrozenLowerLayers, shared_cache
from .storage import atomic_write_bytes, atomic_write_json, made_before_recompute, read_json_or_none, safetensors_problem

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]  # the attention projections, as the MADPO authors


@dataclass(frozen=True)
class RunSettings:
    """How one model is trained: the same for every method a comparison sets side by side."""

    epochs: float = 1.0
    batch_size: int = 8
    lr: float = 5e-4
    lora_r: int = 16  # 0: train every weight (only the tiny smoke reward model does)
    max_length: int = 128
    seed: int = 0
    top_layers: int | None = None  # LoRA on the top layers only; None: every layer, as the papers
    cpu_bf16: bool = False  # bfloat16 mixed precision on a CPU (env.cpu_bf16_context); a GPU decides by itself

    def key(self) -> dict:
        """For a cache key: options left at the value that keeps the old behaviour are left out."""
        d = asdict(self)
        return {k: v for k, v in d.items() if not (k in ("top_layers", "cpu_bf16") and v in (None, False))}

    def check(self, n_layers: int):
        if self.top_layers is not None and not (isinstance(self.top_layers, int) and 0 < self.top_layers < n_layers):
            raise ValueError(f"top_layers must be a whole number in 1..{n_layers - 1} for this backbone, "
                             f"got {self.top_layers!r}")
        if self.top_layers is not None and not self.lora_r:
            raise ValueError("top_layers needs LoRA (lora_r > 0): full fine-tuning trains every layer")


def lora_config(task_type: str, settings: RunSettings, n_layers: int):
    """LoRA of rank r (alpha 2r, no dropout) on the attention projections, on every layer or the top ones."""
    from peft import LoraConfig

    if not settings.lora_r:
        return None
    only_top = ({} if settings.top_layers is None else
                {"layers_to_transform": list(range(n_layers - settings.top_layers, n_layers)), "layers_pattern": "layers"})
    return LoraConfig(task_type=task_type, r=settings.lora_r, lora_alpha=2 * settings.lora_r, lora_dropout=0.0,
                      target_modules=LORA_TARGETS, **only_top)


def frozen_lower(model, kind: str, backbone: str, settings: RunSettings, n_layers: int) -> FrozenLowerLayers | None:
    """The kept lower-layer states for `model` when only its top layers train; shared by every run of this process
    on the same backbone and kind ('policy', 'reward'), since those states are the same for all of them."""
    if settings.top_layers is None:
        return None
    first = n_layers - settings.top_layers
    return FrozenLowerLayers(model, first, cache=shared_cache(kind, backbone, first))


class RunFolder:
    """Where one run is cached: `<parent>/<name>-<key>`, the key over `parts` and the code `module` reaches."""

    def __init__(self, parent, name: str, parts: list, module: str):
        self.code = code_version.fingerprint(module)
        self.key = fingerprint(*parts, {"code": self.code})
        self.path = Path(parent) / f"{name}-{self.key}"

    def finished(self, weights: Path) -> bool:
        """A finished run that can be read back. A damaged one, or one made before a forced recompute
        (`reproduce --force`), is set up to train again, its checkpoints discarded with it."""
        done = self.path / "DONE"
        if not done.exists():
            return False
        info = read_json_or_none(self.path / "info.json")
        problem = ("info.json missing or damaged" if info is None else safetensors_problem(weights))
        if problem:
            warnings.warn(f"finished run {self.path} is damaged ({problem}); training it again", stacklevel=3)
        if problem or made_before_recompute(done):
            done.unlink()
            shutil.rmtree(self.path / "trainer", ignore_errors=True)
            return False
        return True

    def info(self) -> dict:
        return read_json_or_none(self.path / "info.json") or {}

    def finish(self, info: dict):
        """Write what the run measured, then mark it done (in that order: a kill in between leaves it unfinished)."""
        info["code"] = self.code
        atomic_write_json(self.path / "info.json", info)
        atomic_write_bytes(self.path / "DONE", b"ok\n")
