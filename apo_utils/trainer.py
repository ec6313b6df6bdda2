"""TRL's DPOTrainer and RewardTrainer with the apo losses and a per-pair `margin` column.

TRL 1.16 drops any extra dataset column before the loss (../shared/trl-notes.md). Four touch-points
carry `margin` through: the collator emits it, `_set_signature_columns_if_needed` keeps it, it is
popped from the inputs before the model forward, and the loss reads it. Everything else (data
preparation, reference log-probs, PEFT, logging, checkpoints) is TRL's own.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers.trainer_utils import get_last_checkpoint
from trl import DPOTrainer, RewardTrainer
from trl.trainer.dpo_trainer import DataCollatorForPreference

from . import losses as L
from .objective import Objective
from .storage import atomic_write_json, read_json

OBJECTIVE_STATE = "apo_objective.json"

_NON_MODEL_KEYS = {"completion_mask", "ref_chosen_logps", "ref_rejected_logps", "margin", "pair_id"}


@dataclass
class MarginCollator(DataCollatorForPreference):
    """TRL's preference collator plus a float `margin` tensor and an integer `pair_id` when the examples carry them."""

    def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        out = super().torch_call(examples)
        if "margin" in examples[0]:
            out["margin"] = torch.tensor([float(e["margin"]) for e in examples], dtype=torch.float32)
        if "pair_id" in examples[0]:
            out["pair_id"] = torch.tensor([int(e["pair_id"]) for e in examples], dtype=torch.long)
        return out


def _columns(dataset) -> set[str]:
    names = getattr(dataset, "column_names", None)
    if isinstance(names, dict):  # DatasetDict
        return set().union(*names.values())
    return set(names or [])


def _check_preference_dataset(ds, split: str):
    """Fail before TRL tokenises anything, naming the column and row, instead of a KeyError deep inside it.

    Accepts what TRL accepts: text or conversational columns `chosen`/`rejected` (with or without `prompt`),
    or already-tokenised `chosen_ids`/`rejected_ids`. Text rows must be non-empty strings."""
    if not hasattr(ds, "column_names") or not hasattr(ds, "__len__"):
        return  # streaming datasets: nothing to check without reading them
    cols = _columns(ds)
    if len(ds) == 0:
        raise ValueError(f"{split} is empty: at least one preference pair is needed")
    if {"chosen_ids", "rejected_ids"} <= cols:
        return
    missing = [c for c in ("chosen", "rejected") if c not in cols]
    if missing:
        raise ValueError(f"{split} has no column {missing[0]!r}; a preference dataset needs 'chosen' and "
                         f"'rejected' (and usually 'prompt'), this one has {sorted(cols)}")
    for c in ("prompt", "chosen", "rejected"):
        if c not in cols or not isinstance(ds[0][c], str):
            continue  # conversational rows (lists of messages) are TRL's to check
        for i, v in enumerate(ds[c]):
            if not isinstance(v, str):
                raise ValueError(f"{split}: column {c!r} row {i} is {type(v).__name__} ({v!r}), expected a string")
            if c != "prompt" and not v.strip():
                raise ValueError(f"{split}: column {c!r} row {i} is an empty string")


def _check_margins(values, split: str):
    """Fail before training, naming the row, rather than at the batch that holds a NaN margin."""
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"{split}: column 'margin' row {i} is {v!r}; margins must be finite numbers")


class ApoTrainer(DPOTrainer):
    """`ApoTrainer(model, args=DPOConfig(...), loss_name="madpo", loss_kwargs={"beta": 0.1}, ...)`.

    `loss_name` is any key of `apo_utils.losses.LOSSES`, or None to keep TRL's own `args.loss_type`.
    The loss's beta defaults to `args.beta`. Logged next to TRL's metrics: `apo/ranking_accuracy`
    (share of pairs with h > 0), `apo/grad_weight` (mean |dloss/dh|) and each method's diagnostics
    (`apo/weight`, `apo/gamma`, `apo/margin`, `apo/beta_used`, `apo/target`, ...).

    Several processes (`accelerate launch`, `torchrun`): the batch-level losses (beta-DPO, gamma-PO, AMaPO)
    gather their per-pair statistic from every process, so beta-DPO's filter and beta, gamma-PO's margins
    and AMaPO's Z-normalisation are those of the global batch, as in one process.
    """

    gather_batch_statistics = True  # False only to show what per-process statistics would do (tests)
    # Set to a list to record, for every training pair in every step, what the loss did to it:
    # {'step', 'pair_id', 'h', 'grad_weight', and the loss's per-pair diagnostics (gamma, weight, margin, ...)}.
    # Needs a `pair_id` column. This is how notebook 03 sees the margins gamma-PO gives flipped pairs.
    pair_log: list | None = None

    def __init__(self, *args, loss_name: str | None = "dpo", loss_kwargs: dict | None = None, **kwargs):
        given = inspect.signature(DPOTrainer.__init__).bind_partial(None, *args, **kwargs).arguments
        training_args = given.get("args")
        loss_kwargs = dict(loss_kwargs or {})
        if loss_name is not None and training_args is not None and "beta" not in loss_kwargs:
            loss_kwargs["beta"] = training_args.beta
        # Validate the loss before TRL loads or tokenises anything.
        self.objective = Objective(loss_name, **loss_kwargs) if loss_name is not None else None
        for split in ("train_dataset", "eval_dataset"):
            ds = given.get(split)
            for name, part in (ds.items() if isinstance(ds, dict) else [(split, ds)]):
                if part is not None:
                    _check_preference_dataset(part, name if name == split else f"{split}[{name!r}]")
        if self.objective is not None and self.objective.needs_margin:
            for split in ("train_dataset", "eval_dataset"):
                ds = given.get(split)
                if ds is not None and "margin" not in _columns(ds):
                    raise ValueError(f"loss {loss_name!r} needs a numeric 'margin' column; {split} has "
                                     f"columns {sorted(_columns(ds))}")
                if ds is not None and hasattr(ds, "__getitem__") and not isinstance(ds, dict):
                    _check_margins(ds["margin"], split)
        super().__init__(*args, **kwargs)
        if self.objective is not None and getattr(self, "ld_alpha", None) is not None:
            raise ValueError("ld_alpha is not supported with apo losses; leave it unset")
        if isinstance(self.data_collator, DataCollatorForPreference) and not isinstance(self.data_collator, MarginCollator):
            c = self.data_collator
            self.data_collator = MarginCollator(
                pad_token_id=c.pad_token_id, max_length=c.max_length, truncation_mode=c.truncation_mode,
                pad_to_multiple_of=c.pad_to_multiple_of,
            )

    # ------------------------------------------------------------------ checkpoints

    def _save_checkpoint(self, model, trial):
        # The loss's running state (beta-DPO's gap statistics, gamma-PO's queue, their RNG) is written before
        # the Trainer's files, so a checkpoint whose trainer_state.json exists (written last) always has it.
        if self.objective is not None and self.args.should_save:
            folder = Path(self._get_output_dir(trial=trial)) / f"checkpoint-{self.state.global_step}"
            atomic_write_json(folder / OBJECTIVE_STATE, self.objective.state_dict())
        super()._save_checkpoint(model, trial)

    def train(self, resume_from_checkpoint=None, *args, **kwargs):
        if resume_from_checkpoint and self.objective is not None:
            if resume_from_checkpoint is True:
                resume_from_checkpoint = get_last_checkpoint(self.args.output_dir)
            state = Path(resume_from_checkpoint) / OBJECTIVE_STATE
            if state.exists():
                self.objective.load_state_dict(read_json(state))
        return super().train(resume_from_checkpoint, *args, **kwargs)

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        extra = [c for c in ("margin", "pair_id") if c not in self._signature_columns]
        self._signature_columns = list(self._signature_columns) + extra

    # ------------------------------------------------------------------ loss

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        margin = inputs.pop("margin", None)
        pair_id = inputs.pop("pair_id", None)
        if self.objective is None:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        return self._apo_loss(model, inputs, margin, return_outputs, pair_id)

    def sequence_logps(self, model, inputs) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed completion log-probs, [chosen | rejected] halves of the batch, as TRL computes them."""
        completion_mask = inputs["completion_mask"]
        model_kwargs = {k: v for k, v in inputs.items() if k not in _NON_MODEL_KEYS}
        model_kwargs["use_cache"] = False
        labels = inputs["input_ids"].masked_fill(completion_mask == 0, -100)
        outputs = model(**model_kwargs, labels=labels, fused_lm_head=True)
        seq_len = completion_mask.size(1) - 1
        logps = outputs.log_probs[:, -seq_len:].sum(dim=1)
        return logps.chunk(2, dim=0)

    def _apo_loss(self, model, inputs, margin, return_outputs, pair_id=None):
        mode = "train" if self.model.training else "eval"
        obj = self.objective
        pc, pr = self.sequence_logps(model, inputs)
        lengths = inputs["completion_mask"].sum(dim=1).clamp(min=1).float()
        lc, lr = lengths.chunk(2, dim=0)
        rc = rr = None
        if obj.needs_reference:
            if self.precompute_ref_logps:
                rc, rr = inputs["ref_chosen_logps"], inputs["ref_rejected_logps"]
            else:
                ref = self.ref_model if self.ref_model is not None else self.model
                rc, rr = self.compute_ref_log_probs(ref, inputs)
        if obj.needs_margin and margin is None:
            raise ValueError(f"loss {obj.name!r} needs a 'margin' column, but the batch has none")
        gathered, offset = None, 0
        if self.gather_batch_statistics and self.accelerator.num_processes > 1 and obj.name in L.BATCH_LEVEL:
            stat = L.batch_statistic(obj.name, pc, pr, rc, rr, chosen_lengths=lc, rejected_lengths=lr, **obj.hparams)
            gathered, offset = self._gather_rows(stat)
        out = obj(pc, pr, rc, rr, margin=margin, chosen_lengths=lc, rejected_lengths=lr, gathered=gathered,
                  offset=offset, update=(mode == "train"))
        loss = out.loss
        if gathered is not None and out.mask is not None:
            # DDP averages the processes' losses; normalise by the global count of kept pairs so that
            # average equals one process's masked mean over the global batch.
            kept = self.accelerator.gather(out.mask.sum().reshape(1)).sum().clamp_min(1.0)
            loss = (out.losses * out.mask).sum() * self.accelerator.num_processes / kept
        self._log_apo_metrics(mode, out, pc, pr, rc, rr)
        if self.pair_log is not None and pair_id is not None and mode == "train":
            self._log_pairs(out, pair_id)
        if return_outputs:
            return loss, {"h": out.h, "grad_weight": out.grad_weight}
        return loss

    def _log_pairs(self, out: L.LossOutput, pair_id: torch.Tensor):
        """Per-pair values of this step (this process's rows), for diagnostics after training."""
        n = pair_id.shape[0]
        cols = {"h": out.h, "grad_weight": out.grad_weight}
        cols |= {k: v for k, v in out.stats.items() if torch.is_tensor(v) and v.reshape(-1).shape[0] == n}
        vals = {k: v.detach().float().reshape(-1).cpu().tolist() for k, v in cols.items()}
        step = self.state.global_step + 1  # the optimizer step this batch belongs to
        for i, pid in enumerate(pair_id.tolist()):
            self.pair_log.append({"step": step, "pair_id": int(pid), **{k: v[i] for k, v in vals.items()}})

    def _gather_rows(self, stat: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Every process's rows of `stat` in process order, and where this process's rows start.

        Batches may differ in size across processes (the last one), so rows are padded to the longest,
        gathered, and the padding dropped again.
        """
        acc = self.accelerator
        sizes = acc.gather(torch.tensor([stat.shape[0]], device=stat.device)).tolist()
        padded = acc.pad_across_processes(stat.float().contiguous(), dim=0)
        rows = acc.gather(padded).reshape(len(sizes), -1)
        gathered = torch.cat([rows[i, :n] for i, n in enumerate(sizes)])
        return gathered, int(sum(sizes[: acc.process_index]))

    def _log_apo_metrics(self, mode, out: L.LossOutput, pc, pr, rc, rr):
        gather = self.accelerator.gather_for_metrics
        m = self._metrics[mode]
        m["apo/ranking_accuracy"].append(gather((out.h > 0).float()).mean().item())
        m["apo/grad_weight"].append(gather(out.grad_weight.abs()).mean().item())
        for key, val in out.stats.items():
            if key == "gaps":
                continue
            m[f"apo/{key}"].append(gather(val.detach().float().reshape(-1)).mean().item())
        m["logps/chosen"].append(gather(pc.detach()).mean().item())
        m["logps/rejected"].append(gather(pr.detach()).mean().item())
        if rc is not None:
            beta = self.objective.hparams.get("beta", self.beta)
            chosen = beta * (pc.detach() - rc)
            rejected = beta * (pr.detach() - rr)
            m["rewards/chosen"].append(gather(chosen).mean().item())
            m["rewards/rejected"].append(gather(rejected).mean().item())
            m["rewards/margins"].append(gather(chosen - rejected).mean().item())
            m["rewards/accuracies"].append(gather((chosen > rejected).float()).mean().item())


class MarginRewardTrainer(RewardTrainer):
    """TRL's RewardTrainer with a choice of what a `margin` column means.

    margin_mode="none":   plain Bradley-Terry, any margin column ignored (MADPO step 1).
    margin_mode="offset": TRL's native -log sigma(r_w - r_l - margin).
    margin_mode="soft":   MMPO's soft target p = sigma(gamma_bt * margin), cross-entropy.
    """

    def __init__(self, *args, margin_mode: str = "none", gamma_bt: float = 1.0, **kwargs):
        if margin_mode not in ("none", "offset", "soft"):
            raise ValueError(f"margin_mode must be 'none', 'offset' or 'soft', got {margin_mode!r}")
        if margin_mode != "none":
            ds = kwargs.get("train_dataset")
            if ds is not None and "margin" not in _columns(ds):
                raise ValueError(f"margin_mode={margin_mode!r} needs a 'margin' column; train_dataset has "
                                 f"columns {sorted(_columns(ds))}")
        self.margin_mode = margin_mode
        self.gamma_bt = L._positive(gamma_bt, "gamma_bt")
        super().__init__(*args, **kwargs)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.margin_mode == "offset":
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        margin = inputs.pop("margin", None)
        if self.margin_mode == "none":
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        mode = "train" if self.model.training else "eval"
        outputs = model(**{k: v for k, v in inputs.items()}, use_cache=False)
        rw, rl = torch.chunk(outputs.logits.squeeze(-1), chunks=2)
        out = L.mmpo_reward_loss(rw, rl, margin, gamma_bt=self.gamma_bt)
        loss = out.loss
        with torch.no_grad():
            gather = self.accelerator.gather_for_metrics
            self._metrics[mode]["accuracy"].append(gather((rw > rl).float()).mean().item())
            self._metrics[mode]["margin"].append(gather(rw - rl).mean().item())
            self._metrics[mode]["mmpo/target"].append(gather(out.stats["target"]).mean().item())
        return (loss, outputs) if return_outputs else loss
