"""Preference-dataset validation and label-flip noise."""

import json

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


# ----------------------------------------------------------------- round 3: margins, duplicates, text, files


def test_a_margin_that_overflows_float32_is_named():
    """1e39 is finite in Python but inf in the float32 the loss computes in: it used to fail at the first batch."""
    bad = rows(10)
    bad[5]["margin"] = 1e39
    with pytest.raises(ValueError, match=r"column 'margin' row 5 is 1e\+39.*float32"):
        validate_preferences(bad)
    with pytest.raises(ValueError, match=r"train_dataset: column 'margin' row 5 is -1e\+39.*float32"):
        validate_preferences([dict(r, margin=-r["margin"]) for r in bad], require_margin=True, where="train_dataset")
    edge = rows(10)
    edge[5]["margin"] = 3.0e38  # the largest float32 is 3.4e38: still a number there
    validate_preferences(edge)


def test_degenerate_margins_are_warned_about_when_a_loss_reads_them(caplog):
    negative = [dict(r, margin=-1.0 - r["margin"]) for r in rows(10)]
    with caplog.at_level("WARNING", logger="apo_utils"):
        validate_preferences(negative, require_margin=True, where="train_dataset")
    assert "train_dataset: all 10 margins are negative" in caplog.text and "swapped" in caplog.text
    caplog.clear()
    huge = [dict(r, margin=(r["margin"] + 1.0) * 1e6) for r in rows(10)]
    with caplog.at_level("WARNING", logger="apo_utils"):
        assert validate_preferences(huge, require_margin=True) is huge  # a warning, not an error
    assert "median |margin| is 5.5e+06" in caplog.text
    assert "MADPO's weight is exactly 1" in caplog.text and "MMPO's soft target" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="apo_utils"):
        validate_preferences(negative)  # margins not read by a loss (require_margin=False): nothing to say
        validate_preferences(huge)
        validate_preferences(rows(10), require_margin=True)  # sound margins
    assert caplog.text == ""


def test_a_repeated_pair_id_names_both_rows():
    r = [dict(x, pair_id=i) for i, x in enumerate(rows(10))]
    r[7]["pair_id"] = 2
    with pytest.raises(ValueError, match=r"column 'pair_id': row 2 and row 7 both have pair_id 2"):
        validate_preferences(r)
    with pytest.raises(ValueError, match=r"column 'pair_id': row 2 and row 7 both have pair_id 2"):
        validate_preferences(Dataset.from_list(r))


def test_identical_rows_are_counted_with_the_first_two_rows(caplog):
    r = rows(10)
    r[7] = dict(r[2])
    r[9] = dict(r[2])
    with caplog.at_level("WARNING", logger="apo_utils"):
        validate_preferences(r)
    expected = ("2 of 10 rows repeat an earlier row (same prompt, chosen and rejected): the first is row 7, "
                "a copy of row 2")
    assert expected in caplog.text


def test_split_keeps_a_prompt_whole_when_each_row_has_its_own_prompt_id():
    from apo_utils.data import split_pairs

    r = [dict(x, prompt=f"p{i % 5}", prompt_id=i) for i, x in enumerate(rows(20))]  # 5 prompts, 20 ids
    for seed in range(5):
        train, test = split_pairs(r, 0.4, seed=seed)
        assert {x["prompt"] for x in train}.isdisjoint({x["prompt"] for x in test})
        assert len(train) + len(test) == 20 and len({x["prompt"] for x in test}) == 2


@pytest.mark.parametrize("column", ["prompt", "chosen", "rejected"])
def test_half_an_emoji_is_named(column):
    """A lone surrogate passed validation, saving and loading, then killed training inside pyarrow."""
    bad = rows(5)
    bad[3][column] = "great \ud83d film"
    with pytest.raises(ValueError, match=rf"train_dataset: column '{column}' row 3 cannot be encoded as UTF-8.*lone"):
        validate_preferences(bad, where="train_dataset")
    conv = [{"prompt": [{"role": "user", "content": "Film?"}], "chosen": [{"role": "assistant", "content": "ok"}],
             "rejected": [{"role": "assistant", "content": "bad"}]} for _ in range(3)]
    conv[1]["chosen"] = [{"role": "assistant", "content": "\udc00"}]
    with pytest.raises(ValueError, match=r"column 'chosen' row 1 cannot be encoded as UTF-8"):
        validate_preferences(conv)


def test_a_surrogate_in_a_pairs_file_is_named_by_its_line(tmp_path):
    path = tmp_path / "mine.jsonl"
    lines = [json.dumps(r) for r in rows(3)]
    lines[2] = lines[2].replace('"good 2"', '"good \\ud83d"')  # JSON escapes decode to a lone surrogate
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"mine.jsonl: column 'chosen' line 3 cannot be encoded as UTF-8"):
        load_pairs(path)


def test_errors_in_a_file_with_blank_lines_name_the_file_line(tmp_path):
    path = tmp_path / "mine.jsonl"
    body = [json.dumps(r) for r in rows(5)]
    body[4] = json.dumps(dict(rows(5)[4], margin=float("nan")))
    path.write_text("\n".join([body[0], "", body[1], body[2], "", body[3], body[4]]) + "\n")
    with pytest.raises(ValueError, match=r"mine.jsonl: column 'margin' line 7 is nan"):
        load_pairs(path)


@pytest.mark.parametrize("text,words", [
    ("\ufeff" + json.dumps(rows(1)[0]) + "\n", r"line 1: the file starts with a byte-order mark \(BOM\).*without"),
    ("[\n" + json.dumps(rows(1)[0]) + "\n]\n", r"line 1: .*JSON array.*one JSON object per line"),
    (json.dumps(rows(1)[0]) + ",\n" + json.dumps(rows(2)[1]) + "\n", r"line 1: .*trailing comma.*drop it"),
    ('{"prompt": "p", "chosen": "c", "rejected": "r",}\n', r"line 1: .*trailing comma.*drop it"),
])
def test_a_fault_in_the_users_own_file_is_explained_without_re_run_advice(tmp_path, text, words):
    path = tmp_path / "mine.jsonl"
    path.write_bytes(text.encode("utf-8"))
    with pytest.raises(ValueError, match=words) as caught:
        load_pairs(path)
    assert "re-run the notebook" not in str(caught.value)


def test_a_damaged_file_the_kit_wrote_says_to_re_run_its_notebook(tmp_path):
    from apo_utils.data import pairs_path

    path = save_pairs(rows(3), pairs_path(tmp_path, "smoke", "high", "train"))
    path.write_text(path.read_text() + '{"prompt": "p9", "chosen": \n')
    with pytest.raises(ValueError, match=r"line 4: not a JSON object.*re-run the notebook that wrote it.*--only 01 "
                                         r"--profile smoke"):
        load_pairs(path)
    with pytest.raises(FileNotFoundError, match="check the path") as caught:
        load_pairs(tmp_path / "mine.jsonl")
    assert "01_imdb_preferences" not in str(caught.value)
