"""What every study notebook does: train a policy with one loss, then measure it.

`train_policy` trains LoRA adapters with `ApoTrainer` (the reference is the same backbone with the
adapters switched off, and its log-probs are computed once before training), saves them as
safetensors and reuses them on a re-run. `evaluate_policy` samples continuations of held-out prompts,
scores them with the ground truth, and estimates KL(pi || ref) from the same samples.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset
from transformers import PrinterCallback, TrainerCallback
from trl import DPOConfig

from .cache import cached_map, fingerprint
from .frozen_layers import FrozenLowerLayers, shared_cache, training_sequences
from .generation import generate
from .models import load_causal_lm
from .objective import Objective
from .ranking import completion_stats, pair_logps
from .storage import (atomic_write_bytes, atomic_write_json, note_reuse, read_json, read_json_or_none,
                      safetensors_problem)
from .trainer import ApoTrainer

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]


def train_policy(method: str, train_rows: list[dict], backbone: str, out_dir, *, loss_kwargs: dict | None = None,
                 epochs: float = 1.0, batch_size: int = 8, lr: float = 5e-4, lora_r: int = 16, max_length: int = 128,
                 seed: int = 0, progress: bool = False, log=print, save_steps: int = 10, callbacks=None,
                 track=None, track_every: int | None = None, log_pairs: bool = False, top_layers: int | None = None):
    """(model with trained adapters, tokenizer, info). Same seed -> same data order for every method.

    Checkpoints (adapters, optimizer, scheduler, RNG) are written every `save_steps` steps; a run killed
    mid-training resumes from the last complete one and ends with the same adapters as an unbroken run.
    `track(model, tok) -> dict` (JSON values) is called before the first step, every `track_every` steps
    and after the last; its results land in info['track'] as [{'step': s, **result}, ...].
    log_pairs: rows need a `pair_id`; info['pair_log'] then holds what the loss did to each pair at each
    step (see `ApoTrainer.pair_log`).
    top_layers: LoRA on the top `top_layers` decoder layers only, with the frozen layers below run once per
    text and kept (`frozen_layers.py`; shared by every run on the same backbone in this process). None: LoRA
    on every layer, as the papers do.
    """
    from peft import LoraConfig, PeftModel

    loss_kwargs = dict(loss_kwargs or {})
    key = fingerprint(method, loss_kwargs, backbone, epochs, batch_size, lr, lora_r, max_length, seed,
                      [(r["prompt"], r["chosen"], r["rejected"], r.get("margin")) for r in train_rows],
                      *([{"top_layers": top_layers}] if top_layers is not None else []))
    folder = Path(out_dir) / f"{method}-{key}"
    base, tok, prov = load_causal_lm(backbone, seed=seed, log=lambda *_: None)
    if (folder / "DONE").exists() and _finished_run_damaged(folder):
        (folder / "DONE").unlink()  # train it again below; a checkpoint left from before is not trusted either
        shutil.rmtree(folder / "trainer", ignore_errors=True)
    if (folder / "DONE").exists():
        model = PeftModel.from_pretrained(base, folder / "adapter")
        if torch.cuda.is_available():
            model.to("cuda")
        info = read_json(folder / "info.json")
        info["reused"] = True
        note_reuse("policies")
        return model.eval(), tok, info
    cols = ["prompt", "chosen", "rejected"] + [c for c in ("margin", "pair_id") if c in train_rows[0]]
    if log_pairs and "pair_id" not in cols:
        raise ValueError("log_pairs=True needs a 'pair_id' column in the training rows")
    ds = Dataset.from_list([{c: r[c] for c in cols} for r in train_rows])
    beta = loss_kwargs.pop("beta", 0.1)
    cuda = torch.cuda.is_available()
    args = DPOConfig(
        output_dir=str(folder / "trainer"), num_train_epochs=epochs, per_device_train_batch_size=batch_size,
        learning_rate=lr, lr_scheduler_type="cosine", warmup_steps=0.03, logging_steps=1, save_strategy="steps",
        save_steps=save_steps, save_total_limit=2,
        report_to="none", bf16=cuda, use_cpu=not cuda, seed=seed, data_seed=seed, beta=beta,
        max_length=max_length, disable_tqdm=not progress, dataloader_num_workers=0,
        # Two cost levers that leave training unchanged (same losses, measured):
        # - TRL turns activation checkpointing on by default; a 270M model with LoRA fits in memory without it,
        #   and recomputing the forward pass cost 22 % of a cpu training step (46.4 s -> 36.0 s on 72 pairs).
        # - The reference log-probs are computed once before training, and only for losses that read them:
        #   SimPO, gamma-SimPO and AMaPO are reference-free, so their pass over the data would be wasted.
        gradient_checkpointing=False,
        precompute_ref_log_probs=Objective(method, beta=beta, **loss_kwargs).needs_reference,
    )
    torch.manual_seed(seed)
    n_layers = base.config.num_hidden_layers
    if top_layers is not None and not (isinstance(top_layers, int) and 0 < top_layers < n_layers):
        raise ValueError(f"top_layers must be a whole number in 1..{n_layers - 1} for this backbone, got {top_layers!r}")
    only_top = {} if top_layers is None else {"layers_to_transform": list(range(n_layers - top_layers, n_layers)),
                                              "layers_pattern": "layers"}
    peft_config = LoraConfig(task_type="CAUSAL_LM", r=lora_r, lora_alpha=2 * lora_r, lora_dropout=0.0,
                             target_modules=LORA_TARGETS, **only_top)
    with contextlib.nullcontext() if progress else quiet_progress():
        trainer = ApoTrainer(model=base, args=args, train_dataset=ds, processing_class=tok, peft_config=peft_config,
                             loss_name=method, loss_kwargs={**loss_kwargs, "beta": beta}, callbacks=callbacks)
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
            # measurements pad on the left: they run through the ordinary model, not the kept states
            tracker = _Tracker(track, tok, track_every, folder / "track.json", tracked,
                               paused=lower.paused if lower else contextlib.nullcontext)
            trainer.add_callback(tracker)
        if log_pairs:
            done = int(resume.name.split("-")[1]) if resume else 0
            trainer.pair_log = [e for e in kept if e["step"] <= done]
            trainer.add_callback(_PairLogSaver(trainer, folder / "pair_log.json"))
        if resume:
            log(f"resuming {method} from {resume.name}")
        with lower.installed() if lower else contextlib.nullcontext():
            trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    model = trainer.model
    model.save_pretrained(folder / "adapter")
    info = {"method": method, "loss_kwargs": {**loss_kwargs, "beta": beta}, "key": key, "backbone": prov,
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


class _Tracker(TrainerCallback):
    """Measures the model during training (eval mode, no grad) and saves as it goes.

    Entries are written atomically after each measurement, so a resumed run keeps the ones it had.
    """

    def __init__(self, fn, tok, every: int | None, path: Path, entries: list, paused=contextlib.nullcontext):
        self.fn, self.tok, self.every, self.path, self.paused = fn, tok, every, path, paused
        self.entries = list(entries)

    def record(self, model, step: int):
        if any(e["step"] == step for e in self.entries):
            return
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad(), self.paused():
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


def completion_logprobs(model, tok, prompts: list[str], completions: list[str], batch_size: int = 16) -> np.ndarray:
    """Summed log pi(completion | prompt) for each pair, over the completion tokens only."""
    return completion_stats(model, tok, prompts, completions, batch_size)[0]


def evaluate_policy(model, tok, prompts: list[str], scorer, *, key: dict, cache_dir, n_samples: int = 1,
                    max_new_tokens: int = 32, batch_size: int = 32, seed: int = 0) -> dict:
    """Mean ground-truth reward of the policy's samples (with its standard error) and a KL(pi || ref) estimate.

    KL is estimated from the same samples: mean over y ~ pi of log pi(y|x) - log ref(y|x), where ref is the
    backbone with the LoRA adapters switched off.
    """
    samples = generate(model, tok, prompts, n_samples=n_samples, max_new_tokens=max_new_tokens,
                       batch_size=batch_size, seed=seed, cache_dir=cache_dir, key=key, progress=False)
    ps = [p for p, ys in zip(prompts, samples) for _ in ys]
    ys = [y for s in samples for y in s]
    rewards = np.array(cached_map(lambda b: scorer(b, progress=False), [p + y for p, y in zip(ps, ys)], 256,
                                  cache_dir, key={"scorer": scorer.description}, desc="scoring", progress=False))
    kl = float("nan")
    if hasattr(model, "disable_adapter"):
        lp = completion_logprobs(model, tok, ps, ys)
        with model.disable_adapter():
            lr_ = completion_logprobs(model, tok, ps, ys)
        kl = float(np.mean(lp - lr_))
    return {"reward": float(rewards.mean()), "reward_se": float(rewards.std(ddof=1) / math.sqrt(len(rewards))),
            "kl": kl, "n": int(len(rewards)), "examples": [p + y for p, y in list(zip(ps, ys))[:3]]}


# --------------------------------------------------------------------------- what the study notebooks share


def load_study_pairs(output_dir, profile: str, qualities=("high", "low")) -> dict[str, dict[str, list[dict]]]:
    """{quality: {'train': rows, 'test': rows}} from notebook 01's files for this profile (clear error if absent)."""
    from .data import load_pairs, pairs_path

    return {q: {split: load_pairs(pairs_path(output_dir, profile, q, split), require_margin=True)
                for split in ("train", "test")} for q in qualities}


def held_out_prompts(pairs: dict, n: int, seed: int = 0) -> list[str]:
    """`n` prompts no policy trained on: notebook 01's test prompts, topped up with unused offline openings."""
    from .prompts import offline_prompts

    train = {r["prompt"] for q in pairs.values() for r in q["train"]}
    out = sorted({r["prompt"] for q in pairs.values() for r in q["test"]} - train)
    extra = [p for p in offline_prompts(1000, seed) if p not in train and p not in out]
    return (out + extra)[:n]


def study_backbone(policy: str, trim_vocab: int | None, texts: list[str], log=print) -> str:
    """The backbone every method starts from: `policy`, or its vocabulary-trimmed copy (cpu profile).

    Trimming is skipped for the tiny smoke model (its vocabulary is already small).
    """
    if trim_vocab is None or policy == "tiny":
        return policy
    from .models import cache_dir
    from .vocab import trim_vocabulary

    model, tok, _ = load_causal_lm(policy, log=lambda *_: None)
    return str(trim_vocabulary(model, tok, texts, cache_dir() / "trimmed", keep_first=trim_vocab, log=log))


def train_and_evaluate(method: str, loss_name: str, rows: list[dict], prompts: list[str], scorer, backbone: str,
                       out_dir, P, *, seed: int, loss_kwargs: dict | None = None, pair_sets: dict | None = None,
                       track_sets: dict | None = None, track_every: int | None = None,
                       n_eval_prompts: int | None = None, log_pairs: bool = False) -> dict:
    """Train one policy and measure it; the metrics are saved as JSON and reused on a re-run (resumable).

    P: a profiles.PolicySettings. Every method gets the same data, order (seed), budget and evaluation.
    pair_sets {name: rows}: the trained policy's log-probs of each set's pairs are saved in the result
    (`pairs[name]`, see `ranking.pair_logps`); track_sets: the same, measured during training every
    `track_every` steps (`track`). n_eval_prompts: generate for only the first n prompts (0: no generation).
    log_pairs: keep the per-pair training log (`pair_log`; rows need `pair_id`). A `beta` in loss_kwargs
    overrides P.beta (SimPO-style losses use a much larger beta).
    """
    pair_sets, track_sets = dict(pair_sets or {}), dict(track_sets or {})
    prompts = list(prompts[:n_eval_prompts] if n_eval_prompts is not None else prompts)
    extra = [_set_key(pair_sets), _set_key(track_sets), track_every, n_eval_prompts, log_pairs]
    key = fingerprint(method, loss_name, loss_kwargs, backbone, P, seed,
                      [(r["prompt"], r["chosen"], r["rejected"], r.get("margin")) for r in rows], prompts,
                      scorer.description if prompts else None,
                      *([extra] if any([pair_sets, track_sets, track_every, n_eval_prompts is not None, log_pairs]) else []))
    path = Path(out_dir) / "runs" / f"{method}-s{seed}-{key}.json"
    done = read_json_or_none(path)  # a damaged result is set aside (with a warning) and measured again
    if done is not None:  # finished before: the record says so, so a cached re-run's time is not mistaken for a run's
        note_reuse("trained and evaluated runs")
        return {**done, "reused": True}

    def measure(model, tok):
        return {name: _listed(pair_logps(model, tok, rs)) for name, rs in track_sets.items()}

    model, tok, info = train_policy(loss_name, rows, backbone, Path(out_dir) / "adapters",
                                    loss_kwargs={"beta": P.beta, **(loss_kwargs or {})}, epochs=P.epochs,
                                    batch_size=P.batch_size, lr=P.lr, lora_r=P.lora_r, max_length=P.max_length,
                                    seed=seed, track=measure if track_sets else None, track_every=track_every,
                                    log_pairs=log_pairs)
    ev = {"reward": float("nan"), "reward_se": float("nan"), "kl": float("nan"), "n": 0, "examples": []}
    if prompts:
        ev = evaluate_policy(model, tok, prompts, scorer, key={"policy": info["key"]},
                             cache_dir=Path(out_dir) / "eval_cache", n_samples=P.eval_samples,
                             max_new_tokens=P.eval_max_new_tokens, batch_size=P.eval_batch_size, seed=1000 + seed)
    final = {s_["step"]: s_ for s_ in info.get("track", [])}
    last_step = max(final, default=None)
    pairs = {name: (final[last_step][name] if name in track_sets and last_step is not None
                    else _listed(pair_logps(model, tok, rs))) for name, rs in pair_sets.items()}
    last = info["log"][-1] if info["log"] else {}
    result = {"method": method, "loss": loss_name, "seed": seed, **ev,
              "train_runtime_s": info.get("train_runtime_s"), "final_train_loss": last.get("loss"),
              "train_log": info["log"], "pairs": pairs, "track": info.get("track", []),
              "pair_log": info.get("pair_log", [])}
    atomic_write_json(path, result)
    return {**result, "reused": False}


def _set_key(sets: dict) -> list:
    return [(name, [(r["prompt"], r["chosen"], r["rejected"]) for r in rs]) for name, rs in sorted(sets.items())]


def _listed(logps: dict) -> dict:
    return {k: [float(x) for x in v] for k, v in logps.items()}


def reference_pair_logps(backbone: str, sets: dict, out_dir) -> dict:
    """The starting policy's log-probs of each set's pairs (adapters off = the reference), cached on disk."""
    model, tok, _ = load_causal_lm(backbone, seed=0, log=lambda *_: None)
    if torch.cuda.is_available():
        model.to("cuda")
    return {name: pair_logps(model.eval(), tok, rs, cache_dir=Path(out_dir) / "ref_cache",
                             key={"policy": "reference", "backbone": backbone}) for name, rs in sets.items()}


def as_arrays(logps: dict) -> dict:
    """A result's saved log-probs (lists) back as arrays."""
    return {k: np.asarray(v, dtype=float) for k, v in logps.items()}


def reference_metrics(backbone: str, prompts: list[str], scorer, out_dir, P, seed: int = 0) -> dict:
    """The starting policy's reward on the held-out prompts (KL 0 by definition), sampled like the others."""
    model, tok, _ = load_causal_lm(backbone, seed=seed, log=lambda *_: None)
    if torch.cuda.is_available():
        model.to("cuda")
    ev = evaluate_policy(model.eval(), tok, prompts, scorer, key={"policy": "reference", "backbone": backbone},
                         cache_dir=Path(out_dir) / "eval_cache", n_samples=P.eval_samples,
                         max_new_tokens=P.eval_max_new_tokens, batch_size=P.eval_batch_size, seed=1000 + seed)
    ev["kl"] = 0.0
    return ev


def mean_spread(values) -> dict:
    """Mean, sample standard deviation and standard error over seeds (n = 1: spread 0, said by n)."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=float)
    if v.size == 0:
        return {"mean": float("nan"), "sd": float("nan"), "se": float("nan"), "n": 0}
    sd = float(v.std(ddof=1)) if v.size > 1 else 0.0
    return {"mean": float(v.mean()), "sd": sd, "se": sd / math.sqrt(v.size), "n": int(v.size)}
