"""Step-time benchmark: every apo loss against TRL's own sigmoid DPO, same model, same batch.

`python -m apo_utils.bench --model tiny` (or `gemma-offline`, optionally `--trim-vocab`) builds one trainer
per loss on identical weights and data, takes the first batch, and times forward+backward of `training_step`
on it, the configurations interleaved round by round (in an order that rotates) so machine noise hits all
of them alike; a loss's ratio is the median over rounds of its time over TRL's in the same round. Reference
log-probs are precomputed for every configuration, so what differs is the loss alone, and gamma-PO runs
with its gap queue full, as after a few hundred steps. Also measured: training tokens per second,
generation tokens per second, peak memory. Results go to `benchmarks/results/<device>_<model>.json` with the
device, commit and package versions.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import resource
import statistics
import time

import numpy as np
import torch
from datasets import Dataset
from trl import DPOConfig, DPOTrainer

from . import losses as L
from .env import mixed_precision
from .models import load_causal_lm
from .prompts import offline_prompts
from .tiny import REVIEW_WORDS
from .frozen_layers import FrozenLowerLayers, training_sequences
from .lora_run import RunSettings, lora_config
from .records import device_description, git_commit, package_versions
from .storage import atomic_write_json, repo_root
from .trainer import ApoTrainer

# Per-loss settings so every loss runs in its own regime (betas as the bandit uses them).
BENCH_KWARGS = {"simpo": {"beta": 2.0}, "gamma_simpo": {"beta": 2.0}, "amapo": {"beta": 2.0}}


def device_slug(device: str) -> str:
    """A result file's name from a device description: 'cpu: x86_64, 2 cores' -> 'cpu-x86-64-2-cores'."""
    return re.sub(r"[^a-z0-9]+", "-", device.lower()).strip("-")


def synthetic_pairs(n: int, words: int, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    vocab = [w for w in REVIEW_WORDS if w.isalpha()]
    rows = []
    for i, p in enumerate(offline_prompts(n, seed)):
        c, r = (" " + " ".join(rng.choice(vocab, words)) for _ in range(2))
        rows.append({"prompt": p, "chosen": c, "rejected": r, "margin": float(rng.normal())})
    return Dataset.from_list(rows)


def _trainer(name, model_name, ds, batch_size, seed, lora_r, precompute=True, top_layers=None, checkpointing=False):
    model, tok, _ = load_causal_lm(model_name, seed=seed, log=lambda *_: None)
    n_layers = model.config.num_hidden_layers
    settings = RunSettings(batch_size=batch_size, lora_r=lora_r, max_length=256, seed=seed, top_layers=top_layers)
    cuda = torch.cuda.is_available()
    args = DPOConfig(output_dir="/tmp/apo-bench", per_device_train_batch_size=batch_size, report_to="none",
                     activation_checkpointing=checkpointing,  # off as the studies train; one levers row turns it on
                     **mixed_precision(model), use_cpu=not cuda, seed=seed, data_seed=seed, precompute_ref_log_probs=precompute,
                     disable_tqdm=True, save_strategy="no", max_length=256, dataloader_num_workers=0, beta=0.1)
    peft = lora_config("CAUSAL_LM", settings, n_layers)  # the studies' LoRA (lora_run.py); None: full fine-tuning
    ref = None if lora_r else load_causal_lm(model_name, seed=seed, log=lambda *_: None)[0]
    with contextlib.redirect_stderr(io.StringIO()):
        if name == "trl_sigmoid":
            tr = DPOTrainer(model=model, ref_model=ref, args=args, train_dataset=ds, processing_class=tok,
                            peft_config=peft)
        else:
            tr = ApoTrainer(model=model, ref_model=ref, args=args, train_dataset=ds, processing_class=tok,
                            peft_config=peft, loss_name=name, loss_kwargs=BENCH_KWARGS.get(name, {}))
    tr.create_optimizer_and_scheduler(num_training_steps=10)
    tr.current_gradient_accumulation_steps = 1  # set by train(); training_step divides by it
    if top_layers is not None:
        # The frozen lower layers run once per text, before training (timed apart: their cost is shared by
        # every method, seed and epoch), and the reference pass below already starts from the kept states.
        tr.frozen_lower = FrozenLowerLayers(tr.model, n_layers - top_layers)  # not shared: each config times its own
        t = time.perf_counter()
        tr.frozen_lower.precompute(training_sequences(tr.train_dataset, args.max_length))
        tr.frozen_lower_precompute_s = time.perf_counter() - t
        with tr.frozen_lower.installed():
            batch = next(iter(tr.get_train_dataloader()))
    else:
        batch = next(iter(tr.get_train_dataloader()))
    if name == "trl_sigmoid":
        batch.pop("margin", None)
    return tr, tok, batch


def _steady_state(tr, seed: int):
    """Give a stateful loss the running state it has after many steps, so its per-step cost is the real one:
    gamma-PO's queue full (its margin optimisation then runs over `opt_size` gaps, not the first batches' few)."""
    obj = getattr(tr, "objective", None)
    if obj is not None and obj.caps.state == "gap_queue":
        obj.queue = 0.5 * torch.randn(obj.queue_size, generator=torch.Generator().manual_seed(seed))


def run(model_name: str = "tiny", batch_size: int = 8, words: int = 24, rounds: int = 7, seed: int = 0,
        lora_r: int = 0, gen_tokens: int = 32, trim_vocab: bool = False, keep_first: int = 8192, log=print) -> dict:
    """Time `rounds` training steps of every configuration. Each round runs every configuration once, in an order
    that rotates from round to round (so none always runs first or right after another), and a configuration's
    ratio to TRL is the median over rounds of its time divided by TRL's time in the same round: machine noise
    that lasts longer than a round cancels out."""
    git = git_commit()  # the code this run imports, read before anything can change under it
    names = ["trl_sigmoid"] + sorted(L.LOSSES)
    ds = synthetic_pairs(max(16, 4 * batch_size), words, seed)
    model_path = _trimmed(model_name, ds, seed, keep_first, log)[0] if trim_vocab else model_name
    trainers = {n: _trainer(n, model_path, ds, batch_size, seed, lora_r) for n in names}
    for tr, _, _ in trainers.values():
        _steady_state(tr, seed)
    times = {n: [] for n in names}
    for r in range(rounds + 1):  # round 0 warms up and is not counted
        k = r % len(names)
        for n in names[k:] + names[:k]:
            tr, _, batch = trainers[n]
            tr.model.train()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            t = time.perf_counter()
            tr.training_step(tr.model, dict(batch))
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            if r:
                times[n].append(time.perf_counter() - t)
            tr.model.zero_grad(set_to_none=True)
        log(f"round {r}/{rounds} done")
    base = times["trl_sigmoid"]
    tokens = int(trainers["trl_sigmoid"][2]["attention_mask"].sum())
    results = {n: {"median_s": statistics.median(v), "min_s": min(v),
                   "ratio_to_trl_sigmoid": statistics.median(t / b for t, b in zip(v, base)),
                   "ratio_of_minima": min(v) / min(base),
                   "extra_ms_vs_trl_sigmoid": 1000 * statistics.median(t - b for t, b in zip(v, base)),
                   "train_tokens_per_s": tokens / statistics.median(v)} for n, v in times.items()}
    tr, tok, _ = trainers["dpo"]
    gen_tps = _gen_tps(tr.model, tok, batch_size, gen_tokens, seed)
    peak = (torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available()
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return {
        "model": model_name, "vocabulary_trimmed": trim_vocab, "device": device_description(), "git": git,
        "packages": package_versions(), "batch_pairs": batch_size, "tokens_per_batch": tokens, "rounds": rounds,
        "lora_r": lora_r,
        "step": "training_step (forward + backward), reference log-probs precomputed, gamma-PO's gap queue full",
        "ratio": "median over rounds of (this loss's step time / TRL sigmoid's step time in the same round)",
        "losses": results, "generation_tokens_per_s": gen_tps,
        "peak_memory_MiB": peak, "peak_memory_kind": "cuda max allocated" if torch.cuda.is_available()
        else "process max RSS (all configurations together)",
        "worst_ratio": max(r["ratio_to_trl_sigmoid"] for n, r in results.items() if n != "trl_sigmoid"),
    }


def _step_times(tr, batch, rounds) -> list[float]:
    out = []
    for r in range(rounds + 1):  # round 0 warms up
        tr.model.train()
        t = time.perf_counter()
        tr.training_step(tr.model, dict(batch))
        if r:
            out.append(time.perf_counter() - t)
        tr.model.zero_grad(set_to_none=True)
    return out


def _gen_tps(model, tok, batch_size, gen_tokens, seed) -> float:
    enc = tok(offline_prompts(batch_size, seed), return_tensors="pt", padding=True).to(model.device)
    model.eval()
    t = time.perf_counter()
    with torch.no_grad():
        model.generate(**enc, max_new_tokens=gen_tokens, min_new_tokens=gen_tokens, do_sample=True,
                       pad_token_id=tok.pad_token_id)
    return batch_size * gen_tokens / (time.perf_counter() - t)


def _trimmed(model_name: str, ds, seed: int, keep_first: int, log):
    """The model with its vocabulary trimmed to the bench's texts plus the `keep_first` commonest pieces, as the
    `cpu` profile trains it (apo_utils.vocab); returns its folder, the full model and tokenizer, and the kept tokens."""
    from .env import cache_dir
    from .vocab import trim_vocabulary

    base, tok, _ = load_causal_lm(model_name, seed=seed, log=lambda *_: None)
    texts = [r["prompt"] + r[k] for r in ds for k in ("chosen", "rejected")] + offline_prompts(200, seed)
    trimmed = str(trim_vocabulary(base, tok, texts, cache_dir() / "trimmed", keep_first=keep_first, log=log))
    small_tok = load_causal_lm(trimmed, log=lambda *_: None)[1]
    return trimmed, base, tok, small_tok.convert_ids_to_tokens(list(range(len(small_tok))))


def levers(model_name: str = "gemma-offline", batch_size: int = 8, words: int = 24, rounds: int = 3, seed: int = 0,
           keep_first: int = 8192, log=print) -> dict:
    """Each cost lever of the `cpu` profile alone, on the same batch: step time, generation speed, effect.

    Configurations (the DPO loss throughout): full fine-tuning with the reference computed on the fly;
    LoRA r16 with the reference on the fly; LoRA + reference log-probs precomputed once; that plus the
    vocabulary trimmed to the batch's tokens and the `keep_first` commonest pieces; and that with TRL's
    default activation checkpointing switched on (the others run without it).
    """
    from .vocab import kept_mass

    git = git_commit()
    ds = synthetic_pairs(max(16, 4 * batch_size), words, seed)
    trimmed, base, tok, kept = _trimmed(model_name, ds, seed, keep_first, log)
    torch.manual_seed(seed)
    mass = kept_mass(base, tok, kept, offline_prompts(16, seed + 1), max_new_tokens=16)
    configs = {
        "full fine-tuning, reference on the fly": dict(model=model_name, lora_r=0, precompute=False),
        "LoRA r16, reference on the fly": dict(model=model_name, lora_r=16, precompute=False),
        "LoRA r16, reference precomputed": dict(model=model_name, lora_r=16, precompute=True),
        "LoRA r16, reference precomputed, vocabulary trimmed": dict(model=trimmed, lora_r=16, precompute=True),
        # The cpu engine: LoRA on the top layers only (a different parametrisation from the papers' all-layer
        # LoRA), the frozen layers below run once per text and kept; generation in batches of 64 (128 for top 2).
        "LoRA r16 on the top 6 of 18 layers, lower layers kept, reference precomputed, vocabulary trimmed":
            dict(model=trimmed, lora_r=16, precompute=True, top_layers=6, gen_batch=64),
        "LoRA r16 on the top 3 of 18 layers, lower layers kept, reference precomputed, vocabulary trimmed":
            dict(model=trimmed, lora_r=16, precompute=True, top_layers=3, gen_batch=64),
        "LoRA r16 on the top 2 of 18 layers, lower layers kept, reference precomputed, vocabulary trimmed":
            dict(model=trimmed, lora_r=16, precompute=True, top_layers=2, gen_batch=128),
        # TRL's DPOConfig asks for activation checkpointing and Trainer.train() switches it on; a bare
        # training_step (as timed here) does not, so the rows above are without it. This row puts it back, to
        # show what it cost the studies until train_policy turned it off.
        "LoRA r16, reference precomputed, vocabulary trimmed, activation checkpointing on (TRL's default)":
            dict(model=trimmed, lora_r=16, precompute=True, checkpointing=True),
    }
    out = {}
    for label, c in configs.items():
        tr, t, batch = _trainer("dpo", c["model"], ds, batch_size, seed, c["lora_r"], precompute=c["precompute"],
                                top_layers=c.get("top_layers"), checkpointing=c.get("checkpointing", False))
        if c.get("checkpointing"):
            tr.model.activation_checkpointing_enable(activation_checkpointing_kwargs=tr.args.activation_checkpointing_kwargs)
        lower = getattr(tr, "frozen_lower", None)
        with lower.installed() if lower else contextlib.nullcontext():
            times = _step_times(tr, batch, rounds)
        gen_batch = c.get("gen_batch", batch_size)
        out[label] = {"median_step_s": statistics.median(times), "steps_s": times,
                      "generation_tokens_per_s": _gen_tps(tr.model, t, gen_batch, 32, seed),
                      "generation_batch": gen_batch,
                      "trainable_parameters_M": round(sum(p.numel() for p in tr.model.parameters()
                                                          if p.requires_grad) / 1e6, 2)}
        if lower:
            out[label]["lower_layers_once_s_per_text"] = tr.frozen_lower_precompute_s / max(1, lower.computed)
        log(f"{label:55s} {out[label]['median_step_s']:.2f} s/step  "
            f"{out[label]['generation_tokens_per_s']:.0f} generated tokens/s (batch {gen_batch})")
        del tr
    first = out[next(iter(out))]["median_step_s"]
    for v in out.values():
        v["speedup_vs_first"] = first / v["median_step_s"]
    return {"model": model_name, "device": device_description(), "git": git, "packages": package_versions(),
            "batch_pairs": batch_size, "rounds": rounds, "configs": out,
            "vocabulary": {"kept_tokens": len(kept), "keep_first": keep_first,
                           "full_model_probability_on_kept_tokens": mass,
                           "note": "trimming leaves the batch's log-probabilities unchanged up to renormalisation "
                                   "over the kept tokens (tests/test_vocab.py); sampling can only produce kept tokens"}}


def combine(reps: list[dict]) -> dict:
    """Several independent runs (trainers built afresh each time) as one result: per loss, the median over runs
    of each run's ratio, with every run's ratio kept. Between runs in one process the ratios move by about as
    much as the target's 3 %, more than the rounds within a run would suggest."""
    out = dict(reps[-1], repeats=len(reps), git=reps[0]["git"])
    out["losses"] = {}
    for n in reps[0]["losses"]:
        rs = [r["losses"][n] for r in reps]
        out["losses"][n] = {k: statistics.median(x[k] for x in rs) for k in rs[0]}
        out["losses"][n]["ratio_per_repeat"] = [x["ratio_to_trl_sigmoid"] for x in rs]
    out["worst_ratio"] = max(r["ratio_to_trl_sigmoid"] for n, r in out["losses"].items() if n != "trl_sigmoid")
    out["ratio"] = "median over repeats of: " + reps[0]["ratio"]
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="tiny")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--rounds", type=int, default=None, help="default: 100 for tiny, 5 otherwise")
    p.add_argument("--lora-r", type=int, default=None, help="default: 0 for tiny, 16 otherwise")
    p.add_argument("--repeats", type=int, default=None,
                   help="independent runs to combine; default: 3 for tiny, 1 otherwise")
    p.add_argument("--trim-vocab", action="store_true",
                   help="train the model with its vocabulary trimmed, as the cpu profile does")
    p.add_argument("--levers", action="store_true", help="measure the cpu profile's cost levers one by one instead")
    a = p.parse_args(argv)
    if a.levers:
        res = levers(a.model, a.batch_size, rounds=a.rounds or 3)
        path = atomic_write_json(repo_root() / "benchmarks" / "results" / f"{device_slug(res['device'])}_{a.model}_levers.json", res)
        print(f"-> {path}")
        return
    lora = a.lora_r if a.lora_r is not None else (0 if a.model == "tiny" else 16)
    rounds = a.rounds or (100 if a.model == "tiny" else 5)
    repeats = a.repeats or (3 if a.model == "tiny" else 1)
    reps = [run(a.model, a.batch_size, rounds=rounds, lora_r=lora, trim_vocab=a.trim_vocab) for _ in range(repeats)]
    res = combine(reps) if repeats > 1 else reps[0]
    name = f"{device_slug(res['device'])}_{a.model}{'_trimmed' if a.trim_vocab else ''}.json"
    path = atomic_write_json(repo_root() / "benchmarks" / "results" / name, res)
    for n, r in res["losses"].items():
        print(f"{n:12s} {r['median_s'] * 1000:9.1f} ms  x{r['ratio_to_trl_sigmoid']:.3f}  "
              f"{r['extra_ms_vs_trl_sigmoid']:+.2f} ms")
    print(f"generation {res['generation_tokens_per_s']:.0f} tokens/s; worst ratio x{res['worst_ratio']:.3f} -> {path}")


if __name__ == "__main__":
    main()
