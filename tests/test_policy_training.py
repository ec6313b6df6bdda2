"""train_policy / evaluate_policy / train_and_evaluate on the smoke model: trains LoRA adapters, reuses them, measures reward and KL."""

import dataclasses

import numpy as np
import pytest
import torch

from apo_utils.data import make_pairs
from apo_utils.generation import generate
from apo_utils.prompts import offline_prompts
from apo_utils.ground_truth import VaderScorer
from apo_utils.evaluation import completion_logprobs, evaluate_policy
from apo_utils import policy_training
from apo_utils.lora_run import RunSettings
from apo_utils.tiny import tiny_causal_lm, tiny_word_tokenizer

_SETTINGS = {f.name for f in dataclasses.fields(RunSettings)}


def train_policy(method, rows, backbone, folder, track=None, track_every=None, track_key=None, **kw):
    """policy_training.train_policy, called with the run's settings as plain keywords (as these tests are written):
    RunSettings fields become the typed settings, track/track_every/track_key a Tracking."""
    settings = RunSettings(**{k: kw.pop(k) for k in list(kw) if k in _SETTINGS})
    tracking = None if track is None else policy_training.Tracking(track, track_every, track_key)
    return policy_training.train_policy(method, rows, backbone, folder, settings, track=tracking, **kw)


def _pairs(n=64):
    tok = tiny_word_tokenizer()
    policy = tiny_causal_lm(tok, seed=0)
    prompts = offline_prompts(n, seed=0)
    samples = generate(policy, tok, prompts, n_samples=4, max_new_tokens=12, batch_size=64, progress=False)
    vader = VaderScorer()
    scores = [vader([p + y for y in ys], progress=False) for p, ys in zip(prompts, samples)]
    rows = make_pairs(prompts, samples, scores, "low", seed=0)
    return [dict(r, margin=r["true_margin"]) for r in rows]


KILL_KW = dict(loss_kwargs={"beta": 0.5}, epochs=1, batch_size=4, lr=5e-3, lora_r=8, log=lambda *_: None, save_steps=2)


def _unbroken_and_killed(rows, tmp_path):
    """An unbroken DPO run in tmp_path/unbroken, and the same run killed after step 5 (checkpoints 2 and 4) in
    tmp_path/killed. Returns the unbroken run's (model, info)."""
    from transformers import TrainerCallback

    class Kill(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == 5:
                raise KeyboardInterrupt("simulated kill")

    ref, _, info_ref = train_policy("dpo", rows, "tiny", tmp_path / "unbroken", **KILL_KW)
    with pytest.raises(KeyboardInterrupt):
        train_policy("dpo", rows, "tiny", tmp_path / "killed", callbacks=[Kill()], **KILL_KW)
    return ref, info_ref


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
    assert ev["start_logp_per_token"] < 0 and 0 < ev["distinct_2"] <= 1  # beside the reward: what VADER cannot buy
    # per-prompt rewards (for paired comparisons) average to the reward; KL from the first prompts only on request
    assert len(ev["prompt_rewards"]) == 16 and np.isclose(np.mean(ev["prompt_rewards"]), ev["reward"])
    two = evaluate_policy(model, tok, prompts, VaderScorer(), key={"m": info["key"]}, cache_dir=tmp_path / "ev",
                          max_new_tokens=12, batch_size=16, n_samples=2, seed=1, kl_prompts=4)
    assert two["kl_n"] == 8 and two["n"] == 32 and len(two["prompt_rewards"]) == 16
    again, _, info2 = train_policy("madpo", rows, "tiny", tmp_path, loss_kwargs={"beta": 0.5}, epochs=2,
                                   batch_size=8, lr=5e-3, lora_r=8, log=log)
    assert info2["reused"]
    ys = [" great film"] * 4
    np.testing.assert_allclose(completion_logprobs(again, tok, prompts[:4], ys),
                               completion_logprobs(model, tok, prompts[:4], ys), rtol=1e-5)
    with again.disable_adapter():
        ref = completion_logprobs(again, tok, prompts[:4], ys)
    assert not np.allclose(ref, completion_logprobs(again, tok, prompts[:4], ys))


def test_training_killed_midway_resumes_to_the_same_adapters(tmp_path):
    """A kill after step 5 (checkpoint at step 4) resumes there and ends exactly where an unbroken run ends."""
    rows, kw = _pairs(), KILL_KW
    ref, info_ref = _unbroken_and_killed(rows, tmp_path)
    run_dirs = list((tmp_path / "killed").glob("dpo-*"))
    assert len(run_dirs) == 1 and not (run_dirs[0] / "DONE").exists()
    assert (run_dirs[0] / "trainer" / "checkpoint-4" / "trainer_state.json").exists()
    said = []
    resumed, _, info = train_policy("dpo", rows, "tiny", tmp_path / "killed", **{**kw, "log": said.append})
    assert not info["reused"] and said == ["resuming dpo from checkpoint-4"]
    # one log entry per step, as in the unbroken run (steps 1-4 from the checkpoint, 5 on from the resumed run)
    assert [h["step"] for h in info["log"]] == [h["step"] for h in info_ref["log"]]
    np.testing.assert_allclose([h["loss"] for h in info["log"]], [h["loss"] for h in info_ref["log"]], rtol=1e-5)
    a = {k: v for k, v in ref.state_dict().items() if "lora" in k}
    b = {k: v for k, v in resumed.state_dict().items() if "lora" in k}
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert not (run_dirs[0] / "trainer").exists()  # checkpoints removed once the adapters are saved


def test_measurements_during_training_and_the_per_pair_log_survive_a_kill(tmp_path):
    """train_policy's `track` runs at step 0, every k steps and at the end; `log_pairs` records every pair at the
    step it was used; a run killed mid-way resumes with both intact and equal to an unbroken run's."""
    from transformers import TrainerCallback

    from apo_utils.ranking import pair_logps

    class Kill(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == 5:
                raise KeyboardInterrupt("simulated kill")

    rows = [dict(r, pair_id=i) for i, r in enumerate(_pairs(32))]
    probe = rows[:6]
    track = lambda model, tok: {"probe": {k: v.tolist() for k, v in pair_logps(model, tok, probe).items()}}  # noqa: E731
    kw = dict(loss_kwargs={"beta": 0.5}, epochs=1, batch_size=4, lr=5e-3, lora_r=8, log=lambda *_: None, save_steps=2,
              track=track, track_every=3, log_pairs=True)
    _, _, ref = train_policy("gamma_dpo", rows, "tiny", tmp_path / "unbroken", **kw)
    n_steps = len(rows) // 4
    assert [e["step"] for e in ref["track"]] == [0, 3, 6, n_steps]
    assert np.allclose(ref["track"][0]["probe"]["chosen"], ref["track"][0]["probe"]["chosen"])
    assert ref["track"][0]["probe"]["chosen"] != ref["track"][-1]["probe"]["chosen"]  # training moved the policy
    logged = sorted(e["pair_id"] for e in ref["pair_log"])
    assert logged == list(range(len(rows)))  # one epoch: every pair exactly once
    assert {"step", "pair_id", "h", "grad_weight", "gamma", "gaps"} <= set(ref["pair_log"][0])
    with pytest.raises(KeyboardInterrupt):
        train_policy("gamma_dpo", rows, "tiny", tmp_path / "killed", callbacks=[Kill()], **kw)
    _, _, res = train_policy("gamma_dpo", rows, "tiny", tmp_path / "killed", **kw)
    assert [e["step"] for e in res["track"]] == [e["step"] for e in ref["track"]]
    for a, b in zip(res["track"], ref["track"]):
        np.testing.assert_allclose(a["probe"]["chosen"], b["probe"]["chosen"], rtol=1e-5)
    key = lambda e: (e["step"], e["pair_id"])  # noqa: E731
    assert sorted(map(key, res["pair_log"])) == sorted(map(key, ref["pair_log"]))
    by = {key(e): e for e in ref["pair_log"]}
    for e in res["pair_log"]:
        assert e["gamma"] == pytest.approx(by[key(e)]["gamma"], rel=1e-4, abs=1e-6)
    with pytest.raises(ValueError, match="pair_id"):
        train_policy("dpo", [{k: v for k, v in r.items() if k != "pair_id"} for r in rows], "tiny",
                     tmp_path / "no_id", **{**kw, "track": None})


def test_reference_pass_only_for_losses_that_read_it(tmp_path, monkeypatch):
    """SimPO-style losses never look at the reference, so train_policy skips TRL's pass that precomputes it."""
    from apo_utils.trainer import ApoTrainer

    calls, configs = [], []
    original = ApoTrainer._precompute_ref_logps
    original_init = ApoTrainer.__init__

    def counting(self, dataset, name, batch_size):
        calls.append(name)
        return original(self, dataset, name, batch_size)

    def init(self, *a, **k):
        configs.append(k["args"])
        original_init(self, *a, **k)

    monkeypatch.setattr(ApoTrainer, "_precompute_ref_logps", counting)
    monkeypatch.setattr(ApoTrainer, "__init__", init)
    rows = _pairs(16)
    kw = dict(epochs=1, batch_size=8, lr=5e-3, lora_r=4, log=lambda *_: None)
    train_policy("simpo", rows, "tiny", tmp_path / "simpo", loss_kwargs={"beta": 2.0}, **kw)
    assert calls == [] and configs[-1].precompute_ref_log_probs is False
    train_policy("dpo", rows, "tiny", tmp_path / "dpo", loss_kwargs={"beta": 0.1}, **kw)
    assert len(calls) == 1 and configs[-1].precompute_ref_log_probs is True
    # activation checkpointing (TRL's default) is off: the models here fit without it, and it only costs time
    assert not any(c.gradient_checkpointing for c in configs)


def test_same_seed_gives_identical_metrics_and_another_seed_does_not(tmp_path):
    """Reproducibility on CPU, for a loss with random state of its own (gamma-PO samples its context)."""
    rows = _pairs()
    run = lambda d, seed: train_policy("gamma_simpo", rows, "tiny", tmp_path / d, loss_kwargs={"beta": 2.0},  # noqa: E731
                                       epochs=2, batch_size=8, lr=5e-3, lora_r=8, seed=seed, log=lambda *_: None)[2]
    a, b, c = run("a", 0), run("b", 0), run("c", 1)
    assert not a["reused"] and not b["reused"]
    keys = ["loss", "apo/gamma", "apo/ranking_accuracy", "logps/chosen"]
    assert [[e[k] for k in keys] for e in a["log"]] == [[e[k] for k in keys] for e in b["log"]]
    assert [e["loss"] for e in a["log"]] != [e["loss"] for e in c["log"]]


def _cut(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


@pytest.mark.parametrize("damage", ["adapter", "info"])
def test_a_damaged_finished_run_is_trained_again(tmp_path, damage):
    rows = _pairs(16)
    kw = dict(loss_kwargs={"beta": 0.5}, epochs=1, batch_size=8, lr=5e-3, lora_r=8, log=lambda *_: None)
    _, _, first = train_policy("dpo", rows, "tiny", tmp_path, **kw)
    (run,) = tmp_path.glob("dpo-*")
    if damage == "adapter":
        _cut(run / "adapter" / "adapter_model.safetensors")
    else:
        (run / "info.json").write_text('{"method": "dpo", "lo')
    with pytest.warns(UserWarning, match=rf"finished run .*{run.name} is damaged.*training it again"):
        _, _, again = train_policy("dpo", rows, "tiny", tmp_path, **kw)
    assert not again["reused"]
    np.testing.assert_allclose([h["loss"] for h in again["log"]], [h["loss"] for h in first["log"]], rtol=1e-5)
    _, _, third = train_policy("dpo", rows, "tiny", tmp_path, **kw)
    assert third["reused"]  # repaired on disk


def test_a_damaged_checkpoint_is_passed_over_for_an_earlier_one(tmp_path):
    rows, kw = _pairs(), KILL_KW
    ref, info_ref = _unbroken_and_killed(rows, tmp_path)
    (run,) = (tmp_path / "killed").glob("dpo-*")
    _cut(run / "trainer" / "checkpoint-4" / "adapter_model.safetensors", 0.9)
    said = []
    with pytest.warns(UserWarning, match=r"checkpoint-4 is damaged .*adapter_model.safetensors"):
        resumed, _, info = train_policy("dpo", rows, "tiny", tmp_path / "killed", **{**kw, "log": said.append})
    assert said == ["resuming dpo from checkpoint-2"]
    np.testing.assert_allclose([h["loss"] for h in info["log"]], [h["loss"] for h in info_ref["log"]], rtol=1e-5)


def test_top_layer_training_with_kept_lower_layers(tmp_path, monkeypatch):
    """LoRA on the top layer only, the lower one run once per text: adapters only up there, the same steps as
    the same run through every layer (the kept states are the full model's), and measurements still work."""
    from apo_utils import frozen_layers

    rows = _pairs(16)
    kw = dict(loss_kwargs={"beta": 0.5}, epochs=1, batch_size=4, lr=5e-3, lora_r=8, log=lambda *_: None, seed=0)
    track = lambda m, t: {"x": float(completion_logprobs(m, t, ["Film"], [" great"])[0])}  # noqa: E731
    model, _, info = train_policy("dpo", rows, "tiny", tmp_path, top_layers=1, track=track, track_every=2, **kw)
    lora = [n for n, p in model.named_parameters() if "lora_" in n]
    assert lora and all(".layers.1." in n for n in lora)
    assert [e["step"] for e in info["track"]] == [0, 2, 4]
    assert any(len(kept) for key, kept in frozen_layers._SHARED.items() if key[0] == "policy")
    # The same parametrisation run through every layer (kept states switched off): every step's loss agrees.
    import contextlib

    monkeypatch.setattr(frozen_layers.FrozenLowerLayers, "installed", lambda self: contextlib.nullcontext())
    _, _, plain = train_policy("dpo", rows, "tiny", tmp_path / "plain", top_layers=1, **kw)
    np.testing.assert_allclose([h["loss"] for h in plain["log"]], [h["loss"] for h in info["log"]], rtol=1e-5)
    assert len(info["log"]) == 4
    with pytest.raises(ValueError, match="top_layers must be a whole number in 1..1"):
        train_policy("dpo", rows, "tiny", tmp_path / "bad", top_layers=2, **kw)


def test_a_runs_cache_key_ignores_other_seeds_and_extra_runs_and_beta_is_chosen_once(tmp_path):
    """Adding a seed (or evaluating more prompts) must not invalidate finished runs; anything that changes
    this run (its own beta, the learning rate) must. beta: the method's own if given, else the profile's."""
    from apo_utils import profiles
    from apo_utils.policy_runs import train_and_evaluate

    rows = _pairs(16)
    P = dataclasses.replace(profiles.get("smoke").policy, seeds=(0,), epochs=1, batch_size=8, lora_r=4, beta=0.3)
    run = lambda P, **kw: train_and_evaluate("dpo", "dpo", rows, [], None, "tiny", tmp_path, P, seed=0, **kw)  # noqa: E731
    first = run(P)
    assert first["reused"] is False
    assert run(dataclasses.replace(P, seeds=(0, 1, 2), n_eval_prompts=P.n_eval_prompts + 8))["reused"] is True
    assert run(dataclasses.replace(P, lr=P.lr / 2))["reused"] is False
    own = run(P, loss_kwargs={"beta": 0.7})
    assert own["reused"] is False
    betas = sorted(d["loss_kwargs"]["beta"] for d in (__import__("json").loads(p.read_text())
                                                      for p in (tmp_path / "adapters").glob("*/info.json")))
    assert betas == [0.3, 0.3, 0.7]  # the profile's beta twice (two learning rates), the method's own once


def test_top_layer_runs_take_the_reference_at_each_step_with_the_same_losses(tmp_path, monkeypatch):
    """With kept lower layers TRL's reference pass before training would run the whole model over every pair;
    train_policy computes the reference at each step from the kept states instead, and the losses agree."""
    rows = _pairs(16)
    kw = dict(loss_kwargs={"beta": 0.5}, epochs=1, batch_size=4, lr=5e-3, lora_r=8, log=lambda *_: None, top_layers=1)
    _, _, per_step = train_policy("dpo", rows, "tiny", tmp_path / "per_step", **kw)
    original = policy_training.DPOConfig
    forced = []

    def precompute(*a, **k):
        forced.append(k["precompute_ref_log_probs"])
        return original(*a, **{**k, "precompute_ref_log_probs": True})

    monkeypatch.setattr(policy_training, "DPOConfig", precompute)
    _, _, before = train_policy("dpo", rows, "tiny", tmp_path / "precomputed", **kw)
    assert forced == [False]  # what train_policy asked for with top_layers
    np.testing.assert_allclose([h["loss"] for h in per_step["log"]], [h["loss"] for h in before["log"]], rtol=1e-5)


def test_bf16_training_and_what_is_tracked_are_part_of_a_runs_identity(tmp_path):
    """cpu_bf16 changes the numbers, so it changes the cache key; so does what a run measures along the way."""
    rows = _pairs(16)
    kw = dict(loss_kwargs={"beta": 0.5}, epochs=1, batch_size=8, lr=5e-3, lora_r=4, log=lambda *_: None)
    _, _, fp32 = train_policy("dpo", rows, "tiny", tmp_path, **kw)
    _, _, bf16 = train_policy("dpo", rows, "tiny", tmp_path, cpu_bf16=True, **kw)
    assert not bf16["reused"] and bf16["key"] != fp32["key"]
    assert np.isfinite([h["loss"] for h in bf16["log"]]).all()
    np.testing.assert_allclose(bf16["log"][0]["loss"], fp32["log"][0]["loss"], rtol=0.05)  # bf16: close, not equal
    track = lambda m, t: {"x": float(completion_logprobs(m, t, ["Film"], [" great"])[0])}  # noqa: E731
    _, _, a = train_policy("dpo", rows, "tiny", tmp_path, track=track, track_every=1, track_key="A", **kw)
    _, _, b = train_policy("dpo", rows, "tiny", tmp_path, track=track, track_every=1, track_key="B", **kw)
    _, _, a2 = train_policy("dpo", rows, "tiny", tmp_path, track=track, track_every=1, track_key="A", **kw)
    assert not a["reused"] and not b["reused"] and a2["reused"] and a2["track"] == a["track"]


def test_measurements_during_bf16_training_are_taken_in_float32(tmp_path):
    """Before the first step the policy is the reference (LoRA's B starts at zero): a tracked log-prob must be the
    float32 model's, not a bf16 autocast one (off by ~0.15 nats a response on Gemma, enough to fake a margin)."""
    rows = _pairs(16)
    seen = {}

    def track(m, t):
        return {"x": [float(v) for v in completion_logprobs(m, t, ["Film was", "A plot"], [" great fun", " dull"])]}

    from apo_utils.models import load_causal_lm

    model, tok, info = train_policy("dpo", rows, "tiny", tmp_path, loss_kwargs={"beta": 0.5}, epochs=1, batch_size=8,
                                    lr=5e-3, lora_r=4, log=lambda *_: None, cpu_bf16=True, track=track,
                                    track_every=1, track_key="t")
    plain, _, _ = load_causal_lm("tiny", seed=0, log=lambda *_: None)  # the reference, in float32
    start = completion_logprobs(plain.eval(), tok, ["Film was", "A plot"], [" great fun", " dull"])
    np.testing.assert_allclose(info["track"][0]["x"], start, atol=1e-5)
    with model.disable_adapter():  # the trained model is handed back with its float32 forward too
        np.testing.assert_allclose(completion_logprobs(model, tok, ["Film was", "A plot"], [" great fun", " dull"]),
                                   start, atol=1e-5)



def test_an_edit_to_the_code_a_run_reaches_trains_it_again_and_only_that(tmp_path, monkeypatch):
    """A learner edits dpo_loss: the finished policy is not handed back as `reused`; code the run does not reach
    (sampling) keeps its cache key. The info says which code made the run."""
    import shutil

    from apo_utils import code_version

    rows = _pairs(16)
    kw = dict(loss_kwargs={"beta": 0.5}, epochs=1, batch_size=8, lr=5e-3, lora_r=4, log=lambda *_: None)
    _, _, first = train_policy("dpo", rows, "tiny", tmp_path / "runs", **kw)
    assert train_policy("dpo", rows, "tiny", tmp_path / "runs", **kw)[2]["reused"]
    sampling = code_version.fingerprint("generation")
    copy = tmp_path / "apo_utils"  # the package as the learner's edit leaves it
    shutil.copytree(code_version.PACKAGE_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    losses = copy / "losses.py"
    losses.write_text(losses.read_text().replace("def dpo_loss(", "def dpo_loss(  # edited\n", 1))
    monkeypatch.setattr(code_version, "PACKAGE_DIR", copy)
    _, _, again = train_policy("dpo", rows, "tiny", tmp_path / "runs", **kw)
    assert not again["reused"] and again["key"] != first["key"] and again["code"] != first["code"]
    assert code_version.fingerprint("generation") == sampling  # generation.py does not reach losses.py


def test_a_forced_recompute_trains_again_what_was_made_before_it(tmp_path, monkeypatch):
    """`reproduce --force` sets APO_RECOMPUTE_SINCE: a run finished before then is trained again (not `reused`),
    one finished after it is reused as usual."""
    import time

    from apo_utils.storage import RECOMPUTE_SINCE

    rows = _pairs(16)
    kw = dict(loss_kwargs={"beta": 0.5}, epochs=1, batch_size=8, lr=5e-3, lora_r=4, log=lambda *_: None)
    train_policy("dpo", rows, "tiny", tmp_path, **kw)
    time.sleep(0.05)
    monkeypatch.setenv(RECOMPUTE_SINCE, str(time.time()))
    assert not train_policy("dpo", rows, "tiny", tmp_path, **kw)[2]["reused"]
    assert train_policy("dpo", rows, "tiny", tmp_path, **kw)[2]["reused"]


@pytest.mark.parametrize("top_layers", [None, 1])
def test_reward_and_kl_are_measured_along_training_for_a_frontier(tmp_path, top_layers):
    """Checkpoints: the start (the policy is the reference: KL 0), every k steps, and the end, the last from the full
    evaluation; sampling mid-training works also while the kept lower states are installed."""
    from apo_utils import profiles
    from apo_utils.ground_truth import VaderScorer
    from apo_utils.policy_runs import Checkpoints, train_and_evaluate

    rows = _pairs(32)
    prompts = offline_prompts(8, seed=3)
    P = dataclasses.replace(profiles.get("smoke").policy, seeds=(0,), epochs=1, batch_size=8, lr=5e-3, lora_r=4,
                            top_layers=top_layers, eval_max_new_tokens=6, eval_samples=2)
    result = train_and_evaluate("dpo", "dpo", rows, prompts, VaderScorer(), "tiny", tmp_path, P, seed=0,
                                loss_kwargs={"beta": 0.5}, checkpoints=Checkpoints(every=2, prompts=3))
    steps = [p["step"] for p in result["frontier"]]
    assert steps == [0, 2, 4]  # 32 pairs, batches of 8: four steps
    start, end = result["frontier"][0], result["frontier"][-1]
    assert abs(start["kl"]) < 1e-4 and len(start["prompt_rewards"]) == 3
    assert end["kl"] == result["kl"] and end["prompt_rewards"] == result["prompt_rewards"] and len(end["prompt_rewards"]) == 8
    assert end["kl"] > 0 and result["beta"] == 0.5
    again = train_and_evaluate("dpo", "dpo", rows, prompts, VaderScorer(), "tiny", tmp_path, P, seed=0,
                               loss_kwargs={"beta": 0.5}, checkpoints=Checkpoints(every=2, prompts=3))
    assert again["reused"] and again["frontier"] == result["frontier"]


def test_measuring_along_training_leaves_the_training_unchanged(tmp_path):
    """Sampling at a checkpoint re-seeds torch's generator; the tracker restores it, so a run measured along the way
    trains exactly as one that is not (same losses at every step)."""
    from apo_utils import profiles
    from apo_utils.ground_truth import VaderScorer
    from apo_utils.policy_runs import Checkpoints, train_and_evaluate

    rows = _pairs(32)
    P = dataclasses.replace(profiles.get("smoke").policy, seeds=(0,), epochs=1, batch_size=8, lr=5e-3, lora_r=4,
                            eval_max_new_tokens=6)
    run = lambda folder, **kw: train_and_evaluate("dpo", "dpo", rows, offline_prompts(4, seed=3), VaderScorer(),  # noqa: E731
                                                  "tiny", tmp_path / folder, P, seed=0, **kw)
    plain, measured = run("plain"), run("measured", checkpoints=Checkpoints(every=1, prompts=2))
    assert len(measured["frontier"]) == 5
    np.testing.assert_array_equal([h["loss"] for h in plain["train_log"]], [h["loss"] for h in measured["train_log"]])
    assert plain["prompt_rewards"] == measured["prompt_rewards"]


def test_text_quality_sees_what_a_lexicon_reward_does_not():
    """A repeated word games a lexicon; it has few distinct word pairs, and a low log-prob a token under the start."""
    from apo_utils.evaluation import text_quality

    out = text_quality(["great great great great", "a fine film and a fine cast"], [-20.0, -12.0], [4, 8])
    assert out["start_logp_per_token"] == pytest.approx((-5.0 - 1.5) / 2)
    assert out["distinct_2"] == pytest.approx((1 + 5) / (3 + 6))  # 'great great' once; 'a fine' twice
    assert np.isnan(text_quality([], [], [])["distinct_2"])


def test_reference_log_probs_kept_across_runs_train_the_same(tmp_path):
    """With kept lower layers the reference runs at each step; its values are kept across the runs of a process
    (policy_training.reference_cache). A run that reads them all from the cache trains as one that computes them."""
    rows = _pairs(32)
    kw = dict(loss_kwargs={"beta": 0.5}, epochs=1, batch_size=4, lr=5e-3, lora_r=8, log=lambda *_: None, top_layers=1,
              seed=3)
    policy_training._REFERENCE.clear()
    _, _, first = train_policy("dpo", rows, "tiny", tmp_path / "first", **kw)  # fills the cache
    cache = policy_training.reference_cache("tiny", RunSettings(top_layers=1))
    assert len(cache) == len(rows)  # every pair once
    policy_training._REFERENCE.clear()
    _, _, fresh = train_policy("dpo", rows, "tiny", tmp_path / "fresh", **{**kw, "seed": 4})
    _, _, cached = train_policy("dpo", rows, "tiny", tmp_path / "cached", **{**kw, "seed": 4, "lr": 5.0001e-3})
    # a different run key (lr) so it trains again; its reference now comes from the cache filled by `fresh`
    losses = lambda info: [h["loss"] for h in info["log"]]  # noqa: E731
    assert len(losses(fresh)) == len(losses(cached)) > 0
    np.testing.assert_allclose(losses(cached), losses(fresh), rtol=2e-3, atol=1e-4)
