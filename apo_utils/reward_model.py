"""MADPO step 1: a Bradley-Terry reward model trained on the pairs, and its margin for every pair.

Training is TRL's RewardTrainer (through `MarginRewardTrainer`, margin_mode="none": any `margin`
column is ignored so the model learns from labels alone, as in the paper). On a pretrained backbone it
trains LoRA adapters (r=16 on the attention projections, as the MADPO authors) plus the score head.
The trained model is saved as safetensors under the run's output folder and reused on a re-run of the same code
(`lora_run.RunFolder`, the road policies take too).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import torch
from datasets import Dataset
from safetensors.torch import load_file, save_file
from transformers import PrinterCallback, TrainerCallback
from trl import RewardConfig
from trl.trainer.reward_trainer import DataCollatorForPreference as RewardCollator

from .data import validate_preferences
from .env import mixed_precision
from .frozen_layers import attach, attached, training_sequences
from .lora_run import RunFolder, RunSettings, frozen_lower, lora_config
from .models import load_reward_model
from .progress import quiet_progress
from .storage import note_reuse
from .trainer import MarginRewardTrainer


def _eos(text: str, eos: str) -> str:
    return text if text.endswith(eos) else text + eos


@torch.no_grad()
def reward_margins(model, tokenizer, rows: list[dict], batch_size: int = 16) -> np.ndarray:
    """r(x, y_w) - r(x, y_l) for each row, scored as RewardTrainer sees a pair (prompt + response + EOS)."""
    lower = attached(model)
    if lower is not None and lower._installed is None:  # score through the kept lower states: the top layers only
        with lower.installed():
            return reward_margins(model, tokenizer, rows, batch_size)
    if tokenizer.pad_token_id is None or getattr(model.config, "pad_token_id", None) is None:
        # a sequence classifier finds each row's last token by its padding: without a pad id it cannot score a batch
        raise ValueError("reward_margins needs a pad token on the tokenizer and model.config.pad_token_id (to find "
                         "each response's last token); this tokenizer has none. Set `tokenizer.pad_token = "
                         "tokenizer.eos_token` and `model.config.pad_token_id = tokenizer.pad_token_id`, as "
                         "models.load_reward_model does.")
    device = next(model.parameters()).device
    model.eval()
    collate = RewardCollator(pad_token_id=tokenizer.pad_token_id)
    eos = tokenizer.eos_token
    out = []
    for i in range(0, len(rows), batch_size):
        chunk = rows[i : i + batch_size]
        ex = [{"chosen_ids": tokenizer(_eos(r["prompt"] + r["chosen"], eos))["input_ids"],
               "rejected_ids": tokenizer(_eos(r["prompt"] + r["rejected"], eos))["input_ids"]} for r in chunk]
        batch = {k: v.to(device) for k, v in collate(ex).items()}
        rewards = model(**batch).logits.squeeze(-1).float()
        rw, rl = rewards.chunk(2)
        out.append((rw - rl).cpu().numpy())
    return np.concatenate(out)


class _EarlyStopping(TrainerCallback):
    """Every `every` optimizer steps: the validation pairs' Bradley-Terry loss on their labels, kept as a curve;
    the best adapters and head are kept, and training stops after `patience` evaluations without a new best
    (the MADPO authors' procedure). At the end the best weights are put back."""

    def __init__(self, model, tok, val_rows: list[dict], every: int, patience: int):
        self.model, self.tok, self.rows, self.every, self.patience = model, tok, val_rows, every, patience
        self.labels_true = np.array([r["true_margin"] for r in val_rows]) >= 0 if "true_margin" in val_rows[0] else None
        self.curve, self.best, self.best_step, self.bad, self.state = [], float("inf"), 0, 0, None

    def evaluate(self, step: int):
        was = self.model.training
        d = reward_margins(self.model, self.tok, self.rows)  # right-padded: the kept lower states serve it too
        self.model.train(was)
        point = {"step": int(step), "val_loss": float(np.mean(np.logaddexp(0.0, -d))),  # -log sigma(r_w - r_l)
                 "val_label_accuracy": float((d > 0).mean())}
        if self.labels_true is not None:
            point["val_truth_accuracy"] = float(((d > 0) == self.labels_true).mean())
        self.curve.append(point)
        if point["val_loss"] < self.best - 1e-4:
            self.best, self.best_step, self.bad = point["val_loss"], int(step), 0
            self.state = {n: p.detach().clone() for n, p in self.model.named_parameters() if p.requires_grad}
        else:
            self.bad += 1
        return point

    def on_train_begin(self, args, state, control, **kw):
        if state.global_step == 0 and not self.curve:
            self.evaluate(0)

    def on_step_end(self, args, state, control, **kw):
        if state.global_step % self.every == 0 or state.global_step == state.max_steps:
            self.evaluate(state.global_step)
            if self.bad >= self.patience:
                control.should_training_stop = True

    def restore_best(self):
        if self.state is not None:
            with torch.no_grad():
                for n, p in self.model.named_parameters():
                    if n in self.state:
                        p.copy_(self.state[n])


@dataclass(frozen=True)
class EarlyStopping:
    """Validation pairs (from prompts not in the training rows), evaluated every `every` optimizer steps; training
    stops after `patience` evaluations without improvement and the best weights are kept (the MADPO authors')."""

    rows: list
    every: int = 20
    patience: int = 3


def train_reward_model(train_rows: list[dict], backbone: str, output_dir, settings: RunSettings, *,
                       margin_mode: str = "none", gamma_bt: float = 1.0, early_stopping: EarlyStopping | None = None,
                       progress: bool = True, log=print):
    """Train (or reload) the reward model; returns (model, tokenizer, info).

    margin_mode="none" is the plain Bradley-Terry model; "soft" trains on MMPO's soft targets
    sigma(gamma_bt * margin) from each row's `margin` (see `trainer.MarginRewardTrainer`).
    early_stopping: info['curve'] holds the validation curve, info['train_log'] the training loss; settings.epochs is
    then the most it may train. settings.lora_r 0 trains every weight (the tiny smoke model).
    """
    from peft import PeftModel

    validate_preferences(train_rows, require_margin=margin_mode != "none", check_margin=margin_mode != "none",
                         where="train_rows")
    mode_key = [] if margin_mode == "none" else [margin_mode, float(gamma_bt), [float(r["margin"]) for r in train_rows]]
    stop_key = [] if early_stopping is None else [{
        "val": [(r["prompt"], r["chosen"], r["rejected"]) for r in early_stopping.rows],
        "eval_every": early_stopping.every, "patience": early_stopping.patience}]
    run = RunFolder(output_dir, "reward_model", [backbone, settings.key(), [(r["prompt"], r["chosen"], r["rejected"])
                                                                           for r in train_rows], *mode_key, *stop_key],
                    module=__name__.split(".")[-1])
    folder = run.path
    model, tok, prov = load_reward_model(backbone, seed=settings.seed, log=log)
    n_layers = model.config.num_hidden_layers
    settings.check(n_layers)
    info = {"backbone": prov, "key": run.key, "lora_r": settings.lora_r, "epochs": settings.epochs, "lr": settings.lr,
            "n_train": len(train_rows), "margin_mode": margin_mode, "gamma_bt": gamma_bt}
    weights = folder / "model" / ("adapter_model.safetensors" if settings.lora_r else "model.safetensors")
    if run.finished(weights):
        log(f"reward model: reusing {folder}")
        if settings.lora_r:
            model = PeftModel.from_pretrained(model, folder / "model")
        else:
            model.load_state_dict(load_file(weights))
        info.update(run.info())
        attach(model, frozen_lower(model, "reward", backbone, settings, n_layers))
        info["reused"] = True
        note_reuse("reward models", code=run.code)
        return model.eval(), tok, info
    cols = ["prompt", "chosen", "rejected"] + (["margin"] if margin_mode != "none" else [])
    ds = Dataset.from_list([{c: r[c] for c in cols} for r in train_rows])
    args = RewardConfig(
        output_dir=str(folder / "trainer"), num_train_epochs=settings.epochs,
        per_device_train_batch_size=settings.batch_size, learning_rate=settings.lr, lr_scheduler_type="cosine",
        warmup_steps=0.03, logging_steps=5, save_strategy="no", report_to="none", **mixed_precision(model),
        use_cpu=not torch.cuda.is_available(), seed=settings.seed, data_seed=settings.seed,
        max_length=settings.max_length, disable_tqdm=not progress, dataloader_num_workers=0,
        # TRL's RewardConfig turns activation checkpointing on: it recomputes the forward pass during the
        # backward one to save memory a 270M model does not need, and changes no result (as for policies).
        activation_checkpointing=False,
    )
    with contextlib.nullcontext() if progress else quiet_progress():
        trainer = MarginRewardTrainer(model=model, args=args, train_dataset=ds, processing_class=tok,
                                      peft_config=lora_config("SEQ_CLS", settings, n_layers), margin_mode=margin_mode,
                                      gamma_bt=gamma_bt)
        if not progress:  # the info dict keeps the log; no line per logging step in the notebook
            trainer.remove_callback(PrinterCallback)
        lower = frozen_lower(trainer.model, "reward", backbone, settings, n_layers)
        if lower is not None:
            lower.precompute(training_sequences(trainer.train_dataset, None))
        stopper = None
        if early_stopping is not None and early_stopping.rows:
            stopper = _EarlyStopping(trainer.model, tok, early_stopping.rows, early_stopping.every,
                                     early_stopping.patience)
            trainer.add_callback(stopper)
        with lower.installed() if lower else contextlib.nullcontext():
            trainer.train()
    model = attach(trainer.model, lower)  # reward_margins scores through it: the top layers only
    if stopper is not None:
        stopper.restore_best()
        info.update(curve=stopper.curve, best_step=stopper.best_step, stopped_step=trainer.state.global_step,
                    max_steps=trainer.state.max_steps, stopped_early=trainer.state.global_step < trainer.state.max_steps)
    if settings.lora_r:
        model.save_pretrained(folder / "model")  # adapters + score head, safetensors
    else:
        (folder / "model").mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, weights)
    info["train_log"] = [h for h in trainer.state.log_history if "loss" in h]
    run.finish(info)
    info["reused"] = False
    return model.eval(), tok, info


def margin_quality(est: np.ndarray, rows: list[dict]) -> dict:
    """How well estimated margins track the truth: correlations, and accuracy against labels and against truth."""
    true = np.array([r["true_margin"] for r in rows], dtype=float)
    est = np.asarray(est, dtype=float)
    ranks = lambda x: np.argsort(np.argsort(x))  # noqa: E731
    pearson = float(np.corrcoef(est, true)[0, 1]) if est.std() > 0 and true.std() > 0 else float("nan")
    spearman = float(np.corrcoef(ranks(est), ranks(true))[0, 1]) if est.std() > 0 else float("nan")
    return {
        "pearson": pearson,
        "spearman": spearman,
        "label_accuracy": float((est > 0).mean()),  # agrees with the (noisy) label
        "truth_accuracy": float(((est > 0) == (true >= 0)).mean()),  # agrees with the ground truth
        "n": int(len(rows)),
    }


def bag_of_words_reference(train_rows: list[dict], val_rows: list[dict], test_rows: list[dict],
                           l2_grid=(1e-4, 1e-3, 1e-2, 1e-1)) -> dict:
    """What the words alone can predict: a Bradley-Terry logistic model on word counts, as a yardstick for the reward
    model. r(y) = w . counts(y); fitted on the training labels by L-BFGS with an L2 penalty chosen on `val_rows`;
    returns `margin_quality` on `test_rows` with the penalty used, the vocabulary size and the test pairs'
    `estimates` (for a paired comparison). The ground truth here
    (VADER) is itself a word lexicon, so this is close to an upper reference for a model of the same data."""
    import re

    words = lambda t: re.findall(r"[a-z']+|[!?]", t.lower())  # noqa: E731
    vocab = {}
    for r in train_rows:
        for w in words(r["chosen"]) + words(r["rejected"]):
            vocab.setdefault(w, len(vocab))

    def diff(rows):
        x = np.zeros((len(rows), len(vocab)), dtype=np.float32)
        for i, r in enumerate(rows):
            for w in words(r["chosen"]):
                if w in vocab:
                    x[i, vocab[w]] += 1
            for w in words(r["rejected"]):
                if w in vocab:
                    x[i, vocab[w]] -= 1
        return torch.from_numpy(x)

    xt, xv, xs = diff(train_rows), diff(val_rows), diff(test_rows)

    def fit(l2):
        w = torch.zeros(xt.shape[1], requires_grad=True)
        opt = torch.optim.LBFGS([w], max_iter=200, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = torch.nn.functional.softplus(-(xt @ w)).mean() + l2 * (w * w).sum()
            loss.backward()
            return loss

        opt.step(closure)
        return w.detach()

    fits = {l2: fit(l2) for l2 in l2_grid}
    val_loss = {l2: float(torch.nn.functional.softplus(-(xv @ w)).mean()) for l2, w in fits.items()}
    best = min(val_loss, key=val_loss.get)
    est = (xs @ fits[best]).numpy()
    return {**margin_quality(est, test_rows), "l2": best, "val_loss": val_loss[best], "vocabulary": len(vocab),
            "n_train": len(train_rows), "estimates": est}


def reward_model_settings(data, seed: int) -> RunSettings:
    """How a profile's reward model trains (`profiles.DataSettings`' rm_* fields), for notebooks 01 and 05."""
    return RunSettings(epochs=data.rm_epochs, batch_size=data.rm_batch_size, lr=data.rm_lr, lora_r=data.rm_lora_r,
                       max_length=256, seed=seed, top_layers=data.rm_top_layers)
