"""train_policy / evaluate_policy on the smoke model: trains LoRA adapters, reuses them, measures reward and KL."""

import numpy as np

from apo_utils import models
from apo_utils.data import make_pairs
from apo_utils.generation import generate
from apo_utils.prompts import offline_prompts
from apo_utils.rewards import VaderScorer
from apo_utils.study import completion_logprobs, evaluate_policy, train_policy


def _pairs(n=64):
    tok = models.tiny_word_tokenizer()
    policy = models.tiny_causal_lm(tok, seed=0)
    prompts = offline_prompts(n, seed=0)
    samples = generate(policy, tok, prompts, n_samples=4, max_new_tokens=12, batch_size=64, progress=False)
    vader = VaderScorer()
    scores = [vader([p + y for y in ys], progress=False) for p, ys in zip(prompts, samples)]
    rows = make_pairs(prompts, samples, scores, "low", seed=0)
    return [dict(r, margin=r["true_margin"]) for r in rows]


def test_train_evaluate_and_reuse(tmp_path):
    rows = _pairs()
    log = lambda *_: None  # noqa: E731
    model, tok, info = train_policy("madpo", rows, "tiny", tmp_path, loss_kwargs={"beta": 0.5}, epochs=2,
                                    batch_size=8, lr=5e-3, lora_r=8, log=log)
    assert not info["reused"] and len(info["log"]) >= 8
    assert info["log"][-1]["apo/weight"] > 0  # MADPO's weight reached the logs through the margin column
    prompts = [r["prompt"] for r in rows[:16]]
    ev = evaluate_policy(model, tok, prompts, VaderScorer(), key={"m": info["key"]}, cache_dir=tmp_path / "ev",
                         max_new_tokens=12, batch_size=16)
    assert ev["n"] == 16 and -1 <= ev["reward"] <= 1 and ev["reward_se"] > 0
    assert ev["kl"] > 0  # the trained adapters moved the policy away from the reference
    again, _, info2 = train_policy("madpo", rows, "tiny", tmp_path, loss_kwargs={"beta": 0.5}, epochs=2,
                                   batch_size=8, lr=5e-3, lora_r=8, log=log)
    assert info2["reused"]
    ys = [" great film"] * 4
    np.testing.assert_allclose(completion_logprobs(again, tok, prompts[:4], ys),
                               completion_logprobs(model, tok, prompts[:4], ys), rtol=1e-5)
    with again.disable_adapter():
        ref = completion_logprobs(again, tok, prompts[:4], ys)
    assert not np.allclose(ref, completion_logprobs(again, tok, prompts[:4], ys))
