"""Policy, reference and reward-model backbones.

`smoke` uses a tiny random-init Gemma-3-shaped model and a byte-level tokenizer built here, so CI
needs neither the hub nor a download.
"""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import AutoModelForSequenceClassification, Gemma3ForCausalLM, Gemma3TextConfig, PreTrainedTokenizerFast

SPECIAL = ["<pad>", "<bos>", "<eos>"]


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


def tiny_config(tokenizer, hidden: int = 64, layers: int = 2) -> Gemma3TextConfig:
    return Gemma3TextConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, head_dim=hidden // 4, max_position_embeddings=1024,
        sliding_window=128, pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=True,
    )


def tiny_causal_lm(tokenizer, seed: int = 0, **kw) -> Gemma3ForCausalLM:
    """A random-init causal LM of a few hundred thousand parameters; the same seed gives the same weights."""
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
