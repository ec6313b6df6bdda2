"""The sentiment preference pipeline on the smoke model: prompts, generation (kill and resume), scorers,
pairs, quality levels and the reward model of MADPO step 1."""

import dataclasses

import numpy as np
import pytest

from apo_utils import env, models, profiles, reward_model
from apo_utils.data import load_pairs, make_pairs, pairs_path, save_pairs, split_pairs
from apo_utils.generation import generate
from apo_utils.lora_run import RunSettings
from apo_utils.prompts import load_prompts, offline_prompts
from apo_utils.reward_model import margin_quality, reward_margins
from apo_utils.ground_truth import ClassifierScorer, VaderScorer, make_scorer
from apo_utils.tiny import tiny_causal_lm, tiny_reward_model, tiny_tokenizer, tiny_word_tokenizer


@pytest.fixture(scope="module")
def tiny():
    tok = tiny_word_tokenizer()
    return tiny_causal_lm(tok, seed=0), tok


def train_reward_model(rows, backbone, folder, val_rows=None, eval_every=20, patience=3, **kw):
    """reward_model.train_reward_model, called with the run's settings as plain keywords (as these tests are written;
    the defaults the keyword form had): RunSettings fields become the typed settings, val_rows an EarlyStopping."""
    fields = {f.name for f in dataclasses.fields(RunSettings)}
    defaults = dict(epochs=1.0, batch_size=16, lr=1e-4, lora_r=16, max_length=256, seed=0)
    settings = RunSettings(**{**defaults, **{k: kw.pop(k) for k in list(kw) if k in fields}})
    stopping = None if val_rows is None else reward_model.EarlyStopping(val_rows, eval_every, patience)
    return reward_model.train_reward_model(rows, backbone, folder, settings, early_stopping=stopping, **kw)


def test_offline_prompts_are_distinct_deterministic_and_say_where_they_come_from():
    a, b = offline_prompts(300, seed=1), offline_prompts(300, seed=1)
    assert a == b and len(set(a)) == 300 and a != offline_prompts(300, seed=2)
    with pytest.raises(ValueError, match="1000 openings"):
        offline_prompts(5000)
    prompts, prov = load_prompts("auto", 10, log=lambda *_: None)  # HF_HUB_OFFLINE=1 in tests
    assert len(prompts) == 10 and "offline" in prov["prompts"] and "not IMDB" in prov["prompts"]
    with pytest.raises(ValueError, match="prompt source"):
        load_prompts("reddit", 3)


def test_model_sources_fall_back_offline_and_reject_unknown_names(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert env.hub_reachable() is False
    assert models.resolve_source("google/gemma-3-270m")[0] == "offline"
    assert models.resolve_source("tiny") == ("tiny", None)
    with pytest.raises(ValueError, match="unknown model 'llama'"):
        models.resolve_source("llama")
    tok = tiny_word_tokenizer()
    text = "On a rainy Sunday afternoon, I watched this film and it was great ."
    assert tok.decode(tok(text)["input_ids"]) == text


def test_generation_is_seeded_and_a_killed_run_resumes_without_losing_batches(tiny, tmp_path):
    model, tok = tiny
    prompts = offline_prompts(10, seed=0)
    kw = dict(n_samples=2, max_new_tokens=8, batch_size=4, seed=3, progress=False)
    ref = generate(model, tok, prompts, **kw)
    assert len(ref) == 10 and all(len(s) == 2 and s[0].strip() for s in ref)
    assert ref[0][0].startswith(" ")  # the space between prompt and continuation survives decoding

    real = model.generate
    calls = {"n": 0}

    def dies_on_third_batch(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("killed")
        return real(*a, **k)

    model.generate = dies_on_third_batch
    try:
        with pytest.raises(KeyboardInterrupt):
            generate(model, tok, prompts, cache_dir=tmp_path, key={"m": "tiny"}, **kw)
        calls["n"] = 10  # from now on never dies; count the batches a resumed run computes
        out = generate(model, tok, prompts, cache_dir=tmp_path, key={"m": "tiny"}, **kw)
    finally:
        model.generate = real
    assert out == ref  # identical to an uninterrupted run
    assert calls["n"] == 10 + 3  # 5 batches in all: 2 were on disk, 3 recomputed
    with pytest.raises(ValueError, match="needs a `key`"):
        generate(model, tok, prompts, cache_dir=tmp_path, **kw)


def test_classifier_scorer_reads_a_local_three_class_model(tmp_path):
    tok = tiny_tokenizer()
    clf = tiny_reward_model(tok, seed=0)
    clf.config.num_labels = 3
    clf.config.id2label = {0: "negative", 1: "neutral", 2: "positive"}
    clf.config.label2id = {v: k for k, v in clf.config.id2label.items()}
    from transformers import AutoModelForSequenceClassification

    clf = AutoModelForSequenceClassification.from_config(clf.config)
    clf.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    s = ClassifierScorer(str(tmp_path))
    out = s(["a fine film", "a dull film", "ok"], progress=False)
    assert len(out) == 3 and all(-3 <= x <= 3 for x in out)  # the MADPO authors' (P(positive) - 0.5) x 6
    assert s.label_scale == 1.0
    assert isinstance(make_scorer("auto", log=lambda *_: None), VaderScorer)  # offline: VADER


def test_pairs_quality_levels_and_saving(tmp_path):
    prompts = [f"p{i}" for i in range(200)]
    rng = np.random.default_rng(0)
    samples = [[f" s{i}-{k}" for k in range(4)] for i in range(200)]
    scores = rng.uniform(-1, 1, size=(200, 4)).tolist()
    high = make_pairs(prompts, samples, scores, "high", label_scale=4.0, seed=0)
    low = make_pairs(prompts, samples, scores, "low", label_scale=4.0, seed=0)
    assert np.mean([abs(r["true_margin"]) for r in low]) > 1.5 * np.mean([abs(r["true_margin"]) for r in high])
    assert np.mean([r["label_correct"] for r in low]) > np.mean([r["label_correct"] for r in high]) > 0.5
    for r in high:
        assert r["label_correct"] == (r["true_margin"] >= 0)
        assert {r["chosen"], r["rejected"]} == {samples[int(r["prompt"][1:])][0], samples[int(r["prompt"][1:])][1]}
    assert make_pairs(prompts, samples, scores, "high", seed=0) == make_pairs(prompts, samples, scores, "high", seed=0)
    with pytest.raises(ValueError, match="unknown quality"):
        make_pairs(prompts, samples, scores, "medium")
    train, test = split_pairs(high, 0.25, seed=0)
    assert len(test) == 50 and len(train) == 150 and not {r["prompt"] for r in train} & {r["prompt"] for r in test}
    path = pairs_path(tmp_path, "smoke", "high", "train")
    save_pairs([dict(r, margin=0.1) for r in train], path)
    assert load_pairs(path, require_margin=True)[0]["margin"] == 0.1
    with pytest.raises(FileNotFoundError, match="run notebooks/01"):
        load_pairs(pairs_path(tmp_path, "cpu", "low", "test"))


def _scored_samples(n_prompts: int, n_samples: int, max_new_tokens: int):
    """(prompts, samples, VADER scores) from the tiny policy: word salad with a known ground truth."""
    tok = tiny_word_tokenizer()
    policy = tiny_causal_lm(tok, seed=0)
    prompts = offline_prompts(n_prompts, seed=0)
    samples = generate(policy, tok, prompts, n_samples=n_samples, max_new_tokens=max_new_tokens, batch_size=64,
                       progress=False)
    vader = VaderScorer()
    return prompts, samples, [vader([p + y for y in ys], progress=False) for p, ys in zip(prompts, samples)]


def test_reward_model_learns_the_scorer_and_is_reused(tmp_path):
    """On word salad scored by VADER, a tiny reward model's margins must track the true margins."""
    d = profiles.get("smoke").data
    rows = make_pairs(*_scored_samples(256, 4, 24), "low", label_scale=d.label_scale, seed=0)
    train, test = split_pairs(rows, 0.25, seed=0)
    rm, rtok, info = train_reward_model(train, "tiny", tmp_path, epochs=d.rm_epochs, batch_size=16, lr=d.rm_lr,
                                        lora_r=0, progress=False, log=lambda *_: None)
    q = margin_quality(reward_margins(rm, rtok, test), test)
    assert q["truth_accuracy"] > 0.6 and q["pearson"] > 0.2, q
    again, _, info2 = train_reward_model(train, "tiny", tmp_path, epochs=d.rm_epochs, batch_size=16, lr=d.rm_lr,
                                         lora_r=0, progress=False, log=lambda *_: None)
    assert info2["reused"] and np.allclose(reward_margins(again, rtok, test), reward_margins(rm, rtok, test))
    # MMPO's soft targets: a separate model (its own key), which learns from margins where labels alone disagree
    soft_rows = [dict(r, margin=r["true_margin"]) for r in train]
    soft, _, info3 = train_reward_model(soft_rows, "tiny", tmp_path, epochs=d.rm_epochs, batch_size=16, lr=d.rm_lr,
                                        lora_r=0, progress=False, log=lambda *_: None, margin_mode="soft",
                                        gamma_bt=d.label_scale)
    assert not info3["reused"] and info3["key"] != info["key"] and info3["margin_mode"] == "soft"
    qs = margin_quality(reward_margins(soft, rtok, test), test)
    assert qs["truth_accuracy"] > 0.6 and qs["pearson"] > 0.2, qs
    with pytest.raises(ValueError, match="train_rows: missing column 'margin'"):
        train_reward_model(train, "tiny", tmp_path, lora_r=0, progress=False, log=lambda *_: None, margin_mode="soft")


def test_reward_model_trains_without_activation_checkpointing(tmp_path, monkeypatch):
    """TRL's RewardConfig asks for it; it only recomputes activations, so train_reward_model turns it off."""
    seen = []
    original = reward_model.MarginRewardTrainer.__init__

    def init(self, *a, **k):
        seen.append(k["args"])
        original(self, *a, **k)

    monkeypatch.setattr(reward_model.MarginRewardTrainer, "__init__", init)
    rows = [{"prompt": f"Film {i} was", "chosen": " great and lovely", "rejected": " dull"} for i in range(16)]
    train_reward_model(rows, "tiny", tmp_path, epochs=1, batch_size=8, lr=1e-3, lora_r=0, progress=False,
                       log=lambda *_: None)
    assert len(seen) == 1 and seen[0].gradient_checkpointing is False


def test_reward_model_stops_early_on_validation_and_keeps_its_best_weights(tmp_path):
    """A learning rate that over-fits 48 pairs: validation loss rises, training stops before max_steps, and the
    returned model is the best one seen (its validation loss is the curve's minimum), also when reloaded."""
    rows = make_pairs(*_scored_samples(96, 2, 16), "high", seed=0)
    train, val = split_pairs(rows, 0.5, seed=0)
    kw = dict(epochs=40, batch_size=8, lr=3e-3, lora_r=0, progress=False, log=lambda *_: None, val_rows=val,
              eval_every=3, patience=2)
    rm, rtok, info = train_reward_model(train, "tiny", tmp_path, **kw)
    curve = info["curve"]
    assert info["stopped_early"] and info["stopped_step"] < info["max_steps"]
    assert curve[0]["step"] == 0 and len(curve) >= 3
    best = min(curve, key=lambda c: c["val_loss"])
    assert info["best_step"] == best["step"]
    d = reward_margins(rm, rtok, val)
    assert np.mean(np.logaddexp(0, -d)) == pytest.approx(best["val_loss"], rel=1e-5)  # the kept weights are the best
    again, _, info2 = train_reward_model(train, "tiny", tmp_path, **kw)
    assert info2["reused"] and info2["curve"] == curve and np.allclose(reward_margins(again, rtok, val), d)


def test_reward_model_on_top_layers_matches_its_full_forward(tmp_path):
    """LoRA on the top layer only, trained through the kept lower states: the adapters sit up there, and the
    ordinary model with those weights ranks the pairs as it was taught."""
    rows = [{"prompt": f"Film {i} was", "chosen": " great and lovely", "rejected": " dull and bad"} for i in range(24)]
    rm, rtok, info = train_reward_model(rows, "tiny", tmp_path, epochs=2, batch_size=8, lr=5e-3, lora_r=4,
                                        progress=False, log=lambda *_: None, top_layers=1)
    lora = [n for n, p in rm.named_parameters() if "lora_" in n]
    assert lora and all(".layers.1." in n for n in lora)
    assert np.mean(reward_margins(rm, rtok, rows) > 0) > 0.9  # learnt the obvious ordering
    with pytest.raises(ValueError, match="top_layers needs LoRA"):
        train_reward_model(rows, "tiny", tmp_path / "b", lora_r=0, progress=False, log=lambda *_: None, top_layers=1)


def test_reward_margins_without_a_pad_token_says_what_to_set():
    """A tokenizer without a pad token used to fail deep in the collator with `full(): ... NoneType`."""
    rm, tok, _ = models.load_reward_model("tiny", seed=0, log=lambda *_: None)
    tok.pad_token = None
    rows = [{"prompt": "Film was", "chosen": " great", "rejected": " dull"}] * 2
    with pytest.raises(ValueError, match=r"reward_margins needs a pad token.*tokenizer.pad_token = tokenizer.eos_token"):
        reward_margins(rm, tok, rows)
