"""Training one policy with one loss: LoRA adapters on TRL's DPOTrainer (`ApoTrainer`), resumable.

The reference is the same backbone with the adapters switched off, and its log-probs are computed once
before training (only for losses that read them). Checkpoints are written as it goes; a run killed
mid-training resumes from the last whole one and ends with the adapters an unbroken run would have.
A finished run is saved as safetensors and reused on a re-run. What the run measured along the way
(`track`, the per-pair log) is saved with each checkpoint, so a resumed run keeps it.
"""

from __future__ import annotations

import contextlib
import shutil
import warnings
from pathlib import Path

import torch
from datasets import Dataset
from transformers import PrinterCallback, TrainerCallback
from trl import DPOConfig

from . import losses as L
from .cache import fingerprint
from .env import mixed_precision
from .frozen_layers import FrozenLowerLayers, shared_cache, training_sequences
from .models import load_causal_lm
from .progress import quiet_progress
from .storage import atomic_write_bytes, atomic_write_json, note_reuse, read_json, read_json_or_none, safetensors_problem
from .trainer import ApoTrainer

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]


def train_policy(method: str, train_rows: list[dict], backbone: str, out_dir, *, loss_kwargs: dict | None = None,
                 epochs: float = 1.0, batch_size: int = 8, lr: float = 5e-4, lora_r: int = 16, max_length: int = 128,
                 seed: int = 0, progress: bool = False, log=print, save_steps: int = 10, callbacks=None,
                 track=None, track_every: int | None = None, log_pairs: bool = False, top_layers: int | None = None,
                 cpu_bf16: bool = False, track_key=None):
    """(model with trained adapters, tokenizer, info). Same seed -> same data order for every method.

    Checkpoints (adapters, optimizer, scheduler, RNG) are written every `save_steps` steps; a run killed
    mid-training resumes from the last complete one and ends with the same adapters as an unbroken run.
    `track(model, tok) -> dict` (JSON values) is called before the first step, every `track_every` steps
    and after the last; its results land in info['track'] as [{'step': s, **result}, ...]; `track_key` names what
    it measures (part of the cache key: a finished run is reused only for the same measurements).
    log_pairs: rows need a `pair_id`; info['pair_log'] then holds what the loss did to each pair at each
    step (see `ApoTrainer.pair_log`).
    top_layers: LoRA on the top `top_layers` decoder layers only, with the frozen layers below run once per
    text and kept (`frozen_layers.py`; shared by every run on the same backbone in this process). None: LoRA
    on every layer, as the papers do.
    cpu_bf16: train in bfloat16 mixed precision on a CPU (1.28x faster a step where the CPU has bf16 matrix units,
    `env.cpu_bf16_context`; logged losses within 1.5 % of float32's over 25 steps); ignored on a GPU.
    """
    from peft import LoraConfig, PeftModel

    loss_kwargs = dict(loss_kwargs or {})
    key = fingerprint(method, loss_kwargs, backbone, epochs, batch_size, lr, lora_r, max_length, seed,
                      [(r["prompt"], r["chosen"], r["rejected"], r.get("margin")) for r in train_rows],
                      *([{"top_layers": top_layers}] if top_layers is not None else []),
                      *([{"cpu_bf16": True}] if cpu_bf16 else []),
                      *([{"track": track_key, "every": track_every, "float32": True}]
                        if track is not None and track_key is not None else []))
    folder = Path(out_dir) / f"{method}-{key}"
    base, tok, prov = load_causal_lm(backbone, seed=seed, log=lambda *_: None)
    if (folder / "DONE").exists() and _finished_run_damaged(folder):
        (folder / "DONE").unlink()  # train it again below; a checkpoint left from before is not trusted either
        shutil.rmtree(folder / "trainer", ignore_errors=True)
    n_layers = base.config.num_hidden_layers
    if (folder / "DONE").exists():
        model = PeftModel.from_pretrained(base, folder / "adapter")
        if torch.cuda.is_available():
            model.to("cuda")
        if top_layers is not None:  # measured through the kept lower states, as after training
            model._apo_frozen_lower = FrozenLowerLayers(model, n_layers - top_layers,
                                                        cache=shared_cache("policy", backbone, n_layers - top_layers))
        info = read_json(folder / "info.json")
        info["reused"] = True
        note_reuse("policies")
        return model.eval(), tok, info
    cols = ["prompt", "chosen", "rejected"] + [c for c in ("margin", "pair_id") if c in train_rows[0]]
    if log_pairs and "pair_id" not in cols:
        raise ValueError("log_pairs=True needs a 'pair_id' column in the training rows")
    ds = Dataset.from_list([{c: r[c] for c in cols} for r in train_rows])
    cuda = torch.cuda.is_available()
    args = DPOConfig(
        output_dir=str(folder / "trainer"), num_train_epochs=epochs, per_device_train_batch_size=batch_size,
        learning_rate=lr, lr_scheduler_type="cosine", warmup_steps=0.03, logging_steps=1, save_strategy="steps",
        save_steps=save_steps, save_total_limit=2,
        report_to="none", **(mixed_precision(base) if cuda or not cpu_bf16 else {"bf16": True, "fp16": False}),
        use_cpu=not cuda, seed=seed, data_seed=seed,
        max_length=max_length, disable_tqdm=not progress, dataloader_num_workers=0,
        # Two cost levers that leave training unchanged (same losses, measured):
        # - TRL turns activation checkpointing on by default; a 270M model with LoRA fits in memory without it,
        #   and recomputing the forward pass cost 22 % of a cpu training step (46.4 s -> 36.0 s on 72 pairs).
        # - The reference log-probs are computed once before training, and only for losses that read them:
        #   SimPO, gamma-SimPO and AMaPO are reference-free, so their pass over the data would be wasted.
        #   Not with `top_layers`: TRL's pass runs before the frozen layers are installed, i.e. the whole model
        #   over every pair (about 90 s for 1,000 pairs on 2 cores, as long as the training); computed at each
        #   step instead it is one more pass through the top layers from the kept states (adapters off).
        gradient_checkpointing=False,
        precompute_ref_log_probs=L.capabilities(method).reference and top_layers is None,
    )
    torch.manual_seed(seed)
    if top_layers is not None and not (isinstance(top_layers, int) and 0 < top_layers < n_layers):
        raise ValueError(f"top_layers must be a whole number in 1..{n_layers - 1} for this backbone, got {top_layers!r}")
    only_top = {} if top_layers is None else {"layers_to_transform": list(range(n_layers - top_layers, n_layers)),
                                              "layers_pattern": "layers"}
    peft_config = LoraConfig(task_type="CAUSAL_LM", r=lora_r, lora_alpha=2 * lora_r, lora_dropout=0.0,
                             target_modules=LORA_TARGETS, **only_top)
    with contextlib.nullcontext() if progress else quiet_progress():
        trainer = ApoTrainer(model=base, args=args, train_dataset=ds, processing_class=tok, peft_config=peft_config,
                             loss_name=method, loss_kwargs=loss_kwargs, callbacks=callbacks)
        if not progress:  # without a progress bar the Trainer prints every log line; the info file keeps them
            trainer.remove_callback(PrinterCallback)
        resume = _last_complete_checkpoint(folder / "trainer")
        # What the callbacks saved up to the checkpoint; if a file is lost or damaged, those steps cannot be
        # measured again, so the run starts over rather than resume with a hole in its record.
        tracked = read_json_or_none(folder / "track.json", list) if track is not None else []
        kept = read_json_or_none(folder / "pair_log.json", list) if log_pairs else []
        if resume and (tracked is None or kept is None):
            log(f"{method}: the measurements saved with {resume.name} are missing or damaged; starting over")
            resume = None
        if not resume:
            tracked, kept = [], []
        lower = None
        if top_layers is not None:
            lower = FrozenLowerLayers(trainer.model, n_layers - top_layers,
                                      cache=shared_cache("policy", backbone, n_layers - top_layers))
            lower.precompute(training_sequences(trainer.train_dataset, args.max_length, args.truncation_mode))
        tracker = None
        if track is not None:
            # measurements (ranking.completion_stats) pad on the right, so they run from the kept states too:
            # a tracked pair's lower layers run once for every step, method and seed
            tracker = _Tracker(track, tok, track_every, folder / "track.json", tracked)
            trainer.add_callback(tracker)
        if log_pairs:
            done = int(resume.name.split("-")[1]) if resume else 0
            trainer.pair_log = [e for e in kept if e["step"] <= done]
            trainer.add_callback(_PairLogSaver(trainer, folder / "pair_log.json"))
        if resume:
            log(f"resuming {method} from {resume.name}")
        with lower.installed() if lower else contextlib.nullcontext():
            trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    # the float32 forward back: accelerate wrapped it in autocast for mixed-precision training (float32_forward)
    model = trainer.accelerator.unwrap_model(trainer.model, keep_fp32_wrapper=False)
    model.save_pretrained(folder / "adapter")
    if lower is not None:  # log-probs of pairs (ranking.completion_stats) then run the top layers only
        model._apo_frozen_lower = lower
    info = {"method": method, "loss_kwargs": trainer.objective.hparams, "key": key, "backbone": prov,
            "log": [h for h in trainer.state.log_history if "loss" in h],
            "train_runtime_s": trainer.state.log_history[-1].get("train_runtime")}
    if tracker is not None:
        tracker.record(model, trainer.state.global_step)
        info["track"] = tracker.entries
    if log_pairs:
        info["pair_log"] = trainer.pair_log
    atomic_write_json(folder / "info.json", info)
    atomic_write_bytes(folder / "DONE", b"ok\n")
    shutil.rmtree(folder / "trainer", ignore_errors=True)  # checkpoints are only for resuming
    info["reused"] = False
    return model.eval(), tok, info


@contextlib.contextmanager
def float32_forward(model):
    """The model's own forward for a moment. With bf16 or fp16 training, accelerate replaces a model's `forward` by
    one that runs under autocast, for good; measured that way a Gemma response's log-prob is off by ~0.15 nats
    (0.55 at most, 64 pairs), which swamps an implicit reward log pi - log pi_ref, whose reference is float32."""
    wrapped = vars(model).get("forward")
    if wrapped is not None and "_original_forward" in vars(model):
        model.forward = model._original_forward
    try:
        yield model
    finally:
        if wrapped is not None:
            model.forward = wrapped


class _Tracker(TrainerCallback):
    """Measures the model during training (eval mode, no grad) and saves as it goes.

    Entries are written atomically after each measurement, so a resumed run keeps the ones it had.
    """

    def __init__(self, fn, tok, every: int | None, path: Path, entries: list):
        self.fn, self.tok, self.every, self.path = fn, tok, every, path
        self.entries = list(entries)

    def record(self, model, step: int):
        if any(e["step"] == step for e in self.entries):
            return
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad(), float32_forward(model):
                self.entries.append({"step": int(step), **self.fn(model, self.tok)})
        finally:
            model.train(was_training)
        atomic_write_json(self.path, self.entries)

    def on_train_begin(self, args, state, control, model=None, **kw):
        if state.global_step == 0:
            self.record(model, 0)

    def on_step_end(self, args, state, control, model=None, **kw):
        if self.every and state.global_step % self.every == 0 and state.global_step < state.max_steps:
            self.record(model, state.global_step)


class _PairLogSaver(TrainerCallback):
    """Saves the trainer's per-pair log with every checkpoint, so a resumed run keeps the steps it had."""

    def __init__(self, trainer, path: Path):
        self.trainer, self.path = trainer, path

    def on_save(self, args, state, control, **kw):
        atomic_write_json(self.path, self.trainer.pair_log)


def _last_complete_checkpoint(folder: Path) -> Path | None:
    """The newest checkpoint-N that is whole: its trainer state written (the Trainer writes it last) and readable,
    its adapter weights and the loss's state intact. A damaged one is named and passed over for the one before."""
    found = [p for p in folder.glob("checkpoint-*") if p.name.split("-")[1].isdigit()]
    for p in sorted(found, key=lambda p: int(p.name.split("-")[1]), reverse=True):
        if not (p / "trainer_state.json").exists():
            continue  # killed while saving: not a checkpoint yet
        problem = _checkpoint_problem(p)
        if problem is None:
            return p
        warnings.warn(f"checkpoint {p} is damaged ({problem}); resuming from an earlier one", stacklevel=2)
    return None


def _checkpoint_problem(p: Path) -> str | None:
    for name in ("trainer_state.json", "apo_objective.json"):
        if (p / name).exists():
            try:
                read_json(p / name)
            except (OSError, ValueError) as e:
                return f"{name}: {type(e).__name__}"
    for weights in p.glob("*.safetensors"):
        problem = safetensors_problem(weights)
        if problem:
            return f"{weights.name}: {problem}"
    return None


def _finished_run_damaged(folder: Path) -> bool:
    """A finished run whose files cannot be read back is trained again (with a warning), not failed on forever."""
    info = read_json_or_none(folder / "info.json")
    problem = ("info.json missing or damaged" if info is None else
               safetensors_problem(folder / "adapter" / "adapter_model.safetensors"))
    if problem:
        warnings.warn(f"finished run {folder} is damaged ({problem}); training it again", stacklevel=3)
    return problem is not None
