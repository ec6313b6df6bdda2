"""The table of loss capabilities says what each loss really does: checked against the functions themselves."""

import inspect
import re

import pytest
import torch

from apo_utils import losses as L
from apo_utils.objective import _DATA_ARGS, Objective


def _batch(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda: -20 * torch.rand(n, generator=g) - 1  # noqa: E731
    return r(), r(), r(), r(), torch.full((n,), 5.0), torch.full((n,), 7.0)


@pytest.mark.parametrize("name", sorted(L.LOSS_TABLE))
def test_default_beta_is_the_functions_own(name):
    assert inspect.signature(L.LOSSES[name]).parameters["beta"].default == L.default_beta(name)


@pytest.mark.parametrize("name", sorted(L.LOSS_TABLE))
def test_reference_flag_matches_what_the_loss_reads(name):
    pc, pr, rc, rr, lc, lr = _batch()
    kw = dict(margin=torch.ones(6), chosen_lengths=lc, rejected_lengths=lr, generator=torch.Generator().manual_seed(0))
    base = L.compute_loss(name, pc, pr, rc, rr, **kw).losses
    shifted = L.compute_loss(name, pc, pr, rc + torch.linspace(-3, 3, 6), rr, **dict(kw, generator=torch.Generator().manual_seed(0))).losses
    if L.capabilities(name).reference:
        assert not torch.allclose(base, shifted)
        with pytest.raises(ValueError, match="ref_chosen_logps is required"):
            L.compute_loss(name, pc, pr, None, None, **kw)
    else:
        torch.testing.assert_close(base, shifted)
        L.compute_loss(name, pc, pr, None, None, **kw)  # no reference needed


@pytest.mark.parametrize("name", sorted(L.LOSS_TABLE))
def test_margin_flag_matches_what_the_loss_reads(name):
    pc, pr, rc, rr, lc, lr = _batch()
    kw = dict(chosen_lengths=lc, rejected_lengths=lr)
    if L.capabilities(name).margin:
        with pytest.raises(ValueError, match="margin is required"):
            L.compute_loss(name, pc, pr, rc, rr, **kw)
        a = L.compute_loss(name, pc, pr, rc, rr, margin=torch.full((6,), 0.1), **kw).losses
        b = L.compute_loss(name, pc, pr, rc, rr, margin=torch.full((6,), 3.0), **kw).losses
        assert not torch.allclose(a, b)
    else:
        a = L.compute_loss(name, pc, pr, rc, rr, margin=torch.full((6,), 0.1), generator=torch.Generator().manual_seed(0), **kw).losses
        b = L.compute_loss(name, pc, pr, rc, rr, margin=torch.full((6,), 3.0), generator=torch.Generator().manual_seed(0), **kw).losses
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("name", sorted(L.LOSS_TABLE))
def test_pooled_flag_matches_whether_other_pairs_change_a_pairs_loss(name):
    """A pooled loss's value for pair 0 depends on the other pairs of the batch; a per-pair loss's does not."""
    pc, pr, rc, rr, lc, lr = _batch(n=8, seed=3)
    kw = dict(margin=torch.ones(8), chosen_lengths=lc, rejected_lengths=lr)
    obj = Objective(name)
    first = obj(pc, pr, rc, rr, update=False, **kw).losses[0]
    pc2 = pc.clone()
    pc2[1:] += 30.0  # every other pair far ahead of pair 0: its rank in the batch changes, its own inputs do not
    obj = Objective(name)
    again = obj(pc2, pr, rc, rr, update=False, **kw).losses[0]
    caps = L.capabilities(name)
    if caps.pooled:
        assert not torch.isclose(first, again)
        assert f"gathered_{caps.pooled}" in inspect.signature(caps.fn).parameters
        assert L.batch_statistic(name, pc, pr, rc, rr, chosen_lengths=lc, rejected_lengths=lr).shape == (8,)
    else:
        torch.testing.assert_close(first, again)
        assert L.batch_statistic(name, pc, pr, rc, rr, chosen_lengths=lc, rejected_lengths=lr) is None


@pytest.mark.parametrize("name", sorted(L.LOSS_TABLE))
def test_state_flag_matches_whether_the_objective_changes_between_batches(name):
    pc, pr, rc, rr, lc, lr = _batch(n=8, seed=5)
    obj = Objective(name)
    before = obj.state_dict()
    obj(pc, pr, rc, rr, margin=torch.ones(8), chosen_lengths=lc, rejected_lengths=lr)
    after = obj.state_dict()
    changed = (before["gap_mean"], before["gap_std"], before["queue"]) != (after["gap_mean"], after["gap_std"], after["queue"])
    assert changed == (L.capabilities(name).state is not None)
    assert L.capabilities(name).state in (None, "gap_stats", "gap_queue")


def test_unknown_name_is_refused_with_the_list():
    with pytest.raises(ValueError, match="unknown loss name 'dpoo'.*'amapo'"):
        L.capabilities("dpoo")


@pytest.mark.parametrize("name", sorted(L.LOSS_TABLE))
def test_every_input_of_a_loss_is_a_batch_input_or_a_documented_hyperparameter(name):
    """A new batch input must go into BATCH_INPUTS, or `Objective` would take it for a hyperparameter."""
    fn = L.LOSSES[name]
    for param in inspect.signature(fn).parameters.values():
        if param.kind is param.VAR_KEYWORD or param.name in L.BATCH_INPUTS:
            continue
        assert param.kind is param.KEYWORD_ONLY, f"{name}: positional input {param.name!r} is not in BATCH_INPUTS"
        assert param.default is not param.empty, f"{name}: hyperparameter {param.name!r} has no default"
        assert re.search(rf"\b{param.name}\b", fn.__doc__), f"{name}: hyperparameter {param.name!r} is not in its docstring"


def test_batch_inputs_are_read_by_some_loss_and_refused_by_objective():
    taken = {p for c in L.LOSS_TABLE.values() for p in inspect.signature(c.fn).parameters}
    assert set(L.BATCH_INPUTS) <= taken  # no stale names
    assert _DATA_ARGS == set(L.BATCH_INPUTS)
    with pytest.raises(ValueError, match="unknown hyperparameter 'margin' for loss 'madpo'"):
        Objective("madpo", margin=torch.ones(2))


@pytest.mark.parametrize("name", sorted(L.LOSS_TABLE))
def test_objective_passes_the_loss_only_hyperparameters_and_batch_inputs(name):
    pc, pr, rc, rr, lc, lr = _batch()
    obj = Objective(name, beta=L.default_beta(name))
    passed = {}
    fn = obj.fn

    def spy(*args, **kwargs):
        passed.update(kwargs)
        return fn(*args, **kwargs)

    obj.fn = spy
    obj(pc, pr, rc, rr, margin=torch.ones(6), chosen_lengths=lc, rejected_lengths=lr, gather=lambda t: (t, 0, 1))
    assert set(passed) - set(obj.hparams) <= set(L.BATCH_INPUTS)
