"""The tiny smoke model: a random-init Gemma-3-shaped model over a word-level review vocabulary built here.

Its samples are word salad, but word salad whose VADER sentiment varies, so every step of the pipeline has
something real to measure in seconds (the `smoke` profile and the tests). `tiny_tokenizer`, byte-level,
serves tests on any text. Kept out of `models` (which loads it under the name 'tiny') so that it needs
only the prompts' words: tests build it without the hub and offline loaders.
"""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import (
    AutoModelForSequenceClassification,
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    PreTrainedTokenizerFast,
)

from .prompts import OPENINGS, SETTINGS

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
