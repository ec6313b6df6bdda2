"""What the study notebooks (02-05) share: notebook 01's pairs, held-out prompts, the starting backbone, and one
policy trained and measured with its result cached (`train_and_evaluate`).

Training itself is `training.py`, measuring a policy `evaluation.py`, statistics `stats.py`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .cache import fingerprint
from .data import load_pairs, pairs_path
from .env import cache_dir
from .evaluation import evaluate_policy
from .models import load_causal_lm
from .prompts import offline_prompts
from .ranking import pair_logps
from .storage import atomic_write_json, note_reuse, read_json_or_none
from .training import train_policy
from .vocab import trim_vocabulary


def load_study_pairs(output_dir, profile: str, qualities=("high", "low")) -> dict[str, dict[str, list[dict]]]:
    """{quality: {'train': rows, 'test': rows}} from notebook 01's files for this profile (clear error if absent)."""
    return {q: {split: load_pairs(pairs_path(output_dir, profile, q, split), require_margin=True)
                for split in ("train", "test")} for q in qualities}


def held_out_prompts(pairs: dict, n: int, seed: int = 0) -> list[str]:
    """`n` prompts no policy trained on: notebook 01's test prompts, topped up with unused offline openings."""
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
    log_pairs: keep the per-pair training log (`pair_log`; rows need `pair_id`). beta is chosen here, once: a
    `beta` in loss_kwargs (SimPO-style losses use a much larger one), else P.beta; the trainer takes it as given.
    The result is cached under a key of what changes this run alone (`PolicySettings.run_key`): adding a seed
    or an ablation to the profile leaves the other runs' results valid.
    """
    pair_sets, track_sets = dict(pair_sets or {}), dict(track_sets or {})
    prompts = list(prompts[:n_eval_prompts] if n_eval_prompts is not None else prompts)
    hparams = {"beta": P.beta, **(loss_kwargs or {})}
    extra = [_set_key(pair_sets), _set_key(track_sets), track_every, n_eval_prompts, log_pairs]
    key = fingerprint(method, loss_name, hparams, backbone, P.run_key(), seed,
                      [(r["prompt"], r["chosen"], r["rejected"], r.get("margin")) for r in rows], prompts,
                      scorer.description if prompts else None,
                      *([extra] if any([pair_sets, track_sets, track_every, n_eval_prompts is not None, log_pairs]) else []))
    path = Path(out_dir) / "runs" / f"{method}-s{seed}-{key}.json"
    done = read_json_or_none(path)  # a damaged result is set aside (with a warning) and measured again
    if done is not None and not done.get("float32_measurements"):
        # saved before per-prompt rewards were kept, or with KL and log-probs measured through the autocast forward
        # of a bf16-trained model (training.float32_forward): measure again (a finished training is reused)
        done = None
    if done is not None:  # finished before: the record says so, so a cached re-run's time is not mistaken for a run's
        note_reuse("trained and evaluated runs")
        return {**done, "reused": True}

    def measure(model, tok):
        return {name: _listed(pair_logps(model, tok, rs)) for name, rs in track_sets.items()}

    model, tok, info = train_policy(loss_name, rows, backbone, Path(out_dir) / "adapters",
                                    loss_kwargs=hparams, epochs=P.epochs, batch_size=P.batch_size, lr=P.lr,
                                    lora_r=P.lora_r, max_length=P.max_length, top_layers=P.top_layers, seed=seed,
                                    track=measure if track_sets else None, track_every=track_every,
                                    log_pairs=log_pairs, save_steps=25, cpu_bf16=P.cpu_bf16,
                                    track_key=_set_key(track_sets) if track_sets else None)
    ev = {"reward": float("nan"), "reward_se": float("nan"), "kl": float("nan"), "n": 0, "prompt_rewards": [],
          "examples": []}
    if prompts:
        ev = evaluate_policy(model, tok, prompts, scorer, key={"policy": info["key"]},
                             cache_dir=Path(out_dir) / "eval_cache", n_samples=P.eval_samples,
                             max_new_tokens=P.eval_max_new_tokens, batch_size=P.eval_batch_size, seed=1000 + seed,
                             kl_prompts=P.kl_prompts, cpu_bf16=P.cpu_bf16)
    final = {s_["step"]: s_ for s_ in info.get("track", [])}
    last_step = max(final, default=None)
    pairs = {name: (final[last_step][name] if name in track_sets and last_step is not None
                    else _listed(pair_logps(model, tok, rs))) for name, rs in pair_sets.items()}
    last = info["log"][-1] if info["log"] else {}
    result = {"method": method, "loss": loss_name, "seed": seed, **ev, "float32_measurements": True,
              "train_runtime_s": info.get("train_runtime_s"), "final_train_loss": last.get("loss"),
              "train_log": info["log"], "pairs": pairs, "track": info.get("track", []),
              "pair_log": info.get("pair_log", [])}
    atomic_write_json(path, result)
    return {**result, "reused": False}


def _set_key(sets: dict) -> list:
    return [(name, [(r["prompt"], r["chosen"], r["rejected"]) for r in rs]) for name, rs in sorted(sets.items())]


def _listed(logps: dict) -> dict:
    return {k: [float(x) for x in v] for k, v in logps.items()}


def as_arrays(logps: dict) -> dict:
    """A result's saved log-probs (lists) back as arrays."""
    return {k: np.asarray(v, dtype=float) for k, v in logps.items()}


