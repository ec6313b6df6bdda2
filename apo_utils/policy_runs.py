"""One policy run of a study: trained, measured, and its result cached (`train_and_evaluate`).

Training itself is `policy_training.py`, measuring a policy `evaluation.py`; a study's grid of such runs and its
record are `study.py`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import contextlib
from dataclasses import asdict, dataclass

from . import code_version
from .cache import fingerprint
from .evaluation import evaluate_policy
from .frozen_layers import attached
from .lora_run import RunSettings
from .policy_training import Tracking, train_policy
from .ranking import pair_logps
from .storage import atomic_write_json, made_before_recompute, note_reuse, read_json_or_none


@dataclass(frozen=True)
class Checkpoints:
    """Reward and KL measured along training, for a reward-KL frontier (the DPO paper's IMDB comparison): at the
    start, every `every` optimizer steps and at the end, from samples of the first `prompts` held-out prompts. The
    final point is the full evaluation (every held-out prompt; its first `prompts` are the same prompts), so the
    intermediate points cost a fraction of it while the last keeps the full precision."""

    every: int
    prompts: int = 64


def train_and_evaluate(method: str, loss_name: str, rows: list[dict], prompts: list[str], scorer, backbone: str,
                       out_dir, P, *, seed: int, loss_kwargs: dict | None = None, pair_sets: dict | None = None,
                       track_sets: dict | None = None, track_every: int | None = None,
                       n_eval_prompts: int | None = None, log_pairs: bool = False,
                       checkpoints: Checkpoints | None = None) -> dict:
    """Train one policy and measure it; the metrics are saved as JSON and reused on a re-run (resumable).

    P: a profiles.PolicySettings. Every method gets the same data, order (seed), budget and evaluation.
    pair_sets {name: rows}: the trained policy's log-probs of each set's pairs are saved in the result
    (`pairs[name]`, see `ranking.pair_logps`); track_sets: the same, measured during training every
    `track_every` steps (`track`). n_eval_prompts: generate for only the first n prompts (0: no generation).
    log_pairs: keep the per-pair training log (`pair_log`; rows need `pair_id`). checkpoints: reward and KL along
    training (`frontier`: [{step, kl, reward, prompt_rewards}], the start and the end included; with track_sets the
    two share `track_every`). beta is chosen here, once: a
    `beta` in loss_kwargs (SimPO-style losses use a much larger one), else P.beta; the trainer takes it as given.
    The result is cached under a key of what changes this run alone (`PolicySettings.run_key`): adding a seed
    or an ablation to the profile leaves the other runs' results valid.
    """
    pair_sets, track_sets = dict(pair_sets or {}), dict(track_sets or {})
    # this module and all it reaches (training, measuring), and the scorer's code, which it calls without importing
    code = code_version.fingerprint(__name__.split(".")[-1]) + code_version.fingerprint("ground_truth")
    prompts = list(prompts[:n_eval_prompts] if n_eval_prompts is not None else prompts)
    hparams = {"beta": P.beta, **(loss_kwargs or {})}
    extra = [_set_key(pair_sets), _set_key(track_sets), track_every, n_eval_prompts, log_pairs,
             *([asdict(checkpoints)] if checkpoints else [])]
    key = fingerprint(method, loss_name, hparams, backbone, P.run_key(), seed,
                      [(r["prompt"], r["chosen"], r["rejected"], r.get("margin")) for r in rows], prompts,
                      scorer.description if prompts else None,
                      *([extra] if any([pair_sets, track_sets, track_every, n_eval_prompts is not None, log_pairs,
                                        checkpoints]) else []),
                      {"code": code})
    path = Path(out_dir) / "runs" / f"{method}-s{seed}-{key}.json"
    done = None if made_before_recompute(path) else read_json_or_none(path)  # damaged: set aside, measured again
    if done is not None and not done.get("float32_measurements"):
        # saved before per-prompt rewards were kept, or with KL and log-probs measured through the autocast forward
        # of a bf16-trained model (training.float32_forward): measure again (a finished training is reused)
        done = None
    if done is not None:  # finished before: the record says so, so a cached re-run's time is not mistaken for a run's
        note_reuse("trained and evaluated runs", code=code)
        return {**done, "reused": True}

    def sample(model, tok, some_prompts, **cache):
        return evaluate_policy(model, tok, some_prompts, scorer, n_samples=P.eval_samples,
                               max_new_tokens=P.eval_max_new_tokens, batch_size=P.eval_batch_size, seed=1000 + seed,
                               kl_prompts=P.kl_prompts, cpu_bf16=P.cpu_bf16, **cache)

    def measure(model, tok):
        out = {name: _listed(pair_logps(model, tok, rs)) for name, rs in track_sets.items()}
        if checkpoints:  # sampling needs every layer: the kept lower states serve whole sequences only
            lower = attached(model)
            with lower.suspended() if lower else contextlib.nullcontext():
                ev = sample(model, tok, prompts[: checkpoints.prompts], key={}, cache_dir=None)
            out["sampled"] = {k: ev[k] for k in ("kl", "reward", "prompt_rewards", "kl_n", "n", *TEXT_KEYS)}
        return out

    def measure_start(model, tok):
        """Step 0 is the start itself (LoRA's B is zero): the same measurement for every method of a seed, so it
        is made once and kept (`start_points/`), not once a run."""
        path = Path(out_dir) / "start_points" / f"s{seed}-{fingerprint(backbone, what, P.cpu_bf16, P.eval_batch_size)}.json"
        done = read_json_or_none(path)
        if done is None:
            done = measure(model, tok)
            atomic_write_json(path, done)
        return done

    settings = RunSettings(epochs=P.epochs, batch_size=P.batch_size, lr=P.lr, lora_r=P.lora_r, max_length=P.max_length,
                           seed=seed, top_layers=P.top_layers, cpu_bf16=P.cpu_bf16)
    every = track_every if track_sets else checkpoints.every if checkpoints else None
    what = [_set_key(track_sets), *([asdict(checkpoints), prompts[: checkpoints.prompts], scorer.description,
                                     P.eval_samples, P.eval_max_new_tokens, P.kl_prompts, code] if checkpoints else [])]
    # with checkpoints only, the end is measured once, by the full evaluation below
    track = (Tracking(measure, every, what, at_end=bool(track_sets), start=None if track_sets else measure_start)
             if track_sets or checkpoints else None)
    model, tok, info = train_policy(loss_name, rows, backbone, Path(out_dir) / "adapters", settings, loss_kwargs=hparams,
                                    track=track, log_pairs=log_pairs, save_steps=25)
    ev = {"reward": float("nan"), "reward_se": float("nan"), "kl": float("nan"), "n": 0, "prompt_rewards": [],
          "examples": []}
    if prompts:
        ev = sample(model, tok, prompts, key={"policy": info["key"]}, cache_dir=Path(out_dir) / "eval_cache")
    final = {s_["step"]: s_ for s_ in info.get("track", [])}
    last_step = max(final, default=None)
    pairs = {name: (final[last_step][name] if name in track_sets and last_step is not None
                    else _listed(pair_logps(model, tok, rs))) for name, rs in pair_sets.items()}
    last = info["log"][-1] if info["log"] else {}
    result = {"method": method, "loss": loss_name, "seed": seed, **ev, "float32_measurements": True,
              "train_runtime_s": info.get("train_runtime_s"), "final_train_loss": last.get("loss"),
              "train_log": info["log"], "pairs": pairs, "track": info.get("track", []),
              "pair_log": info.get("pair_log", []), "beta": hparams["beta"],
              "frontier": _frontier(info.get("track", []), ev, info.get("steps")) if checkpoints else []}
    atomic_write_json(path, result)
    return {**result, "reused": False}


# What a checkpoint keeps beside reward and KL: how natural and varied its samples read, per prompt where a paired
# comparison needs it, and the samples of the first prompts (evaluation.evaluate_policy).
TEXT_KEYS = ("start_logp_per_token", "distinct_2", "prompt_start_logp_per_token", "prompt_samples")


def _frontier(track: list[dict], final: dict, steps: int | None = None) -> list[dict]:
    """{step, kl, reward, prompt_rewards, and TEXT_KEYS} at each checkpoint; the last step's (`steps`, else the last
    checkpoint's) from the full evaluation. Points measured before a key existed simply lack it."""
    keys = ("kl", "reward", "prompt_rewards", *TEXT_KEYS)
    points = [{"step": e["step"], **{k: e["sampled"][k] for k in keys if k in e["sampled"]}}
              for e in track if "sampled" in e]
    if final.get("n") and (points or steps is not None):
        last = steps if steps is not None else points[-1]["step"]
        if points and points[-1]["step"] == last:
            points.pop()
        points.append({"step": last, **{k: final[k] for k in keys if k in final}})
    return points


def _set_key(sets: dict) -> list:
    return [(name, [(r["prompt"], r["chosen"], r["rejected"]) for r in rs]) for name, rs in sorted(sets.items())]


def _listed(logps: dict) -> dict:
    return {k: [float(x) for x in v] for k, v in logps.items()}


def as_arrays(logps: dict) -> dict:
    """A result's saved log-probs (lists) back as arrays."""
    return {k: np.asarray(v, dtype=float) for k, v in logps.items()}


