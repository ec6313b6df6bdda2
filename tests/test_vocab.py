"""Vocabulary trimming keeps the data's tokenisation and log-probabilities exactly (apo_utils.vocab)."""

import json

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers, decoders
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast

from apo_utils.models import load_causal_lm
from apo_utils.prompts import offline_prompts
from apo_utils.tiny import tiny_causal_lm, tiny_word_tokenizer
from apo_utils.vocab import INFO_FILE, kept_mass, trim_vocabulary

TRAIN_TEXT = offline_prompts(400, seed=0)
STUDY_TEXT = [p + " and the acting was wonderful, though the ending dragged." for p in offline_prompts(30, seed=5)]


@pytest.fixture(scope="module")
def bpe_model():
    """A real BPE tokenizer (trained here, a few hundred merges) and a tiny random model over it."""
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(TRAIN_TEXT, trainers.BpeTrainer(vocab_size=600, special_tokens=["<pad>", "<bos>", "<eos>",
                                                                                             "<unk>"]))
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<bos>", eos_token="<eos>",
                                 unk_token="<unk>", padding_side="left")
    return tiny_causal_lm(hf, seed=0).eval(), hf


def test_trim_keeps_tokens_and_logprobs(bpe_model, tmp_path):
    model, tok = bpe_model
    full_logits = [model(**tok(t, return_tensors="pt")).logits[0] for t in STUDY_TEXT[:5]]
    out = trim_vocabulary(model, tok, STUDY_TEXT, tmp_path, keep_first=50, log=lambda *_: None)
    info = json.loads((out / INFO_FILE).read_text())
    assert info["vocab_after"] < info["vocab_before"] == len(tok)
    small = AutoModelForCausalLM.from_pretrained(out).eval()
    stok = AutoTokenizer.from_pretrained(out)
    kept = tok.convert_tokens_to_ids(stok.convert_ids_to_tokens(list(range(len(stok)))))
    assert kept == sorted(kept) and len(kept) == info["vocab_after"]
    for text, logits in zip(STUDY_TEXT[:5], full_logits):
        ids_small = stok(text)["input_ids"]
        assert [kept[i] for i in ids_small] == tok(text)["input_ids"]  # the same tokens, renumbered
        assert stok.decode(ids_small, skip_special_tokens=True) == tok.decode(tok(text)["input_ids"],
                                                                              skip_special_tokens=True)
        got = torch.log_softmax(small(torch.tensor([ids_small])).logits[0], -1)
        want = torch.log_softmax(logits[:, kept], -1)  # the full model renormalised over the kept tokens
        assert torch.allclose(got, want, atol=1e-5)


def test_trim_is_reused_and_loads_as_a_backbone(bpe_model, tmp_path):
    model, tok = bpe_model
    first = trim_vocabulary(model, tok, STUDY_TEXT, tmp_path, keep_first=50, log=lambda *_: None)
    stamp = (first / "model.safetensors").stat().st_mtime_ns
    again = trim_vocabulary(model, tok, STUDY_TEXT, tmp_path, keep_first=50, log=lambda *_: None)
    assert again == first and (first / "model.safetensors").stat().st_mtime_ns == stamp
    assert not list(tmp_path.glob(".trim-*"))  # no half-written folder left behind
    m, t, prov = load_causal_lm(str(first), log=lambda *_: None)
    assert "vocabulary trimmed" in prov["model"] and prov["vocab"]["vocab_after"] == len(t)
    assert m.get_input_embeddings().weight.shape[0] == len(t)


def test_kept_mass_between_zero_and_one(bpe_model):
    model, tok = bpe_model
    words = tok.convert_ids_to_tokens(list(range(100)))
    torch.manual_seed(0)
    m = kept_mass(model, tok, words, STUDY_TEXT[:4], max_new_tokens=4)
    assert 0.0 < m < 1.0
    assert kept_mass(model, tok, tok.convert_ids_to_tokens(list(range(len(tok)))), STUDY_TEXT[:2], 3) == \
        pytest.approx(1.0, abs=1e-5)


def test_trim_rejects_non_bpe(tmp_path):
    tok = tiny_word_tokenizer()
    with pytest.raises(ValueError, match="BPE"):
        trim_vocabulary(tiny_causal_lm(tok), tok, ["the movie"], tmp_path, log=lambda *_: None)
