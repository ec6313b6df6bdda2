"""Training one policy with one loss: LoRA adapters on TRL's DPOTrainer (`ApoTrainer`), cached and resumable.

The reference is the same backbone with the adapters switched off, and its log-probs are computed once
before training (only for losses that read them). Checkpoints are written as it goes; a run killed
mid-training resumes from the last whole one and ends with the adapters an unbroken run would have.
A finished run is saved as safetensors and reused on a re-run of the same code (`lora_run.RunFolder`). What the run measured along the way
(`track`, the per-pair log) is saved with each checkpoint, so a resumed run keeps it.
"""

from __future__ import annotations

import contextlib
import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from datasets import Dataset
from transformers import PrinterCallback, TrainerCallback
from trl import DPOConfig

from . import losses as L
from .env import mixed_precision
from .frozen_layers import attach, training_sequences
from .lora_run import RunFolder, RunSettings, frozen_lower, lora_config
from .models import load_causal_lm
from .progress import quiet_progress
from .storage import atomic_write_json, note_reuse, read_json, read_json_or_none, safetensors_problem
from .trainer import ApoTrainer

@dataclass(frozen=True)
class Tracking:
    """Measurements of the policy during training: `measure(model, tok) -> dict` (JSON values) before the first
    step, every `every` steps and after the last; `key` names what it measures (part of the cache key, so a finished
    run is reused only for the same measurements)."""

    measure: Callable
    every: int | None = None
    key: object = None
    at_end: bool = True  # measure after the last step too (False: the caller measures the end itself, more fully)
    start: Callable | None = None  # measures step 0 instead of `measure` (e.g. from a cache: every run starts alike)


def train_policy(method: str, train_rows: list[dict], backbone: str, out_dir, settings: RunSettings, *,
                 loss_kwargs: dict | None = None, track: Tracking | None = None, log_pairs: bool = False,
                 save_steps: int = 10, callbacks=None, progress: bool = False, log=print):
    """(model with trained adapters, tokenizer, info). Same seed -> same data order for every method.

    Checkpoints (adapters, optimizer, scheduler, RNG) are written every `save_steps` steps; a run killed
    mid-training resumes from the last complete one and ends with the same adapters as an unbroken run.
    track: results land in info['track'] as [{'step': s, **result}, ...].
    log_pairs: rows need a `pair_id`; info['pair_log'] then holds what the loss did to each pair at each
    step (see `ApoTrainer.pair_log`).
    settings.top_layers: LoRA on the top decoder layers only, with the frozen layers below run once per text and
    kept (`frozen_layers.py`). settings.cpu_bf16: bfloat16 mixed precision on a CPU (1.28x faster a step where the
    CPU has bf16 matrix units; logged losses within 1.5 % of float32's over 25 steps); ignored on a GPU.
    """
    from peft import PeftModel

    loss_kwargs = dict(loss_kwargs or {})
    tracked_key = ([{"track": track.key, "every": track.every, "float32": True,
                     **({} if track.at_end else {"at_end": False})}]
                   if track is not None and track.key is not None else [])
    run = RunFolder(out_dir, method, [method, loss_kwargs, backbone, settings.key(),
                                      [(r["prompt"], r["chosen"], r["rejected"], r.get("margin")) for r in train_rows],
                                      *tracked_key], module=__name__.split(".")[-1])
    folder = run.path
    base, tok, prov = load_causal_lm(backbone, seed=settings.seed, log=lambda *_: None)
    n_layers = base.config.num_hidden_layers
    settings.check(n_layers)
    if run.finished(folder / "adapter" / "adapter_model.safetensors"):
        model = PeftModel.from_pretrained(base, folder / "adapter")
        if torch.cuda.is_available():
            model.to("cuda")
        attach(model, frozen_lower(model, "policy", backbone, settings, n_layers))  # measured as after training
        info = run.info()
        info["reused"] = True
        note_reuse("policies", code=run.code)
        return model.eval(), tok, info
    cols = ["prompt", "chosen", "rejected"] + [c for c in ("margin", "pair_id") if c in train_rows[0]]
    if log_pairs and "pair_id" not in cols:
        raise ValueError("log_pairs=True needs a 'pair_id' column in the training rows")
    ds = Dataset.from_list([{c: r[c] for c in cols} for r in train_rows])
    args = _config(folder, settings, method, base, save_steps, progress)
    torch.manual_seed(settings.seed)
    with contextlib.nullcontext() if progress else quiet_progress():
        trainer = ApoTrainer(model=base, args=args, train_dataset=ds, processing_class=tok,
                             peft_config=lora_config("CAUSAL_LM", settings, n_layers),
                             loss_name=method, loss_kwargs=loss_kwargs, callbacks=callbacks)
        if not args.precompute_ref_log_probs:  # each pair's reference log-probs once per process, not every step
            trainer.reference_cache = reference_cache(backbone, settings)
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
        lower = frozen_lower(trainer.model, "policy", backbone, settings, n_layers)
        if lower is not None:
            lower.precompute(training_sequences(trainer.train_dataset, args.max_length, args.truncation_mode))
            attach(trainer.model, lower)  # a measurement during training can suspend it (frozen_layers.suspended)
        tracker = None
        if track is not None:
            # measurements (ranking.completion_stats) pad on the right, so they run from the kept states too:
            # a tracked pair's lower layers run once for every step, method and seed
            tracker = _Tracker(track.measure, tok, track.every, folder / "track.json", tracked, start=track.start)
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
    attach(model, lower)  # log-probs of pairs (ranking.completion_stats) then run the top layers only
    info = {"method": method, "loss_kwargs": trainer.objective.hparams, "key": run.key, "backbone": prov,
            "log": [h for h in trainer.state.log_history if "loss" in h],
            "train_runtime_s": trainer.state.log_history[-1].get("train_runtime"), "steps": trainer.state.global_step}
    if tracker is not None:
        if track.at_end:
            tracker.record(model, trainer.state.global_step)
        info["track"] = tracker.entries
    if log_pairs:
        info["pair_log"] = trainer.pair_log
    run.finish(info)
    shutil.rmtree(folder / "trainer", ignore_errors=True)  # checkpoints are only for resuming
    info["reused"] = False
    return model.eval(), tok, info


def _config(folder: Path, settings: RunSettings, method: str, base, save_steps: int, progress: bool) -> DPOConfig:
    """TRL's DPOConfig for one run: cosine schedule, a checkpoint every `save_steps` steps for resuming, the mixed
    precision this machine computes natively (bf16 on a CPU only when asked)."""
    cuda = torch.cuda.is_available()
    return DPOConfig(
        output_dir=str(folder / "trainer"), num_train_epochs=settings.epochs,
        per_device_train_batch_size=settings.batch_size, learning_rate=settings.lr, lr_scheduler_type="cosine",
        warmup_steps=0.03, logging_steps=1, save_strategy="steps", save_steps=save_steps, save_total_limit=2,
        report_to="none",
        **(mixed_precision(base) if cuda or not settings.cpu_bf16 else {"bf16": True, "fp16": False}),
        use_cpu=not cuda, seed=settings.seed, data_seed=settings.seed,
        max_length=settings.max_length, disable_tqdm=not progress, dataloader_num_workers=0,
        # Two cost levers that leave training unchanged (same losses, measured):
        # - TRL turns activation checkpointing on by default; a 270M model with LoRA fits in memory without it,
        #   and recomputing the forward pass cost 22 % of a cpu training step (46.4 s -> 36.0 s on 72 pairs).
        # - The reference log-probs are computed once before training, and only for losses that read them:
        #   SimPO, gamma-SimPO and AMaPO are reference-free, so their pass over the data would be wasted.
        #   Not with `top_layers`: TRL's pass runs before the frozen layers are installed, i.e. the whole model
        #   over every pair (about 90 s for 1,000 pairs on 2 cores, as long as the training); computed at each
        #   step instead it is one more pass through the top layers from the kept states (adapters off).
        activation_checkpointing=False,
        precompute_ref_log_probs=L.capabilities(method).reference and settings.top_layers is None,
    )


_REFERENCE: dict = {}


def reference_cache(backbone: str, settings: RunSettings) -> dict:
    """The reference log-probs of pairs, shared by every run of this process on one backbone and precision (the
    reference is the start with adapters off, the same for every method and seed). A pair's value then comes from
    the batch it was first met in: equal, to float rounding (~1e-6 nats), to its value in any other batch."""
    return _REFERENCE.setdefault((backbone, bool(settings.cpu_bf16), torch.cuda.is_available()), {})


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

    def __init__(self, fn, tok, every: int | None, path: Path, entries: list, start=None):
        self.fn, self.tok, self.every, self.path, self.start = fn, tok, every, path, start
        self.entries = list(entries)

    def record(self, model, step: int):
        if any(e["step"] == step for e in self.entries):
            return
        was_training = model.training
        model.eval()
        gpus = list(range(torch.cuda.device_count()))
        try:  # sampling seeds torch's generator: measuring must not change the training it measures
            with torch.no_grad(), float32_forward(model), torch.random.fork_rng(devices=gpus):
                fn = self.start if step == 0 and self.start is not None else self.fn
                self.entries.append({"step": int(step), **fn(model, self.tok)})
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
