"""Trim a causal LM's vocabulary to the tokens a study can meet: the cheapest big speed-up on a CPU.

Gemma-3-270M spends most of a training step on CPU in its 262,144-row output layer (and the
log-softmax over it), not in its 18 transformer layers. A study on IMDB-style English reviews uses a
few thousand of those tokens. `trim_vocabulary` keeps

* every token the study's texts are tokenised into (prompts, chosen and rejected responses),
* the `keep_first` lowest ids (SentencePiece orders pieces by merge priority, so these are the most
  common pieces: the trimmed model can still say ordinary words the data never used),
* the byte-fallback tokens `<0x00>`..`<0xFF>` and the special tokens,
* and every piece a kept token is merged from (recursively),

then renumbers them 0..K-1 and slices the embedding (tied with the output layer) to those rows.

Because every merge the full tokenizer applies to the study's texts survives, those texts tokenise to
exactly the same tokens as before, and each kept token keeps its embedding, so the trimmed model gives
the *same logits, up to the renormalisation over the kept tokens*, on the data. What changes: sampling
can only produce kept tokens. `kept_mass` measures how much probability the full model puts on them.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

from .cache import fingerprint
from .storage import atomic_write_json

INFO_FILE = "apo_vocab.json"


def _kept_ids(tokenizer_json: dict, used_ids: set[int], keep_first: int, keep_special: list[str]) -> list[int]:
    model = tokenizer_json["model"]
    if model.get("type") != "BPE":
        raise ValueError(f"vocabulary trimming supports BPE tokenizers only, not {model.get('type')!r}")
    vocab: dict[str, int] = model["vocab"]
    by_id = {i: t for t, i in vocab.items()}
    keep = {by_id[i] for i in used_ids if i in by_id}
    keep |= {t for t, i in vocab.items() if i < keep_first}
    keep |= {f"<0x{b:02X}>" for b in range(256)} & vocab.keys()
    keep |= set(keep_special) & vocab.keys()
    # Close under merges: a kept token must be buildable from kept pieces, through any merge that makes it.
    makers: dict[str, list[tuple[str, str]]] = {}
    for m in model["merges"]:
        a, b = m if isinstance(m, list) else m.split(" ", 1)
        makers.setdefault(a + b, []).append((a, b))
    todo = list(keep)
    while todo:
        t = todo.pop()
        for a, b in makers.get(t, ()):
            for piece in (a, b):
                if piece not in keep and piece in vocab:
                    keep.add(piece)
                    todo.append(piece)
    return sorted(vocab[t] for t in keep)


def _rewrite_tokenizer(tj: dict, old_to_new: dict[int, int]) -> dict:
    tj = json.loads(json.dumps(tj))  # deep copy
    model = tj["model"]
    kept = {t for t, i in model["vocab"].items() if i in old_to_new}
    model["vocab"] = {t: old_to_new[i] for t, i in model["vocab"].items() if i in old_to_new}
    merges = []
    for m in model["merges"]:
        a, b = m if isinstance(m, list) else m.split(" ", 1)
        if a in kept and b in kept and a + b in kept:
            merges.append(m)
    model["merges"] = merges
    tj["added_tokens"] = [dict(t, id=old_to_new[t["id"]]) for t in tj["added_tokens"] if t["id"] in old_to_new]

    def remap(node):
        if isinstance(node, dict):
            if "ids" in node and isinstance(node["ids"], list):
                node["ids"] = [old_to_new[i] for i in node["ids"]]
            for v in node.values():
                remap(v)
        elif isinstance(node, list):
            for v in node:
                remap(v)

    remap(tj.get("post_processor"))
    return tj


def trim_vocabulary(model, tokenizer, texts: list[str], out_dir, *, keep_first: int = 8192, log=print) -> Path:
    """Write a trimmed copy of (model, tokenizer) to a folder named by what it keeps; reuse it if present.

    `model` itself is left as it was (the copy is trimmed).

    The folder is written in a temporary sibling and renamed into place, so an interrupted trim leaves
    nothing half-written. Returns the folder, loadable with `from_pretrained` (safetensors only).
    """
    from transformers import PreTrainedTokenizerFast

    tj = json.loads(tokenizer.backend_tokenizer.to_str())
    used: set[int] = set()
    for i in range(0, len(texts), 512):
        for ids in tokenizer(texts[i : i + 512], add_special_tokens=True)["input_ids"]:
            used.update(ids)
    special = [t for t in tokenizer.all_special_tokens] + ["<unk>", "<start_of_turn>", "<end_of_turn>"]
    kept = _kept_ids(tj, used, keep_first, special)
    old_vocab = model.get_input_embeddings().weight.shape[0]
    key = fingerprint(model.config.name_or_path, old_vocab, kept)
    target = Path(out_dir) / f"trimmed-{len(kept)}-{key}"
    if (target / INFO_FILE).exists():
        return target
    old_to_new = {old: new for new, old in enumerate(kept)}
    new_tj = _rewrite_tokenizer(tj, old_to_new)

    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=target.parent, prefix=".trim-"))
    try:
        from tokenizers import Tokenizer

        new_tok = PreTrainedTokenizerFast(
            tokenizer_object=Tokenizer.from_str(json.dumps(new_tj)),
            **{k: getattr(tokenizer, k) for k in ("bos_token", "eos_token", "pad_token", "unk_token")
               if getattr(tokenizer, k, None) is not None},
            padding_side=tokenizer.padding_side,
        )
        # Same tokens for the study's texts (checked here, so a trimmed model never silently differs).
        for t in texts[:200]:
            a = [kept[i] for i in new_tok(t)["input_ids"]]
            b = tokenizer(t)["input_ids"]
            if a != b:
                raise RuntimeError(f"trimmed tokenizer splits {t[:60]!r} differently: {a[:12]} vs {b[:12]}")
        idx = torch.tensor(kept)
        model = copy.deepcopy(model)
        emb = model.get_input_embeddings()  # Gemma scales it in a subclass of nn.Embedding: swap the table only
        emb.weight = torch.nn.Parameter(emb.weight.data[idx].clone())
        emb.num_embeddings = len(kept)
        if getattr(emb, "padding_idx", None) is not None:
            emb.padding_idx = old_to_new.get(emb.padding_idx)
        if not model.config.tie_word_embeddings:
            head = model.get_output_embeddings()
            head.weight = torch.nn.Parameter(head.weight.data[idx].clone())
            head.out_features = len(kept)
        else:
            model.tie_weights()
        model.config.vocab_size = len(kept)
        for attr in ("pad_token_id", "bos_token_id", "eos_token_id"):
            for cfg in (model.config, model.generation_config):
                v = getattr(cfg, attr, None)
                if isinstance(v, int):
                    setattr(cfg, attr, old_to_new[v])
                elif isinstance(v, list):
                    setattr(cfg, attr, [old_to_new[x] for x in v if x in old_to_new])
        out = work / "model"
        model.save_pretrained(out, safe_serialization=True)
        new_tok.save_pretrained(out)
        atomic_write_json(out / INFO_FILE, {"source": model.config.name_or_path, "vocab_before": old_vocab,
                                            "vocab_after": len(kept), "keep_first": keep_first,
                                            "corpus_texts": len(texts), "corpus_tokens": len(used)})
        if target.exists():
            shutil.rmtree(target)
        os.replace(out, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log(f"vocabulary trimmed: {old_vocab:,} -> {len(kept):,} tokens ({len(used):,} used by {len(texts)} texts)")
    return target


@torch.no_grad()
def kept_mass(model, tokenizer, kept_tokens: list[str], prompts: list[str], max_new_tokens: int = 16) -> float:
    """Mean probability the *full* model gives to the kept tokens at each step of its own samples.

    1.0 would mean trimming never changes what the model samples; the rest is the share of its
    probability that the trimmed model must redistribute over the kept tokens.
    """
    ids = tokenizer.convert_tokens_to_ids(kept_tokens)
    mask = torch.zeros(model.get_output_embeddings().weight.shape[0], dtype=torch.bool)
    mask[torch.tensor(ids)] = True
    enc = tokenizer(prompts, return_tensors="pt", padding=True)
    out = model.generate(**enc, do_sample=True, max_new_tokens=max_new_tokens, output_logits=True,
                         return_dict_in_generate=True, pad_token_id=tokenizer.pad_token_id)
    probs = torch.stack([torch.softmax(x.float(), -1)[:, mask].sum(-1) for x in out.logits])
    return float(probs.mean())


def study_backbone(policy: str, trim_vocab: int | None, texts: list[str], log=print) -> str:
    """The backbone every method of a study starts from: `policy`, or its vocabulary-trimmed copy (cpu profile).

    Trimming is skipped for the tiny smoke model (its vocabulary is already small).
    """
    from .env import cache_dir
    from .models import load_causal_lm

    if trim_vocab is None or policy == "tiny":
        return policy
    model, tok, _ = load_causal_lm(policy, log=lambda *_: None)
    return str(trim_vocabulary(model, tok, texts, cache_dir() / "trimmed", keep_first=trim_vocab, log=log))
