"""Preference-dataset validation and label-flip noise."""

import numpy as np
import pytest
from datasets import Dataset

from apo_utils.data import flip_labels, load_pairs, save_pairs, validate_preferences


def rows(n=10):
    return [{"prompt": f"p{i}", "chosen": f"good {i}", "rejected": f"bad {i}", "margin": float(i)} for i in range(n)]


def test_a_sound_dataset_passes_in_both_forms():
    assert validate_preferences(rows()) is not None
    validate_preferences(Dataset.from_list(rows()), require_margin=True)


@pytest.mark.parametrize(
    "edit,message",
    [
        (lambda r: [{k: v for k, v in x.items() if k != "rejected"} for x in r], "missing column 'rejected'"),
        (lambda r: r[:3] + [dict(r[3], chosen="   ")] + r[4:], r"column 'chosen' row 3 is an empty string"),
        (lambda r: r[:5] + [dict(r[5], margin=float("nan"))] + r[6:], r"column 'margin' row 5 is nan"),
        (lambda r: r[:2] + [dict(r[2], margin="0.5")] + r[3:], r"column 'margin' row 2 is str"),
        (lambda r: r[:1] + [dict(r[1], prompt=None)] + r[2:], r"column 'prompt' row 1 is NoneType"),
        (lambda r: r[:4] + [dict(r[4], margin=True)] + r[5:], r"column 'margin' row 4 is bool"),
    ],
)
def test_bad_rows_are_named(edit, message):
    bad = edit(rows())
    with pytest.raises(ValueError, match=message):
        validate_preferences(bad)
    if "NoneType" not in message and "bool" not in message and "str" not in message:
        with pytest.raises(ValueError, match=message):
            validate_preferences(Dataset.from_list(bad))


def test_missing_margin_when_required_and_other_shapes():
    no_margin = [{k: v for k, v in r.items() if k != "margin"} for r in rows()]
    with pytest.raises(ValueError, match="missing column 'margin'"):
        validate_preferences(no_margin, require_margin=True)
    with pytest.raises(ValueError, match="empty"):
        validate_preferences([])
    with pytest.raises(ValueError, match="expected a datasets.Dataset"):
        validate_preferences("prompt,chosen,rejected")


def test_flips_are_exact_deterministic_nested_and_negate_the_margin():
    ds = Dataset.from_list(rows(100))
    a = flip_labels(ds, 0.2, seed=3)
    b = flip_labels(ds, 0.2, seed=3)
    c = flip_labels(ds, 0.4, seed=3)
    assert sum(a["flipped"]) == 20 and a["flipped"] == b["flipped"]
    assert all(fc for fa, fc in zip(a["flipped"], c["flipped"]) if fa)  # 20% rows inside the 40% rows
    for r, orig in zip(a, ds):
        if r["flipped"]:
            assert (r["chosen"], r["rejected"], r["margin"]) == (orig["rejected"], orig["chosen"], -orig["margin"])
        else:
            assert (r["chosen"], r["margin"]) == (orig["chosen"], orig["margin"])
    assert flip_labels(rows(10), 0.0)[0]["flipped"] is False
    full = [dict(r, true_margin=1.0, chosen_score=0.5, rejected_score=-0.5, label_correct=True) for r in rows(4)]
    f = [r for r in flip_labels(full, 0.25, seed=0) if r["flipped"]][0]
    assert (f["true_margin"], f["chosen_score"], f["rejected_score"], f["label_correct"]) == (-1.0, -0.5, 0.5, False)
    assert flip_labels(ds, 0.2, seed=4)["flipped"] != a["flipped"]


@pytest.mark.parametrize("rate", [-0.1, 0.5, 0.9, float("nan"), "0.1"])
def test_noise_rate_outside_range_is_named(rate):
    with pytest.raises(ValueError, match="noise rate must lie in"):
        flip_labels(rows(), rate)


def test_a_damaged_pairs_file_is_named_with_its_line(tmp_path):
    path = save_pairs(rows(3), tmp_path / "pairs.jsonl")
    assert load_pairs(path) == rows(3)
    path.write_text(path.read_text() + '{"prompt": "p9", "chosen": \n')  # a write cut short
    with pytest.raises(ValueError, match=r"pairs.jsonl, line 4: not a JSON object"):
        load_pairs(path)
    path.write_text('{"prompt": "p", "chosen": "c"}\n')
    with pytest.raises(ValueError, match=r"pairs.jsonl: missing column 'rejected'"):
        load_pairs(path)


def test_identical_pairs_are_counted_in_a_warning(caplog):
    r = rows(10)
    r[2]["rejected"] = r[2]["chosen"]
    with caplog.at_level("WARNING", logger="apo_utils"):
        validate_preferences(r)
    assert "1 of 10 pairs have chosen == rejected (rows 2)" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="apo_utils"):
        validate_preferences(rows(10))
    assert caplog.text == ""


def test_a_non_object_line_is_named(tmp_path):
    path = save_pairs(rows(2), tmp_path / "pairs.jsonl")
    path.write_text(path.read_text() + "[1, 2]\n")
    with pytest.raises(ValueError, match=r"pairs.jsonl, line 3: a JSON list, not an object"):
        load_pairs(path)


def test_make_pairs_refuses_a_non_finite_score_and_split_keeps_both_sides():
    from apo_utils.data import make_pairs, split_pairs

    with pytest.raises(ValueError, match=r"prompt 1, sample 0: score nan is not a finite number"):
        make_pairs(["a", "b"], [["x", "y"], ["x", "y"]], [[0.1, 0.2], [float("nan"), 0.2]])
    train, test = split_pairs(rows(2), 0.9)
    assert len(train) == 1 and len(test) == 1
    with pytest.raises(ValueError, match="at least 2"):
        split_pairs(rows(1), 0.5)


def test_every_pair_of_a_prompt_and_a_split_that_keeps_prompts_whole():
    from apo_utils.data import make_pairs, split_pairs

    prompts = [f"p{i}" for i in range(10)]
    samples = [[f"{p} s{j}" for j in range(4)] for p in prompts]
    scores = [[0.1 * j - 0.05 * i for j in (2, 0, 3, 1)] for i in range(10)]  # best = s2, worst = s1
    high = make_pairs(prompts, samples, scores, "high", seed=0, every_pair=True)
    low = make_pairs(prompts, samples, scores, "low", seed=0, every_pair=True)
    assert len(high) == 10 * 6 and len(low) == 10 * 4
    first = {frozenset((r["chosen"], r["rejected"])) for r in high if r["prompt_id"] == 0}
    assert len(first) == 6  # every pair of the four samples, once
    lows = {frozenset((r["chosen"][-2:], r["rejected"][-2:])) for r in low if r["prompt_id"] == 0}
    assert lows == {frozenset(x) for x in [("s2", "s1"), ("s2", "s3"), ("s0", "s1"), ("s0", "s3")]}  # top 2 x bottom 2
    assert np.mean([abs(r["true_margin"]) for r in low]) > np.mean([abs(r["true_margin"]) for r in high])
    train, test = split_pairs(high, 0.3, seed=1)
    assert {r["prompt_id"] for r in train}.isdisjoint({r["prompt_id"] for r in test})
    assert len({r["prompt_id"] for r in test}) == 3 and len(train) + len(test) == len(high)
    # one pair a prompt: the old split by row, unchanged
    one = make_pairs(prompts, samples, scores, "high", seed=0)
    assert len(one) == 10 and [r["prompt_id"] for r in one] == list(range(10))


def test_low_tier_from_the_extremes_and_high_tier_from_the_first_samples():
    from apo_utils.data import make_pairs

    prompts = [f"p{i}" for i in range(6)]
    samples = [[f"{p} s{j}" for j in range(8)] for p in prompts]
    scores = [[0.1 * j for j in (5, 0, 7, 2, 6, 1, 3, 4)] for _ in prompts]  # best s2, s4; worst s1, s5
    low = make_pairs(prompts, samples, scores, "low", seed=0, every_pair=True, extremes=2)
    lows = {frozenset((r["chosen"][-2:], r["rejected"][-2:])) for r in low if r["prompt_id"] == 0}
    assert lows == {frozenset(x) for x in [("s2", "s1"), ("s2", "s5"), ("s4", "s1"), ("s4", "s5")]}
    assert all(abs(r["true_margin"]) >= 0.5 - 1e-9 for r in low)  # ranks 1-2 against 7-8 of eight
    halves = make_pairs(prompts, samples, scores, "low", seed=0, every_pair=True)
    assert len(halves) == 6 * 16 and len(low) == 6 * 4
    assert len(make_pairs(prompts, samples, scores, "low", seed=0, every_pair=True, extremes=9)) == 6 * 16
    high = make_pairs(prompts, samples, scores, "high", seed=0, every_pair=True, high_samples=5)
    assert len(high) == 6 * 10
    assert {t for r in high for t in (r["chosen"][-2:], r["rejected"][-2:])} == {"s0", "s1", "s2", "s3", "s4"}
    for bad in (0, True, 1.5):
        with pytest.raises(ValueError, match="extremes must be a whole number"):
            make_pairs(prompts, samples, scores, "low", every_pair=True, extremes=bad)
    with pytest.raises(ValueError, match="high_samples must be a whole number >= 2"):
        make_pairs(prompts, samples, scores, "high", every_pair=True, high_samples=1)
