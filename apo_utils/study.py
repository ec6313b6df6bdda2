"""What every study notebook does: train a policy with one loss, then measure it.

`train_policy` trains LoRA adapters with `ApoTrainer` (the reference is the same backbone with the
adapters switched off, and its log-probs are computed once before training), saves them as
safetensors and reuses them on a re-run. `evaluate_policy` samples continuations of held-out prompts,
scores them with the ground truth, and estimates KL(pi || ref) from the same samples.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset
from trl import DPOConfig

from .cache import cached_map, fingerprint
from .generation import generate
from .models import load_causal_lm
from .storage import atomic_write_bytes, atomic_write_json, read_json
from .trainer import ApoTrainer

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]


def train_policy(method: str, train_rows: list[dict], backbone: str, out_dir, *, loss_kwargs: dict | None = None,
                 epochs: float = 1.0, batch_size: int = 8, lr: float = 5e-4, lora_r: int = 16, max_length: int = 128,
                 seed: int = 0, progress: bool = False, log=print, save_steps: int = 10, callbacks=None):
    """(model with trained adapters, tokenizer, info). Same seed -> same data order for every method.

    Checkpoints (adapters, optimizer, scheduler, RNG) are written every `save_steps` steps; a run killed
    mid-training resumes from the last complete one and ends with the same adapters as an unbroken run.
    """
    from peft import LoraConfig, PeftModel

    loss_kwargs = dict(loss_kwargs or {})
    key = fingerprint(method, loss_kwargs, backbone, epochs, batch_size, lr, lora_r, max_length, seed,
                      [(r["prompt"], r["chosen"], r["rejected"], r.get("margin")) for r in train_rows])
    folder = Path(out_dir) / f"{method}-{key}"
    base, tok, prov = load_causal_lm(backbone, seed=seed, log=lambda *_: None)
    if (folder / "DONE").exists():
        model = PeftModel.from_pretrained(base, folder / "adapter")
        if torch.cuda.is_available():
            model.to("cuda")
        info = read_json(folder / "info.json")
        info["reused"] = True
        return model.eval(), tok, info
    cols = ["prompt", "chosen", "rejected"] + (["margin"] if "margin" in train_rows[0] else [])
    ds = Dataset.from_list([{c: r[c] for c in cols} for r in train_rows])
    beta = loss_kwargs.pop("beta", 0.1)
    cuda = torch.cuda.is_available()
    args = DPOConfig(
        output_dir=str(folder / "trainer"), num_train_epochs=epochs, per_device_train_batch_size=batch_size,
        learning_rate=lr, lr_scheduler_type="cosine", warmup_steps=0.03, logging_steps=1, save_strategy="steps",
        save_steps=save_steps, save_total_limit=2,
        report_to="none", bf16=cuda, use_cpu=not cuda, seed=seed, data_seed=seed, beta=beta,
        max_length=max_length, precompute_ref_log_probs=True, disable_tqdm=not progress,
        dataloader_num_workers=0,
    )
    torch.manual_seed(seed)
    peft_config = LoraConfig(task_type="CAUSAL_LM", r=lora_r, lora_alpha=2 * lora_r, lora_dropout=0.0,
                             target_modules=LORA_TARGETS)
    trainer = ApoTrainer(model=base, args=args, train_dataset=ds, processing_class=tok, peft_config=peft_config,
                         loss_name=method, loss_kwargs={**loss_kwargs, "beta": beta}, callbacks=callbacks)
    resume = _last_complete_checkpoint(folder / "trainer")
    if resume:
        log(f"resuming {method} from {resume.name}")
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    model = trainer.model
    model.save_pretrained(folder / "adapter")
    info = {"method": method, "loss_kwargs": {**loss_kwargs, "beta": beta}, "key": key, "backbone": prov,
            "log": [h for h in trainer.state.log_history if "loss" in h],
            "train_runtime_s": trainer.state.log_history[-1].get("train_runtime")}
    atomic_write_json(folder / "info.json", info)
    atomic_write_bytes(folder / "DONE", b"ok\n")
    shutil.rmtree(folder / "trainer", ignore_errors=True)  # checkpoints are only for resuming
    info["reused"] = False
    return model.eval(), tok, info


def _last_complete_checkpoint(folder: Path) -> Path | None:
    """The newest checkpoint-N whose trainer state was written (the Trainer writes it last)."""
    done = [p for p in folder.glob("checkpoint-*") if (p / "trainer_state.json").exists()]
    return max(done, key=lambda p: int(p.name.split("-")[1]), default=None)


@torch.no_grad()
def completion_logprobs(model, tok, prompts: list[str], completions: list[str], batch_size: int = 16) -> np.ndarray:
    """Summed log pi(completion | prompt) for each pair, over the completion tokens only."""
    device = next(model.parameters()).device
    out = []
    side = tok.padding_side
    tok.padding_side = "right"
    try:
        for i in range(0, len(prompts), batch_size):
            ps, cs = prompts[i : i + batch_size], completions[i : i + batch_size]
            n_prompt = [len(tok(p)["input_ids"]) for p in ps]
            enc = tok([p + c for p, c in zip(ps, cs)], return_tensors="pt", padding=True).to(device)
            logits = model(**enc).logits.float()
            logp = torch.log_softmax(logits[:, :-1], -1).gather(-1, enc["input_ids"][:, 1:, None]).squeeze(-1)
            mask = enc["attention_mask"][:, 1:].clone()
            for j, n in enumerate(n_prompt):
                mask[j, : n - 1] = 0
            out.append((logp * mask).sum(-1).cpu().numpy())
    finally:
        tok.padding_side = side
    return np.concatenate(out)


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
                       out_dir, P, *, seed: int, loss_kwargs: dict | None = None) -> dict:
    """Train one policy and measure it; the metrics are saved as JSON and reused on a re-run (resumable).

    P: a profiles.PolicySettings. Every method gets the same data, order (seed), budget and evaluation.
    """
    key = fingerprint(method, loss_name, loss_kwargs, backbone, P, seed,
                      [(r["prompt"], r["chosen"], r["rejected"], r.get("margin")) for r in rows], prompts,
                      scorer.description)
    path = Path(out_dir) / "runs" / f"{method}-s{seed}-{key}.json"
    if path.exists():  # finished before: the record says so, so a cached re-run's time is not mistaken for a run's
        return {**read_json(path), "reused": True}
    model, tok, info = train_policy(loss_name, rows, backbone, Path(out_dir) / "adapters",
                                    loss_kwargs={**(loss_kwargs or {}), "beta": P.beta}, epochs=P.epochs,
                                    batch_size=P.batch_size, lr=P.lr, lora_r=P.lora_r, max_length=P.max_length,
                                    seed=seed)
    ev = evaluate_policy(model, tok, prompts, scorer, key={"policy": info["key"]},
                         cache_dir=Path(out_dir) / "eval_cache", n_samples=P.eval_samples,
                         max_new_tokens=P.eval_max_new_tokens, batch_size=P.eval_batch_size, seed=1000 + seed)
    last = info["log"][-1] if info["log"] else {}
    result = {"method": method, "loss": loss_name, "seed": seed, **ev,
              "train_runtime_s": info.get("train_runtime_s"), "final_train_loss": last.get("loss"),
              "train_log": info["log"]}
    atomic_write_json(path, result)
    return {**result, "reused": False}


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
