"""Train the top layers only, and run the frozen lower layers once per text instead of once per step.

With LoRA on the top K decoder layers, everything below them is frozen: for a given token sequence the
hidden state entering layer L = n_layers - K is the same for the policy, the reference (adapters off),
every method, seed and epoch. `FrozenLowerLayers` computes it once per distinct sequence, keeps it, and
while installed makes the model start at layer L from the kept state:

    lower = FrozenLowerLayers(peft_model, first_trained=L)   # LoRA only on layers >= L
    lower.precompute(sequences)                               # token-id lists, as the collator builds them
    with lower.installed():
        trainer.train()                                       # forward/backward through layers L.. only

Outside `installed()` the model is the ordinary model (generation, saving). A sequence that was not
precomputed is computed on first use. The kept states are exactly what the full forward computes (same
modules, same masks and positions), up to float rounding from a different batch composition; the tests
check the loss and gradients against the full model.

This is a different parametrisation from the papers' all-layer LoRA: say so wherever it is used.
Works for decoder stacks laid out as `model.layers` with right padding (TRL's collators pad on the right).
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn


# Kept states by (what, backbone, first trained layer): every model this process trains on one backbone shares them.
_SHARED: dict = {}


def shared_cache(*key) -> dict:
    """The kept-state dict for `key` (e.g. ('policy', backbone, L)); pass it as FrozenLowerLayers(cache=...)."""
    return _SHARED.setdefault(key, {})


_ATTRIBUTE = "_apo_frozen_lower"  # the one name this kit sets on a model it did not write


def attach(model, lower: "FrozenLowerLayers | None"):
    """Leave `lower` on a trained model, so that measuring it afterwards (log-probs of pairs, reward margins) runs
    the top layers only from the kept states. None attaches nothing."""
    if lower is not None:
        setattr(model, _ATTRIBUTE, lower)
    return model


def attached(model) -> "FrozenLowerLayers | None":
    """The FrozenLowerLayers a trainer left on `model` (`attach`), or None."""
    return getattr(model, _ATTRIBUTE, None)


class _Stop(Exception):
    """Raised by a hook to end a forward pass once the wanted layer has run."""

    def __init__(self, hidden):
        self.hidden = hidden


def _stop(module, args, output):
    raise _Stop(output[0] if isinstance(output, tuple) else output)


class _Skip(nn.Module):
    """Stands in for a frozen lower layer while the kept states are used: passes the hidden state through."""

    def forward(self, hidden_states, *args, **kwargs):
        return hidden_states


class _KeptStates(nn.Module):
    """Stands in for the token embedding: returns each row's kept hidden state at layer L (zeros on padding)."""

    def __init__(self, owner: "FrozenLowerLayers"):
        super().__init__()
        self._owner = [owner]  # a list, so the owner is not registered as a submodule

    def forward(self, input_ids):
        return self._owner[0]._lookup(input_ids)


def _text_model(model: nn.Module) -> nn.Module:
    """The module holding `embed_tokens` and `layers` inside a PEFT / causal-LM / classifier wrapper."""
    for m in model.modules():
        if hasattr(m, "embed_tokens") and isinstance(getattr(m, "layers", None), nn.ModuleList):
            return m
    raise ValueError(f"{type(model).__name__} has no decoder stack with `embed_tokens` and `layers`")


class FrozenLowerLayers:
    """Keep the hidden state entering layer `first_trained` for every sequence seen; see the module docstring.

    `cache` may be shared between instances on the same backbone (a dict): a notebook that trains many
    policies from one backbone computes each text's lower layers once in all.
    """

    def __init__(self, model: nn.Module, first_trained: int, cache: dict | None = None, batch_size: int = 16):
        self.text = _text_model(model)
        n = len(self.text.layers)
        if not (isinstance(first_trained, int) and 0 < first_trained < n):
            raise ValueError(f"first_trained must be a layer index in 1..{n - 1}, got {first_trained!r}")
        self.first_trained = first_trained
        self.cache = {} if cache is None else cache
        self.batch_size = batch_size
        self._mask = None
        self._installed = None
        frozen = [p for layer in self.text.layers[:first_trained] for p in layer.parameters() if p.requires_grad]
        frozen += [p for p in self.text.embed_tokens.parameters() if p.requires_grad]
        if frozen:
            raise ValueError(f"{len(frozen)} parameters below layer {first_trained} are trainable; their states cannot "
                             f"be kept. Put LoRA on the top layers only (layers_to_transform) and freeze the rest.")
        self.computed = 0  # sequences whose lower layers were run, for the record

    # ------------------------------------------------------------------ computing the kept states

    @torch.no_grad()
    def _run_lower(self, rows: list[list[int]]) -> list[torch.Tensor]:
        """Hidden states entering layer L for token-id rows, by the model's own forward stopped after layer L-1."""
        device = self.text.embed_tokens.weight.device
        out = []
        hook = self.text.layers[self.first_trained - 1].register_forward_hook(_stop)
        try:
            for s in range(0, len(rows), self.batch_size):
                chunk = rows[s : s + self.batch_size]
                width = max(len(r) for r in chunk)
                ids = torch.zeros(len(chunk), width, dtype=torch.long, device=device)
                mask = torch.zeros(len(chunk), width, dtype=torch.long, device=device)
                for i, r in enumerate(chunk):
                    ids[i, : len(r)] = torch.tensor(r, device=device)
                    mask[i, : len(r)] = 1
                try:
                    self.text(input_ids=ids, attention_mask=mask, use_cache=False)
                    raise RuntimeError("the stop hook did not fire")  # pragma: no cover
                except _Stop as stop:
                    hidden = stop.hidden
                out.extend(hidden[i, : len(r)].detach().clone() for i, r in enumerate(chunk))
        finally:
            hook.remove()
        self.computed += len(rows)
        return out

    def precompute(self, sequences, progress: bool = False):
        """Compute and keep the states of every distinct sequence not kept yet (longest first, to batch tightly)."""
        todo = {}
        for seq in sequences:
            key = self._key(torch.as_tensor(seq, dtype=torch.long))
            if key not in self.cache:
                todo[key] = list(seq)
        rows = sorted(todo.values(), key=len, reverse=True)
        if self._installed is not None:
            raise RuntimeError("precompute before installed(), not inside it")
        from tqdm.auto import tqdm

        for s in tqdm(range(0, len(rows), 256), desc="frozen layers", disable=not progress or not rows):
            chunk = rows[s : s + 256]
            for r, h in zip(chunk, self._run_lower(chunk)):
                self.cache[self._key(torch.as_tensor(r, dtype=torch.long))] = h
        return len(rows)

    @staticmethod
    def _key(ids: torch.Tensor) -> bytes:
        return ids.detach().to("cpu", torch.int64).numpy().tobytes()

    # ------------------------------------------------------------------ using them

    def _lookup(self, input_ids: torch.Tensor) -> torch.Tensor:
        mask = self._mask if self._mask is not None else torch.ones_like(input_ids)
        lengths = mask.sum(dim=1).tolist()
        if not bool((mask == (torch.arange(mask.shape[1], device=mask.device) < mask.sum(1, keepdim=True))).all()):
            raise ValueError("FrozenLowerLayers needs right-padded batches (real tokens first in every row)")
        keys = [self._key(input_ids[b, :n]) for b, n in enumerate(lengths)]
        missing = [b for b, k in enumerate(keys) if k not in self.cache]
        if missing:
            with self._uninstalled():
                for b, h in zip(missing, self._run_lower([input_ids[b, : lengths[b]].tolist() for b in missing])):
                    self.cache[keys[b]] = h
        first = self.cache[keys[0]]
        out = torch.zeros(input_ids.shape[0], input_ids.shape[1], first.shape[-1], dtype=first.dtype,
                          device=input_ids.device)
        for b, (k, n) in enumerate(zip(keys, lengths)):
            out[b, :n] = self.cache[k].to(input_ids.device)
        return out

    def _capture_mask(self, module, args, kwargs):
        mask = kwargs.get("attention_mask")
        self._mask = mask if isinstance(mask, torch.Tensor) and mask.dim() == 2 else None

    def _swap_in(self):
        t = self.text
        saved = (t.embed_tokens, [t.layers[i] for i in range(self.first_trained)])
        t.embed_tokens = _KeptStates(self)
        for i in range(self.first_trained):
            t.layers[i] = _Skip()
        hook = t.register_forward_pre_hook(self._capture_mask, with_kwargs=True)
        self._installed = (saved, hook)

    def _swap_out(self):
        (embed, lower), hook = self._installed
        hook.remove()
        self.text.embed_tokens = embed
        for i, layer in enumerate(lower):
            self.text.layers[i] = layer
        self._installed = None

    @contextlib.contextmanager
    def _uninstalled(self):
        mask = self._mask
        self._swap_out()
        try:
            yield
        finally:
            self._swap_in()
            self._mask = mask

    @contextlib.contextmanager
    def suspended(self):
        """The ordinary model for a moment, also while installed: sampling during training (a frontier checkpoint)
        feeds one token at a time, which kept states of whole sequences cannot serve."""
        if self._installed is None:
            yield self
            return
        with self._uninstalled():
            yield self

    @contextlib.contextmanager
    def installed(self):
        """Inside: the model starts at layer L from the kept states. Outside: the ordinary model."""
        if self._installed is not None:
            raise RuntimeError("already installed")
        self._swap_in()
        try:
            yield self
        finally:
            self._swap_out()
            self._mask = None


def training_sequences(dataset, max_length: int | None, truncation_mode: str = "keep_start") -> list[list[int]]:
    """The token rows TRL's preference collators build from a tokenised dataset: prompt + chosen and prompt +
    rejected (DPOTrainer), or chosen and rejected (RewardTrainer, whose rows hold the prompt already), cut to
    `max_length` as the DPO collator cuts them, so they can be precomputed before training."""
    rows = []
    prompts = dataset["prompt_ids"] if "prompt_ids" in dataset.column_names else [[]] * len(dataset)  # reward data
    for p, c, r in zip(prompts, dataset["chosen_ids"], dataset["rejected_ids"]):
        for seq in (p + c, p + r):
            if max_length is not None:
                seq = seq[:max_length] if truncation_mode == "keep_start" else seq[-max_length:]
            rows.append(seq)
    return rows
