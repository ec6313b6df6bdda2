"""TRL's DPOTrainer and RewardTrainer with the apo losses and a per-pair `margin` column.

TRL 1.16 drops any extra dataset column before the loss (../shared/trl-notes.md). Four touch-points
carry `margin` through: the collator emits it, `_set_signature_columns_if_needed` keeps it, it is
popped from the inputs before the model forward, and the loss reads it. Everything else (data
preparation, reference log-probs, PEFT, logging, checkpoints) is TRL's own.
"""

from __future__ import annotations

import atexit
import gc
import inspect
import logging
import weakref
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from transformers.trainer_utils import get_last_checkpoint
from trl import DPOTrainer, RewardTrainer
from trl.trainer.dpo_trainer import DataCollatorForPreference

from . import losses as L
from .data import _columns, report_truncation, validate_preferences
from .objective import Objective
from .storage import atomic_write_json, read_json

OBJECTIVE_STATE = "apo_objective.json"

log = logging.getLogger(__name__)

_NON_MODEL_KEYS = {"completion_mask", "ref_chosen_logps", "ref_rejected_logps", "margin", "pair_id"}


@dataclass
class MarginCollator(DataCollatorForPreference):
    """TRL's preference collator plus a float `margin` tensor and an integer `pair_id` when the examples carry them.

    with_margin=False leaves any margin column out: a loss that ignores margins must not fail on one."""

    with_margin: bool = True

    def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        out = super().torch_call(examples)
        if self.with_margin and "margin" in examples[0]:
            out["margin"] = torch.tensor([float(e["margin"]) for e in examples], dtype=torch.float32)
        if "pair_id" in examples[0]:
            out["pair_id"] = torch.tensor([int(e["pair_id"]) for e in examples], dtype=torch.long)
        return out


def _splits(given: dict):
    """(name, dataset) for every map-style dataset given, eval dicts unpacked as eval_dataset['name']."""
    for split in ("train_dataset", "eval_dataset"):
        ds = given.get(split)
        for name, part in (ds.items() if isinstance(ds, dict) else [(split, ds)]):
            if part is not None and hasattr(part, "column_names") and hasattr(part, "__len__"):
                yield (name if name == split else f"{split}[{name!r}]"), part


# Every trainer made here, so that the exit hook can release what they hold of the process group.
_trainers: weakref.WeakSet = weakref.WeakSet()
_exit_hook_registered = False


def release_process_group():
    """Free the gloo process group, and so join its worker threads, while Python is still whole.

    `destroy_process_group` alone is not enough: it unregisters the group, but the DDP wrapper of each trained
    model still holds it (its reducer), so gloo's threads live on into interpreter shutdown. A worker thread
    that then lets go of its last collective's tensors needs the GIL, and taking it during finalisation ends
    the thread by force, which aborts the process ("terminate called without an active exception", exit -6)
    after all its work is done: at random, more often on a busy machine. Measured: with only
    `destroy_process_group` the three gloo threads of a 2-process run are still there; after dropping the
    trainers' DDP wrappers first, they are gone."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return
    for trainer in list(_trainers):
        trainer.accelerator.free_memory()  # drops the prepared (DDP-wrapped) models, optimizers and loaders
        trainer.model_wrapped = trainer.model
    gc.collect()
    torch.distributed.destroy_process_group()
    gc.collect()  # the group's last reference goes here: its destructor joins the worker threads


def release_process_group_at_exit(trainer=None):
    """Register `trainer` (and, once, an exit hook) so the process group is freed before Python shuts down.

    Neither TRL nor accelerate destroys the group when a script ends. Hooks run last-registered first, so this
    one runs before the interpreter's own teardown; it is a no-op if the group was destroyed already. Called
    by every trainer here; a script that wraps models in DDP itself must drop them and call
    `torch.distributed.destroy_process_group()` before it ends."""
    global _exit_hook_registered
    if trainer is not None:
        _trainers.add(trainer)
    if not _exit_hook_registered and torch.distributed.is_available() and torch.distributed.is_initialized():
        atexit.register(release_process_group)
        _exit_hook_registered = True


def _choose_beta(loss_name: str, loss_kwargs: dict, args) -> dict:
    """beta from loss_kwargs; else DPOConfig.beta for losses with a reference (it means the same thing there);
    else the loss's own default: for SimPO-style losses beta scales a length-normalised margin, and their
    default (2.0) is twenty times DPOConfig's. The choice is logged."""
    if "beta" in loss_kwargs:
        return loss_kwargs
    if L.capabilities(loss_name).reference and args is not None:
        log.info("loss %r: beta=%s from DPOConfig.beta", loss_name, args.beta)
        return dict(loss_kwargs, beta=args.beta)
    own = L.default_beta(loss_name)
    log.warning("loss %r: beta=%s, the loss's own default; DPOConfig.beta (%s) is not used for a reference-free "
                "loss. Pass loss_kwargs={'beta': ...} to choose another.", loss_name, own, getattr(args, "beta", None))
    return dict(loss_kwargs, beta=own)


# TRL's loss_type names whose loss the kit implements: DPOConfig -> (the kit's name, the kwargs that make it TRL's).
TRL_LOSS_TYPES = {
    "sigmoid": lambda args: ("dpo", {}),
    "ipo": lambda args: ("ipo", {"length_norm": True}),  # TRL divides each log-ratio by its response length
    "robust": lambda args: ("robust", {"label_smoothing": getattr(args, "label_smoothing", 0.0)}),
}


def _loss_types(args) -> list[str]:
    """DPOConfig.loss_type as the list TRL 1.16 keeps (a string set after construction counts as one type)."""
    types = getattr(args, "loss_type", None) or ["sigmoid"]
    return [types] if isinstance(types, str) else list(types)


def loss_from_config(args, loss_kwargs: dict) -> tuple[str, dict]:
    """(loss name, loss_kwargs) for DPOConfig.loss_type, for an ApoTrainer given no loss_name.

    TRL's 'sigmoid' is DPO, its 'ipo' the length-normalised IPO and its 'robust' robust DPO with DPOConfig's
    label_smoothing; a kit name ('madpo', ...) is taken as it is. Anything else raises: training another loss
    than the one asked for, silently, is the fault this guards against."""
    types = _loss_types(args)
    if len(types) != 1:
        raise ValueError(f"DPOConfig.loss_type={types!r} combines several losses, and the kit trains one loss at a "
                         f"time: pass loss_name (one of {sorted(L.LOSSES)}), or loss_name=None to train TRL's own "
                         f"combination")
    (name,) = types
    if name in TRL_LOSS_TYPES:
        kit_name, extra = TRL_LOSS_TYPES[name](args)
        log.info("DPOConfig.loss_type=%r: training the kit's %r", name, kit_name)
        return kit_name, {**extra, **loss_kwargs}
    if name in L.LOSSES:
        return name, loss_kwargs
    raise ValueError(f"DPOConfig.loss_type={types!r} names a loss this kit does not implement. Without loss_name, "
                     f"ApoTrainer trains DPOConfig.loss_type when it is one of TRL's {sorted(TRL_LOSS_TYPES)} or "
                     f"one of the kit's losses {sorted(L.LOSSES)}: pass loss_name=<one of those> to train the kit's "
                     f"loss, or loss_name=None to train TRL's own {name!r}")


def check_config_fits_the_loss(args, loss_name: str, derived: bool):
    """DPOConfig options that change TRL's loss but that the kit's losses do not read: refused, not ignored."""
    if args is None:
        return
    defaults = {"f_divergence_type": "reverse_kl", "use_weighting": False}
    unused = [f"{k}={getattr(args, k)!r}" for k, default in defaults.items() if getattr(args, k, default) != default]
    if unused:
        raise ValueError(f"DPOConfig sets {', '.join(unused)}, which the kit's loss {loss_name!r} does not "
                         f"implement; leave it at its default, or pass loss_name=None to train TRL's own loss")
    types = _loss_types(args)
    if not derived and types != ["sigmoid"]:
        log.warning("loss_name=%r is trained; DPOConfig.loss_type=%r is not used", loss_name, types)


def check_finite_logps(accelerator, pair_id: torch.Tensor | None, **logps):
    """Raise FloatingPointError naming the pairs whose policy or reference log-probs are NaN or inf.

    logps: whose -> (chosen, rejected) per-pair tensors, e.g. policy=(pc, pr). Such a pair's loss would be NaN,
    and the whole step with it, silently. With several processes every one learns of it (one gather), so that
    none waits forever at the next collective for a process that stopped."""
    faults = []
    for whose, (chosen, rejected) in logps.items():
        bad = (~torch.isfinite(chosen.detach()) | ~torch.isfinite(rejected.detach())).nonzero().flatten().tolist()
        if bad:
            faults.append((whose, bad))
    anywhere = len(faults)
    if accelerator is not None and accelerator.num_processes > 1:
        anywhere = int(accelerator.gather(torch.tensor([len(faults)], device=accelerator.device)).sum())
    if not anywhere:
        return
    if not faults:
        raise FloatingPointError("another process's batch has NaN or inf log-probs; its error names the pairs")
    whose, bad = faults[0]
    positions = ", ".join(map(str, bad[:10])) + (", ..." if len(bad) > 10 else "")
    ids = "" if pair_id is None else f" (pair_id {', '.join(map(str, pair_id[bad[:10]].tolist()))})"
    raise FloatingPointError(
        f"the {whose} log-probs are NaN or inf for pairs {positions} of this batch{ids}, which would make their loss "
        f"NaN. The usual causes: fp16 overflow (train in bf16 or float32: apo_utils.env.mixed_precision says which "
        f"the GPU computes natively), or an empty response (a chosen or rejected with no tokens, e.g. cut away by "
        f"max_length)")


def gather_rows(accelerator, stat: torch.Tensor) -> tuple[torch.Tensor, int, int]:
    """Every process's rows of `stat` in process order, where this process's rows start, and how many processes.

    Batches may differ in size across processes (the last one), so rows are padded to the longest, gathered,
    and the padding dropped again. This is the `gather` an `Objective` pools its batch statistic with."""
    sizes = accelerator.gather(torch.tensor([stat.shape[0]], device=stat.device)).tolist()
    padded = accelerator.pad_across_processes(stat.float().contiguous(), dim=0)
    rows = accelerator.gather(padded).reshape(len(sizes), -1)
    gathered = torch.cat([rows[i, :n] for i, n in enumerate(sizes)])
    return gathered, int(sum(sizes[: accelerator.process_index])), len(sizes)


def log_loss_metrics(metrics: dict, gather, out: L.LossOutput, pc, pr, rc, rr, beta: float):
    """TRL-style metrics of one batch: `apo/ranking_accuracy` (share of pairs with h > 0), `apo/grad_weight`
    (mean |dloss/dh|), each method's diagnostics as `apo/<name>`, and TRL's logps/rewards columns."""
    metrics["apo/ranking_accuracy"].append(gather((out.h > 0).float()).mean().item())
    metrics["apo/grad_weight"].append(gather(out.grad_weight.abs()).mean().item())
    for key, val in out.stats.items():
        if key != "gaps":
            metrics[f"apo/{key}"].append(gather(val.detach().float().reshape(-1)).mean().item())
    metrics["logps/chosen"].append(gather(pc.detach()).mean().item())
    metrics["logps/rejected"].append(gather(pr.detach()).mean().item())
    if rc is not None:
        chosen, rejected = beta * (pc.detach() - rc), beta * (pr.detach() - rr)
        metrics["rewards/chosen"].append(gather(chosen).mean().item())
        metrics["rewards/rejected"].append(gather(rejected).mean().item())
        metrics["rewards/margins"].append(gather(chosen - rejected).mean().item())
        metrics["rewards/accuracies"].append(gather((chosen > rejected).float()).mean().item())


def pair_rows(out: L.LossOutput, pair_id: torch.Tensor, step: int) -> list[dict]:
    """One row per pair of this batch: {'step', 'pair_id', 'h', 'grad_weight', and the loss's per-pair stats}."""
    n = pair_id.shape[0]
    cols = {"h": out.h, "grad_weight": out.grad_weight}
    cols |= {k: v for k, v in out.stats.items() if torch.is_tensor(v) and v.reshape(-1).shape[0] == n}
    vals = {k: v.detach().float().reshape(-1).cpu().tolist() for k, v in cols.items()}
    return [{"step": step, "pair_id": int(pid), **{k: v[i] for k, v in vals.items()}}
            for i, pid in enumerate(pair_id.tolist())]


class ApoTrainer(DPOTrainer):
    """`ApoTrainer(model, args=DPOConfig(...), loss_name="madpo", loss_kwargs={"beta": 0.1}, ...)`.

    `loss_name` is any key of `apo_utils.losses.LOSS_TABLE`; None keeps TRL's own `args.loss_type`; "auto" (the
    default, i.e. not given) trains `args.loss_type` with the kit's loss of that name ('sigmoid' is DPO, 'ipo'
    and 'robust' as TRL defines them) and refuses one the kit does not implement (`loss_from_config`).
    beta: `loss_kwargs['beta']`, else `args.beta` for losses with a reference, else the loss's own default
    (SimPO, gamma-SimPO, AMaPO: 2.0), logged either way. Datasets are checked before TRL sees them, and what
    `max_length` drops or cuts is logged. Metrics: see `log_loss_metrics`.
    Several processes (`accelerate launch`, `torchrun`): the losses that pool a batch statistic (beta-DPO,
    gamma-PO, AMaPO) pool that of the global batch, as in one process (`Objective`, `gather_rows`).
    """

    gather_batch_statistics = True  # False only to show what per-process statistics would do (tests)
    # Set to a list to record, for every training pair in every step, what the loss did to it (`pair_rows`).
    # Needs a `pair_id` column. This is how notebook 03 sees the margins gamma-PO gives flipped pairs.
    pair_log: list | None = None

    def __init__(self, *args, loss_name: str | None = "auto", loss_kwargs: dict | None = None, **kwargs):
        given = inspect.signature(DPOTrainer.__init__).bind_partial(None, *args, **kwargs).arguments
        self.objective = None  # the loss, its hyperparameters and state; None: TRL's own loss
        if loss_name is not None:
            config, loss_kwargs, derived = given.get("args"), dict(loss_kwargs or {}), loss_name == "auto"
            if derived:
                loss_name, loss_kwargs = loss_from_config(config, loss_kwargs)
            check_config_fits_the_loss(config, L.check_loss_name(loss_name), derived)
            self.objective = Objective(loss_name, **_choose_beta(loss_name, loss_kwargs, config))
        needs_margin = self.objective is not None and self.objective.needs_margin
        sizes = {}
        for split, ds in _splits(given):  # before TRL loads or tokenises anything
            validate_preferences(ds, require_margin=needs_margin, check_margin=needs_margin, require_prompt=False,
                                 where=split)
            if "margin" in ds.column_names and not needs_margin:
                log.info("%s: column 'margin' is not used by loss %r and is left out of the batches", split, loss_name)
            sizes[split] = len(ds)
        super().__init__(*args, **kwargs)
        release_process_group_at_exit(self)
        if self.objective is not None and getattr(self, "ld_alpha", None) is not None:
            raise ValueError("ld_alpha is not supported with apo losses; leave it unset")
        tokenised = dict(_splits({"train_dataset": self.train_dataset, "eval_dataset": self.eval_dataset}))
        report_truncation(sizes, tokenised, self.args.max_length, self.args.truncation_mode)
        c = self.data_collator
        if isinstance(c, MarginCollator):
            c.with_margin = needs_margin
        elif isinstance(c, DataCollatorForPreference):
            self.data_collator = MarginCollator(pad_token_id=c.pad_token_id, max_length=c.max_length,
                                                truncation_mode=c.truncation_mode,
                                                pad_to_multiple_of=c.pad_to_multiple_of, with_margin=needs_margin)

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        carry = ("margin", "pair_id") if self.objective is not None and self.objective.needs_margin else ("pair_id",)
        self._signature_columns = list(self._signature_columns) + [c for c in carry if c not in self._signature_columns]

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
                try:
                    self.objective.load_state_dict(read_json(state))
                except (ValueError, KeyError, TypeError, RuntimeError) as e:
                    raise ValueError(f"{state} is damaged ({type(e).__name__}: {e}); resume from an earlier "
                                     f"checkpoint, or delete this one") from None
        return super().train(resume_from_checkpoint, *args, **kwargs)

    # ------------------------------------------------------------------ loss

    def sequence_logps(self, model, inputs) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed completion log-probs, [chosen | rejected] halves of the batch, as TRL computes them."""
        completion_mask = inputs["completion_mask"]
        model_kwargs = {k: v for k, v in inputs.items() if k not in _NON_MODEL_KEYS}
        labels = inputs["input_ids"].masked_fill(completion_mask == 0, -100)
        outputs = model(**model_kwargs, use_cache=False, labels=labels, fused_lm_head=True)
        return outputs.log_probs[:, -(completion_mask.size(1) - 1):].sum(dim=1).chunk(2, dim=0)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        margin, pair_id = inputs.pop("margin", None), inputs.pop("pair_id", None)
        if self.objective is None:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        mode = "train" if self.model.training else "eval"
        pc, pr = self.sequence_logps(model, inputs)
        lc, lr = inputs["completion_mask"].sum(dim=1).clamp(min=1).float().chunk(2, dim=0)
        rc = rr = None
        if self.objective.needs_reference and self.precompute_ref_logps:
            rc, rr = inputs["ref_chosen_logps"], inputs["ref_rejected_logps"]
        elif self.objective.needs_reference:
            rc, rr = self._reference_logps(inputs)
        reference = {} if rc is None else {"reference": (rc, rr)}
        check_finite_logps(self.accelerator, pair_id, policy=(pc, pr), **reference)
        several = self.gather_batch_statistics and self.accelerator.num_processes > 1
        out = self.objective(pc, pr, rc, rr, margin=margin, chosen_lengths=lc, rejected_lengths=lr,
                             gather=partial(gather_rows, self.accelerator) if several else None,
                             update=(mode == "train"))
        log_loss_metrics(self._metrics[mode], self.accelerator.gather_for_metrics, out, pc, pr, rc, rr,
                         self.objective.hparams.get("beta", self.beta))
        if self.pair_log is not None and pair_id is not None and mode == "train":
            self.pair_log.extend(pair_rows(out, pair_id, self.state.global_step + 1))  # the optimizer step it feeds
        return (out.loss, {"h": out.h, "grad_weight": out.grad_weight}) if return_outputs else out.loss


    def _reference_logps(self, inputs) -> tuple[torch.Tensor, torch.Tensor]:
        """The reference's log-probs of the batch's pairs, each computed once: the reference (the frozen start, or
        the model with adapters off) gives a pair the same value in every run, so with `reference_cache` (a dict
        shared by the runs of one backbone and precision, see `policy_training.reference_cache`) a pair seen by
        an earlier run, seed or method costs nothing. On cpu with kept lower layers this was a quarter of a step."""
        model = self.ref_model if self.ref_model is not None else self.model
        cache = self.reference_cache
        if cache is None:
            return self.compute_ref_log_probs(model, inputs)
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        rows = [ids[b, mask[b].bool()].to("cpu", torch.int64).numpy().tobytes()
                + inputs["completion_mask"][b].sum().to("cpu").numpy().tobytes() for b in range(ids.shape[0])]
        half = len(rows) // 2
        keys = [(rows[b], rows[b + half]) for b in range(half)]
        if not all(k in cache for k in keys):
            rc, rr = self.compute_ref_log_probs(model, inputs)
            for k, c, r in zip(keys, rc.detach().to("cpu"), rr.detach().to("cpu")):
                cache[k] = (c, r)
            return rc, rr
        device = ids.device
        return (torch.stack([cache[k][0] for k in keys]).to(device), torch.stack([cache[k][1] for k in keys]).to(device))

    reference_cache: dict | None = None  # set by policy_training; None: the reference runs every step


class MarginRewardTrainer(RewardTrainer):
    """TRL's RewardTrainer with a choice of what a `margin` column means.

    margin_mode="none":   plain Bradley-Terry, any margin column ignored (MADPO step 1).
    margin_mode="offset": TRL's native -log sigma(r_w - r_l - margin).
    margin_mode="soft":   MMPO's soft target p = sigma(gamma_bt * margin), cross-entropy.
    """

    def __init__(self, *args, margin_mode: str = "none", gamma_bt: float = 1.0, **kwargs):
        if margin_mode not in ("none", "offset", "soft"):
            raise ValueError(f"margin_mode must be 'none', 'offset' or 'soft', got {margin_mode!r}")
        given = inspect.signature(RewardTrainer.__init__).bind_partial(None, *args, **kwargs).arguments
        uses_margin = margin_mode != "none"
        for split, ds in _splits(given):
            validate_preferences(ds, require_margin=uses_margin, check_margin=uses_margin, require_prompt=False,
                                 where=split)
        if not uses_margin:  # plain Bradley-Terry: a margin column is not read, so it must not fail the collator
            for split in ("train_dataset", "eval_dataset"):
                ds = kwargs.get(split)
                if hasattr(ds, "remove_columns") and "margin" in _columns(ds):
                    kwargs[split] = ds.remove_columns("margin")
        self.margin_mode = margin_mode
        self.gamma_bt = L._positive(gamma_bt, "gamma_bt")
        super().__init__(*args, **kwargs)
        release_process_group_at_exit(self)

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
