"""A named loss with its hyperparameters checked up front, its running state, and its pooled batch statistic.

The functions in `losses.py` are pure. Two methods need memory across batches: beta-DPO keeps a
moving mean and std of reward gaps, gamma-PO a queue of recent gaps that anchors its margin
optimisation. Four pool a per-pair number over the batch (beta-DPO, gamma-PO, AMaPO); with several
processes that number must be gathered from all of them first. `Objective` does both, reading what
each loss needs from `losses.LOSS_TABLE`, so the trainer and the bandit simulation share it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch

from . import losses as L

# Inputs that come from the batch, not from the user's hyperparameters: kept in one place, next to the formulas.
_DATA_ARGS = frozenset(L.BATCH_INPUTS)


class Objective:
    """`Objective('madpo', beta=0.1)(pc, pr, rc, rr, margin=m)` -> LossOutput, updating state if any.

    Unknown names and hyperparameters raise ValueError at construction, naming the culprit, so a
    typo fails before any model is loaded. beta-DPO: `momentum` of the gap statistics (0.9) and
    `seed` of its sampling filter. gamma-PO: `queue_size` (2048) and `opt_size` (256) of the gap queue.
    """

    def __init__(self, name: str, *, momentum: float = 0.9, queue_size: int = 2048, opt_size: int = 256,
                 seed: int = 0, **hparams):
        self.name = L.check_loss_name(name)
        self.caps = L.capabilities(name)
        self.fn = self.caps.fn
        allowed = [p for p in inspect.signature(self.fn).parameters if p not in _DATA_ARGS and p != "_"]
        for key in hparams:
            if key not in allowed:
                raise ValueError(f"unknown hyperparameter {key!r} for loss {name!r}; it takes {sorted(allowed)}")
        self.hparams = hparams
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must lie in [0, 1), got {momentum!r}")
        if int(queue_size) < 1 or int(opt_size) < 1:
            raise ValueError("queue_size and opt_size must be >= 1")
        self.momentum = momentum
        self.opt_size = int(opt_size)
        self.gap_mean, self.gap_std = 0.0, 1.0  # beta-DPO running statistics (M0, sigma0)
        # gamma-PO's recent gaps, oldest first, as one float32 tensor: sampling the context from it costs a
        # randperm and an index, not a list-to-tensor copy of up to `queue_size` numbers every step.
        self.queue_size = int(queue_size)
        self.queue = torch.empty(0)
        self.generator = torch.Generator().manual_seed(seed)
        # Validate values once on a dummy batch, so beta <= 0 etc. fail now rather than mid-training.
        self._dry_run()

    @property
    def needs_reference(self) -> bool:
        return self.caps.reference

    @property
    def needs_margin(self) -> bool:
        return self.caps.margin

    def _dry_run(self):
        z = torch.zeros(2)
        one = torch.ones(2)
        self.fn(z, z, z, z, margin=z, chosen_lengths=one, rejected_lengths=one,
                generator=torch.Generator().manual_seed(0), **self.hparams)

    def __call__(self, pc, pr, rc=None, rr=None, *, margin=None, chosen_lengths=None, rejected_lengths=None,
                 gather: Callable | None = None, update: bool = True) -> L.LossOutput:
        """Compute the loss; `update=False` leaves the running state alone (evaluation).

        gather: in multi-process training, `gather(t) -> (rows of every process in process order, where this
        process's rows start, number of processes)`. A loss that pools a batch statistic then sees that of the
        global batch: every process computes the same statistics and draws the same random numbers as one
        process would on the global batch, and a masked loss (beta-DPO) is scaled so that the processes'
        average, which DDP takes, is the masked mean over the global batch."""
        gathered, offset, processes = None, 0, 1
        if gather is not None and self.caps.pooled:
            stat = L.batch_statistic(self.name, pc, pr, rc, rr, chosen_lengths=chosen_lengths,
                                     rejected_lengths=rejected_lengths, **self.hparams)
            gathered, offset, processes = gather(stat)
        kw = dict(self.hparams, margin=margin, chosen_lengths=chosen_lengths, rejected_lengths=rejected_lengths)
        if self.caps.pooled:
            kw[f"gathered_{self.caps.pooled}"] = gathered
        if self.caps.pooled == "gaps":
            kw["offset"] = offset
        if self.caps.state == "gap_stats":
            kw.update(gap_mean=self.gap_mean, gap_std=self.gap_std, generator=self.generator)
        elif self.caps.state == "gap_queue":
            kw["context"] = self._sample_context(pc if gathered is None else gathered)
        out = self.fn(pc, pr, rc, rr, **kw)
        if gathered is not None and out.mask is not None:
            kept = gather(out.mask.float())[0].sum().clamp_min(1.0)  # kept pairs of the global batch
            out.denominator = kept / processes
        if update:
            self._update(out, gathered)
        return out

    def _sample_context(self, pc) -> torch.Tensor | None:
        n_batch = pc.shape[0]
        k = min(len(self.queue), max(0, self.opt_size - n_batch))
        if k == 0:
            return None
        idx = torch.randperm(len(self.queue), generator=self.generator)[:k]
        return self.queue[idx].to(pc.device)

    def _update(self, out: L.LossOutput, gathered: torch.Tensor | None = None):
        if self.caps.state == "gap_stats":
            m = self.momentum
            self.gap_mean = m * self.gap_mean + (1 - m) * float(out.stats["gap_mean"])
            std = float(out.stats["gap_std"])
            if std > 0:
                self.gap_std = m * self.gap_std + (1 - m) * std
        elif self.caps.state == "gap_queue":
            gaps = out.stats["gaps"] if gathered is None else gathered  # every process keeps the global queue
            self.queue = torch.cat([self.queue, gaps.detach().float().cpu().reshape(-1)])[-self.queue_size:]

    def state_dict(self) -> dict:
        """Plain numbers only, so it can be saved as JSON next to a checkpoint (the sampler's RNG included,
        so a resumed run draws what the unbroken one would have)."""
        return {"gap_mean": self.gap_mean, "gap_std": self.gap_std, "queue": self.queue.tolist(),
                "generator": self.generator.get_state().tolist()}

    def load_state_dict(self, state: dict):
        self.gap_mean = float(state["gap_mean"])
        self.gap_std = float(state["gap_std"])
        self.queue = torch.tensor([float(x) for x in state["queue"]], dtype=torch.float32)[-self.queue_size:]
        if "generator" in state:
            self.generator.set_state(torch.tensor(state["generator"], dtype=torch.uint8))
