"""FrozenLowerLayers: the top-layer model from kept lower states equals the full model, loss and gradients."""

import pytest
import torch
from peft import LoraConfig, get_peft_model

from apo_utils.frozen_layers import FrozenLowerLayers
from apo_utils.tiny import tiny_causal_lm, tiny_tokenizer


def _model(first_trained=4, layers=6):
    tok = tiny_tokenizer()
    base = tiny_causal_lm(tok, seed=0, layers=layers)
    base.config.sliding_window = 5  # short, so sliding and full attention layers see different contexts
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "o_proj"],
                     layers_to_transform=list(range(first_trained, layers)), layers_pattern="layers",
                     init_lora_weights=False)  # non-zero adapters, so the policy differs from the reference
    return tok, get_peft_model(base, cfg)


def _batch(tok, texts):
    enc = tok(texts, padding=True, return_tensors="pt", padding_side="right")
    return enc["input_ids"], enc["attention_mask"]


def _logps(model, ids, mask):
    logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits.float()
    lp = torch.log_softmax(logits[:, :-1], -1).gather(-1, ids[:, 1:, None])[..., 0]
    return (lp * mask[:, 1:]).sum(1)


TEXTS = ["I watched this film and it was a great and lovely story", "awful", "the acting was dull but fine",
         "superb work from the whole cast, I loved every minute of it and would see it again"]


@pytest.mark.parametrize("first_trained", [1, 3, 5])
def test_kept_states_give_the_full_models_loss_and_gradients(first_trained):
    tok, model = _model(first_trained)
    ids, mask = _batch(tok, TEXTS)
    full = _logps(model, ids, mask)
    full.sum().backward()
    want = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad()
    lower = FrozenLowerLayers(model, first_trained)
    assert lower.precompute([ids[b, : int(mask[b].sum())].tolist() for b in range(len(TEXTS))]) == len(TEXTS)
    with lower.installed():
        fast = _logps(model, ids, mask)
        fast.sum().backward()
        with model.disable_adapter():  # the reference: adapters off, same kept states
            ref_fast = _logps(model, ids, mask).detach()
    torch.testing.assert_close(fast, full, rtol=1e-5, atol=1e-5)
    for n, p in model.named_parameters():
        if p.requires_grad:
            torch.testing.assert_close(p.grad, want[n], rtol=1e-4, atol=1e-6)
    with model.disable_adapter():
        torch.testing.assert_close(ref_fast, _logps(model, ids, mask).detach(), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(ref_fast, full.detach())  # the adapters do change the model: the check has teeth
    assert lower.computed == len(TEXTS)  # nothing was computed twice
    # Outside `installed()` it is the ordinary model again: same modules, generation works.
    assert _logps(model, ids, mask).detach().allclose(full.detach(), atol=1e-5)
    model.generate(input_ids=ids[:1, :3], max_new_tokens=3, do_sample=False, pad_token_id=tok.pad_token_id)


def test_an_unseen_sequence_is_computed_on_first_use_and_batches_of_any_composition_agree():
    tok, model = _model(3)
    lower = FrozenLowerLayers(model, 3)
    ids, mask = _batch(tok, TEXTS)
    with torch.no_grad():
        full = _logps(model, ids, mask)
        with lower.installed():
            first = _logps(model, ids, mask)  # nothing precomputed: every row computed on first use
            again = _logps(model, ids[[2, 0]], mask[[2, 0]])  # other rows, other padding width
    assert lower.computed == len(TEXTS)
    torch.testing.assert_close(first, full, rtol=1e-5, atol=1e-5)
    ids2, mask2 = _batch(tok, [TEXTS[2], TEXTS[0]])
    torch.testing.assert_close(again, _logps(model, ids2, mask2), rtol=1e-5, atol=1e-5)


def test_trainable_lower_layers_and_left_padding_are_refused():
    tok, model = _model(4)
    with pytest.raises(ValueError, match="below layer 5 are trainable"):
        FrozenLowerLayers(model, 5)
    with pytest.raises(ValueError, match="first_trained must be a layer index"):
        FrozenLowerLayers(model, 6)
    lower = FrozenLowerLayers(model, 4)
    enc = tok(TEXTS, padding=True, return_tensors="pt", padding_side="left")
    with lower.installed(), pytest.raises(ValueError, match="right-padded"):
        model(**enc)


def test_in_a_trainer_every_batch_row_was_precomputed_and_the_loss_is_the_full_models():
    """training_sequences builds exactly the rows TRL's collator makes, so training computes nothing new."""
    from apo_utils.bench import _trainer, synthetic_pairs

    ds = synthetic_pairs(16, 6, seed=0)
    fast, _, batch = _trainer("madpo", "tiny", ds, 8, 0, lora_r=4, top_layers=1)
    lower = fast.frozen_lower
    n = lower.computed
    assert n == 2 * len(ds)  # every chosen and rejected row, once
    torch.manual_seed(1)
    for name, p in fast.model.named_parameters():  # non-zero adapters: the policy differs from the reference
        if "lora_B" in name:
            p.data.normal_(0, 0.5)
    with lower.installed():
        loss_fast = fast.compute_loss(fast.model, dict(batch))
    assert lower.computed == n  # no row of the batch was missing
    loss_full = fast.compute_loss(fast.model, dict(batch))  # the same model, run through every layer
    torch.testing.assert_close(loss_fast, loss_full, rtol=1e-5, atol=1e-6)


def test_a_policy_left_with_its_kept_states_measures_pairs_as_the_full_model():
    # train_policy(top_layers=...) leaves its FrozenLowerLayers on the model; completion_stats then runs the top
    # layers from kept states, with adapters on and off (the reference), and must give the full model's numbers
    from apo_utils.ranking import completion_stats

    tok, model = _model(first_trained=3)
    model.eval()
    prompts, completions = [t[:9] for t in TEXTS], [t[9:] for t in TEXTS]
    full = completion_stats(model, tok, prompts, completions, batch_size=3)
    with model.disable_adapter():
        full_ref = completion_stats(model, tok, prompts, completions, batch_size=3)
    model._apo_frozen_lower = lower = FrozenLowerLayers(model, 3)
    kept = completion_stats(model, tok, prompts, completions, batch_size=3)
    with model.disable_adapter():
        kept_ref = completion_stats(model, tok, prompts, completions, batch_size=2)
    assert lower.computed == len(TEXTS)  # each text's lower layers ran once, for both passes
    assert lower._installed is None  # left as it was found: generation runs the ordinary model
    for a, b in ((full, kept), (full_ref, kept_ref)):
        assert torch.allclose(torch.tensor(a[0]), torch.tensor(b[0]), atol=1e-4) and (a[1] == b[1]).all()
    assert not torch.allclose(torch.tensor(full[0]), torch.tensor(full_ref[0]), atol=1e-3)  # adapters matter here
