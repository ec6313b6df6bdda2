"""ApoTrainer on a tiny random model: equal to TRL's sigmoid DPO, the margin reaches the loss, every loss trains."""

import pytest
import torch
from datasets import Dataset
from trl import DPOConfig, DPOTrainer, RewardConfig

from apo_utils import losses as L
from apo_utils.tiny import tiny_causal_lm, tiny_reward_model, tiny_tokenizer
from apo_utils.trainer import ApoTrainer, MarginRewardTrainer


def pairs(n=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    words = ["great", "awful", "fine", "dull", "superb", "bad", "lovely", "weak"]
    rows = []
    for i in range(n):
        a, b = torch.randint(0, len(words), (2,), generator=g).tolist()
        rows.append({
            "prompt": f"Film {i} was",
            "chosen": f" {words[a]} and {words[(a + 2) % 8]}",
            "rejected": f" {words[b]}",
            "margin": float(torch.randn((), generator=g)) * 2,
        })
    return Dataset.from_list(rows)


def config(tmp_path, **kw):
    base = dict(output_dir=str(tmp_path), per_device_train_batch_size=8, per_device_eval_batch_size=8,
                learning_rate=5e-3, max_steps=1, report_to="none", bf16=False, disable_tqdm=True, logging_steps=1,
                save_strategy="no", use_cpu=True, seed=0, data_seed=0, beta=0.1, max_length=64,
                dataloader_num_workers=0)
    base.update(kw)
    return DPOConfig(**base)


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


def make(trainer_cls, tok, tmp_path, ds, seed=0, **kw):
    model = tiny_causal_lm(tok, seed=seed)
    ref = tiny_causal_lm(tok, seed=seed)
    extra = {k: kw.pop(k) for k in list(kw) if k in ("loss_name", "loss_kwargs", "eval_dataset")}
    return trainer_cls(model=model, ref_model=ref, args=config(tmp_path, **kw), train_dataset=ds,
                       processing_class=tok, **extra)


def first_batch(trainer):
    return next(iter(trainer.get_train_dataloader()))


def test_dpo_equals_trl_sigmoid_on_the_same_batch(tok, tmp_path):
    ds = pairs()
    ours = make(ApoTrainer, tok, tmp_path / "a", ds, loss_name="dpo")
    theirs = make(DPOTrainer, tok, tmp_path / "b", ds, loss_type="sigmoid")
    batch = first_batch(ours)
    assert "margin" not in batch  # DPO ignores margins: the column is left out of its batches
    assert "margin" in first_batch(make(ApoTrainer, tok, tmp_path / "c", ds, loss_name="madpo"))  # MADPO's carry it
    ref_batch = dict(batch)
    ours.model.train(), theirs.model.train()
    # perturb the policy so the loss is not log(2) at the reference
    with torch.no_grad():
        for p1, p2 in zip(ours.model.parameters(), theirs.model.parameters()):
            noise = torch.randn_like(p1) * 0.05
            p1.add_(noise), p2.add_(noise)
    l_ours = ours.compute_loss(ours.model, dict(batch))
    l_theirs = theirs.compute_loss(theirs.model, dict(ref_batch))
    assert abs(l_ours.item() - 0.6931) > 1e-3
    torch.testing.assert_close(l_ours, l_theirs, rtol=1e-5, atol=1e-6)
    l_ours.backward(), l_theirs.backward()
    for p1, p2 in zip(ours.model.parameters(), theirs.model.parameters()):
        torch.testing.assert_close(p1.grad, p2.grad, rtol=1e-4, atol=1e-7)


def test_margin_column_changes_the_loss(tok, tmp_path):
    ds = pairs()
    tr = make(ApoTrainer, tok, tmp_path, ds, loss_name="madpo")
    batch = first_batch(tr)
    l1 = tr.compute_loss(tr.model, dict(batch)).item()
    b2 = dict(batch)
    b2["margin"] = batch["margin"] * 0 + 0.3  # every pair hard: all weights > 1
    l2 = tr.compute_loss(tr.model, b2).item()
    w = L.madpo_weight(torch.full((8,), 0.3)).mean().item()
    assert l2 == pytest.approx(w * 0.6931, rel=1e-3)
    assert abs(l1 - l2) > 1e-3


def test_precomputed_reference_gives_the_same_loss(tok, tmp_path):
    ds = pairs()
    live = make(ApoTrainer, tok, tmp_path / "a", ds, loss_name="mmpo")
    model = tiny_causal_lm(tok, seed=0)
    pre = ApoTrainer(model=model, args=config(tmp_path / "b", precompute_ref_log_probs=True), train_dataset=ds,
                     processing_class=tok, loss_name="mmpo")
    b_live, b_pre = first_batch(live), first_batch(pre)
    assert "ref_chosen_logps" in b_pre
    torch.testing.assert_close(live.compute_loss(live.model, dict(b_live)), pre.compute_loss(pre.model, dict(b_pre)))


@pytest.mark.parametrize("name", sorted(L.LOSSES))
def test_every_loss_trains_and_the_loss_decreases(name, tok, tmp_path):
    ds = pairs(8)
    kwargs = {"ipo": {"beta": 0.5}, "simpo": {"beta": 2.0}, "gamma_simpo": {"beta": 2.0},
              "amapo": {"beta": 2.0}, "beta_dpo": {"keep_ratio": 1.0}}.get(name, {})
    lr = 1e-3 if name == "ipo" else 1e-2  # IPO's squared loss on summed log-ratios overshoots at 1e-2
    tr = make(ApoTrainer, tok, tmp_path, ds, loss_name=name, loss_kwargs=kwargs, max_steps=8, learning_rate=lr)
    batch = first_batch(tr)

    def measure():
        tr.model.eval()
        with torch.no_grad():
            tr.objective = type(tr.objective)(name, **tr.objective.hparams)  # fresh state: same loss both times
            loss, out = tr.compute_loss(tr.model, dict(batch), return_outputs=True)
        return loss.item(), out["h"].mean().item()

    loss_before, h_before = measure()
    tr.train()
    loss_after, h_after = measure()
    # Every method but MMPO pushes chosen above rejected; MMPO matches a soft target, which is below 1/2
    # for this data's negative margins. AMaPO's margin grows with the batch mean by design
    # (exp(z * mu)), so its loss value is not a fixed objective; every other loss must fall.
    if name != "mmpo":
        assert h_after > h_before + 1e-3, (h_before, h_after)
    if name != "amapo":
        assert loss_after < loss_before - 1e-3, (loss_before, loss_after)
    logged = {k for rec in tr.state.log_history for k in rec}
    assert "apo/ranking_accuracy" in logged and "apo/grad_weight" in logged


def test_trainer_errors_name_what_is_wrong(tok, tmp_path):
    ds = pairs().remove_columns("margin")
    with pytest.raises(ValueError, match="'margin' column"):
        make(ApoTrainer, tok, tmp_path, ds, loss_name="madpo")
    with pytest.raises(ValueError, match="unknown loss name"):
        make(ApoTrainer, tok, tmp_path, ds, loss_name="dpo2")
    rows = pairs().to_list()
    rows[5]["margin"] = float("nan")
    with pytest.raises(ValueError, match="train_dataset: column 'margin' row 5"):
        make(ApoTrainer, tok, tmp_path, Dataset.from_list(rows), loss_name="mmpo")
    with pytest.raises(ValueError, match="beta"):
        make(ApoTrainer, tok, tmp_path, ds, loss_name="dpo", loss_kwargs={"beta": -1.0})


@pytest.mark.parametrize("edit,message", [
    (lambda ds: ds.remove_columns("rejected"), r"train_dataset: missing column 'rejected'.*\['chosen', 'margin', 'prompt'\]"),
    (lambda ds: ds.select([]), "train_dataset is empty"),
    (lambda ds: Dataset.from_list([dict(r, chosen="  ") if i == 3 else r for i, r in enumerate(ds.to_list())]),
     "train_dataset: column 'chosen' row 3 is an empty string"),
    (lambda ds: Dataset.from_list([dict(r, rejected=None) if i == 2 else r for i, r in enumerate(ds.to_list())]),
     "train_dataset: column 'rejected' row 2 is NoneType"),
])
def test_malformed_datasets_fail_before_tokenising(tok, tmp_path, edit, message):
    """Without these checks TRL fails later with a bare KeyError or StopIteration that names nothing."""
    with pytest.raises(ValueError, match=message):
        make(ApoTrainer, tok, tmp_path, edit(pairs()), loss_name="dpo")


def _reward_setup(tok, tmp_path, mode):
    ds = pairs(16)
    model = tiny_reward_model(tok, seed=0)
    args = RewardConfig(output_dir=str(tmp_path), per_device_train_batch_size=8, max_steps=6, learning_rate=1e-2,
                        report_to="none", bf16=False, disable_tqdm=True, logging_steps=1, save_strategy="no",
                        use_cpu=True, seed=0, max_length=64)
    return MarginRewardTrainer(model=model, args=args, train_dataset=ds, processing_class=tok, margin_mode=mode,
                               gamma_bt=1.0)


def test_reward_trainer_modes(tok, tmp_path):
    hard = _reward_setup(tok, tmp_path / "h", "none")
    soft = _reward_setup(tok, tmp_path / "s", "soft")
    batch = next(iter(soft.get_train_dataloader()))
    assert "margin" in batch
    with torch.no_grad():
        lh = hard.compute_loss(hard.model, dict(batch)).item()
        ls = soft.compute_loss(soft.model, dict(batch)).item()
        out = soft.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.squeeze(-1)
    rw, rl = out.chunk(2)
    assert lh == pytest.approx(L.reward_bt_loss(rw, rl).loss.item(), rel=1e-5)
    assert ls == pytest.approx(L.mmpo_reward_loss(rw, rl, batch["margin"]).loss.item(), rel=1e-5)
    soft.train()
    assert any("mmpo/target" in rec for rec in soft.state.log_history)
    with pytest.raises(ValueError, match="margin_mode"):
        _reward_setup(tok, tmp_path, "hard")


def test_positional_arguments_and_beta_from_the_config(tok, tmp_path):
    model, ref = tiny_causal_lm(tok, seed=0), tiny_causal_lm(tok, seed=0)
    tr = ApoTrainer(model, ref, config(tmp_path, beta=0.37), None, pairs(), processing_class=tok, loss_name="madpo")
    assert tr.objective.hparams["beta"] == 0.37
    with pytest.raises(ValueError, match="'margin' column"):
        ApoTrainer(tiny_causal_lm(tok), tiny_causal_lm(tok), config(tmp_path), None,
                   pairs().remove_columns("margin"), processing_class=tok, loss_name="mmpo")


# ----------------------------------------------------------------- inputs TRL would take silently or fail on late


@pytest.mark.parametrize("column", ["prompt", "chosen", "rejected"])
def test_a_none_in_row_0_is_named_too(tok, tmp_path, column):
    """Row 0 used to decide that a column was 'conversational' and skip it; TRL then failed deep in tokenising."""
    rows = pairs(4).to_list()
    rows[0][column] = None
    with pytest.raises(ValueError, match=rf"train_dataset: column '{column}' row 0 is NoneType"):
        make(ApoTrainer, tok, tmp_path, Dataset.from_list(rows), loss_name="dpo")
    with pytest.raises(ValueError, match=rf"eval_dataset: column '{column}' row 0 is NoneType"):
        make(ApoTrainer, tok, tmp_path, pairs(4), loss_name="dpo", eval_dataset=Dataset.from_list(rows))


@pytest.mark.parametrize("value,kind", [(3, "int"), (["a"], "list"), ({"text": "a"}, "dict")])
def test_a_non_string_in_row_0_is_named_in_any_form(value, kind):
    from apo_utils.data import validate_preferences

    rows = pairs(4).to_list()
    rows[0]["chosen"] = value
    with pytest.raises(ValueError, match=rf"column 'chosen' row 0 is {kind}"):
        validate_preferences(rows)


def test_conversational_rows_are_checked_row_by_row(tok, tmp_path):
    from apo_utils.data import validate_preferences

    conv = [{"prompt": [{"role": "user", "content": f"Film {i}?"}],
             "chosen": [{"role": "assistant", "content": "great"}],
             "rejected": [{"role": "assistant", "content": "bad"}]} for i in range(3)]
    assert validate_preferences(conv) is conv
    conv[2]["chosen"] = "great"  # a string among conversations
    with pytest.raises(ValueError, match="column 'chosen' row 2 is str .*expected a list of"):
        validate_preferences(conv)


def test_prompts_longer_than_max_length_are_reported(tok, tmp_path, caplog):
    rows = pairs(8).to_list()
    long_prompt = " ".join(["film"] * 80)
    # All prompts too long: TRL would drop every row and torch fail with num_samples=0.
    with pytest.raises(ValueError, match=r"train_dataset: all 8 rows have a prompt of at least max_length=64"):
        make(ApoTrainer, tok, tmp_path / "a", Dataset.from_list([dict(r, prompt=long_prompt) for r in rows]),
             loss_name="dpo")
    # One too long: dropped with a word, and the others still train.
    caplog.clear()
    with caplog.at_level("WARNING", logger="apo_utils"):
        tr = make(ApoTrainer, tok, tmp_path / "b",
                  Dataset.from_list([dict(r, prompt=long_prompt) if i == 3 else r for i, r in enumerate(rows)]),
                  loss_name="dpo")
    assert len(tr.train_dataset) == 7
    assert "1 of 8 rows dropped because the prompt alone fills max_length=64" in caplog.text
    # A prompt that leaves room for only part of the response: the cut is reported with its size.
    caplog.clear()
    with caplog.at_level("WARNING", logger="apo_utils"):
        make(ApoTrainer, tok, tmp_path / "c",
             Dataset.from_list([dict(r, prompt=" ".join(["film"] * 11)) if i == 0 else r for i, r in enumerate(rows)]),
             loss_name="dpo")
    assert "1 of 8 pairs are longer than max_length=64" in caplog.text
    assert "responses cut to as few as" in caplog.text


def test_a_margin_the_loss_ignores_is_left_out(tok, tmp_path):
    """A non-numeric margin column crashed the collator at the first batch even for losses that never read it."""
    rows = [dict(r, margin=f"{r['margin']:.2f}") for r in pairs(8).to_list()]
    tr = make(ApoTrainer, tok, tmp_path, Dataset.from_list(rows), loss_name="dpo", max_steps=1)
    assert "margin" not in first_batch(tr)
    tr.train()
    with pytest.raises(ValueError, match=r"train_dataset: column 'margin' row 0 is str"):
        make(ApoTrainer, tok, tmp_path, Dataset.from_list(rows), loss_name="madpo")


@pytest.mark.parametrize("name", ["simpo", "amapo", "gamma_simpo"])
def test_reference_free_losses_take_their_own_beta(name, tok, tmp_path, caplog):
    """Without a beta they used DPOConfig.beta (0.1), twenty times smaller than their own default."""
    with caplog.at_level("WARNING", logger="apo_utils"):
        tr = make(ApoTrainer, tok, tmp_path, pairs(8), loss_name=name)
    assert tr.objective.hparams["beta"] == L.default_beta(name) == 2.0
    assert f"loss {name!r}: beta=2.0, the loss's own default" in caplog.text
    tr = make(ApoTrainer, tok, tmp_path, pairs(8), loss_name=name, loss_kwargs={"beta": 2.5})
    assert tr.objective.hparams["beta"] == 2.5
    tr = make(ApoTrainer, tok, tmp_path, pairs(8), loss_name="dpo", beta=0.3)
    assert tr.objective.hparams["beta"] == 0.3  # reference-based: DPOConfig.beta means the same thing


def test_identical_pairs_are_counted(tok, tmp_path, caplog):
    rows = pairs(8).to_list()
    for i in (1, 5):
        rows[i]["rejected"] = rows[i]["chosen"]
    with caplog.at_level("WARNING", logger="apo_utils"):
        make(ApoTrainer, tok, tmp_path, Dataset.from_list(rows), loss_name="dpo")
    assert "train_dataset: 2 of 8 pairs have chosen == rejected (rows 1, 5)" in caplog.text


def test_bad_pair_ids_are_named(tok, tmp_path):
    rows = [dict(r, pair_id=i) for i, r in enumerate(pairs(4).to_list())]
    rows[2]["pair_id"] = 2.5
    with pytest.raises(ValueError, match=r"train_dataset: column 'pair_id' row 2 is float"):
        make(ApoTrainer, tok, tmp_path, Dataset.from_list(rows), loss_name="dpo")


def test_reward_trainer_checks_its_data(tok, tmp_path):
    rows = [dict(r, margin="big") for r in pairs(8).to_list()]
    args = RewardConfig(output_dir=str(tmp_path), per_device_train_batch_size=8, max_steps=1, report_to="none",
                        bf16=False, disable_tqdm=True, save_strategy="no", use_cpu=True, max_length=64)
    # plain Bradley-Terry ignores the margin, so a text margin column is dropped rather than crash the collator
    tr = MarginRewardTrainer(model=tiny_reward_model(tok, seed=0), args=args, train_dataset=Dataset.from_list(rows),
                             processing_class=tok, margin_mode="none")
    tr.train()
    with pytest.raises(ValueError, match=r"train_dataset: column 'margin' row 0 is str"):
        MarginRewardTrainer(model=tiny_reward_model(tok, seed=0), args=args, train_dataset=Dataset.from_list(rows),
                            processing_class=tok, margin_mode="soft")
    rows = pairs(8).to_list()
    rows[0]["chosen"] = None
    with pytest.raises(ValueError, match=r"train_dataset: column 'chosen' row 0 is NoneType"):
        MarginRewardTrainer(model=tiny_reward_model(tok, seed=0), args=args, train_dataset=Dataset.from_list(rows),
                            processing_class=tok)


# ----------------------------------------------------------------- round 3: the loss trained, and non-finite log-probs


def test_without_loss_name_the_configs_loss_type_is_trained(tok, tmp_path):
    """ApoTrainer without loss_name used to train DPO whatever DPOConfig.loss_type said."""
    ds = pairs()
    ours = make(ApoTrainer, tok, tmp_path / "a", ds, loss_type="ipo", beta=0.5)
    theirs = make(DPOTrainer, tok, tmp_path / "b", ds, loss_type="ipo", beta=0.5)
    assert ours.objective.name == "ipo" and ours.objective.hparams["beta"] == 0.5
    batch = first_batch(ours)
    with torch.no_grad():
        for p1, p2 in zip(ours.model.parameters(), theirs.model.parameters()):
            noise = torch.randn_like(p1) * 0.05
            p1.add_(noise), p2.add_(noise)
        torch.testing.assert_close(ours.compute_loss(ours.model, dict(batch)),
                                   theirs.compute_loss(theirs.model, dict(batch)), rtol=1e-5, atol=1e-6)
    robust = make(ApoTrainer, tok, tmp_path / "c", ds, loss_type="robust", label_smoothing=0.2)
    assert robust.objective.name == "robust" and robust.objective.hparams["label_smoothing"] == 0.2
    assert make(ApoTrainer, tok, tmp_path / "d", ds).objective.name == "dpo"  # TRL's default 'sigmoid'
    assert make(ApoTrainer, tok, tmp_path / "e", ds, loss_type="madpo").objective.name == "madpo"  # a kit name
    assert make(ApoTrainer, tok, tmp_path / "f", ds, loss_type="ipo", loss_name=None).objective is None  # TRL's own


@pytest.mark.parametrize("loss_type,words", [
    ("hinge", r"DPOConfig\.loss_type=\['hinge'\].*does not implement.*'amapo'.*loss_name=None"),
    (["sigmoid", "sft"], r"DPOConfig\.loss_type=\['sigmoid', 'sft'\].*one loss at a time.*loss_name=None"),
])
def test_a_loss_type_the_kit_does_not_implement_is_refused(tok, tmp_path, loss_type, words):
    with pytest.raises(ValueError, match=words):
        make(ApoTrainer, tok, tmp_path, pairs(), loss_type=loss_type)


def _with_pair_ids(n=16):
    return Dataset.from_list([dict(r, pair_id=100 + i) for i, r in enumerate(pairs(n).to_list())])


@pytest.mark.parametrize("whose", ["policy", "reference"])
def test_non_finite_log_probs_name_the_pairs(tok, tmp_path, monkeypatch, whose):
    """A NaN log-prob used to give a NaN loss for that pair, silently."""
    tr = make(ApoTrainer, tok, tmp_path, _with_pair_ids(), loss_name="madpo")
    batch = first_batch(tr)
    ids = batch["pair_id"].tolist()
    method = "sequence_logps" if whose == "policy" else "compute_ref_log_probs"
    real = getattr(tr, method)

    def broken(model, inputs):
        chosen, rejected = real(model, inputs)
        return chosen.clone().index_fill(0, torch.tensor([2]), float("nan")), \
            rejected.clone().index_fill(0, torch.tensor([5]), float("inf"))

    monkeypatch.setattr(tr, method, broken)
    with pytest.raises(FloatingPointError, match=rf"{whose} log-probs.*pairs 2, 5 of this batch \(pair_id "
                                                 rf"{ids[2]}, {ids[5]}\).*fp16.*empty response"):
        tr.compute_loss(tr.model, dict(batch))
    del batch["pair_id"]  # without ids the batch positions are all there is to name
    with pytest.raises(FloatingPointError, match=rf"{whose} log-probs.*pairs 2, 5 of this batch[^(]*fp16"):
        tr.compute_loss(tr.model, dict(batch))


def test_config_options_the_kits_losses_do_not_read_are_refused(tok, tmp_path):
    with pytest.raises(ValueError, match=r"f_divergence_type='js_divergence'.*does not implement"):
        make(ApoTrainer, tok, tmp_path, pairs(), f_divergence_type="js_divergence")
    with pytest.raises(ValueError, match=r"use_weighting=True.*'madpo' does not implement"):
        make(ApoTrainer, tok, tmp_path, pairs(), loss_name="madpo", use_weighting=True)


def test_an_explicit_loss_name_says_the_configs_loss_type_is_not_used(tok, tmp_path, caplog):
    with caplog.at_level("WARNING", logger="apo_utils"):
        tr = make(ApoTrainer, tok, tmp_path, pairs(), loss_name="madpo", loss_type="ipo")
    assert tr.objective.name == "madpo"
    assert "loss_name='madpo' is trained; DPOConfig.loss_type=['ipo'] is not used" in caplog.text
