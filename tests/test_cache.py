"""cached_map: a killed run resumes and loses no finished batch; a changed input never reads stale results."""

import pytest

from apo_utils.cache import cached_map


class Boom(RuntimeError):
    pass


def test_kill_and_resume_recomputes_only_missing_batches(tmp_path):
    items = list(range(23))
    calls = []

    def dies_on_third(batch):
        calls.append(batch[0])
        if len(calls) == 3:
            raise Boom("killed")
        return [x * x for x in batch]

    with pytest.raises(Boom):
        cached_map(dies_on_third, items, 5, tmp_path, key={"step": "square"}, progress=False)
    assert calls == [0, 5, 10]
    calls.clear()
    out = cached_map(lambda b: calls.append(b[0]) or [x * x for x in b], items, 5, tmp_path,
                     key={"step": "square"}, progress=False)
    assert out == [x * x for x in items]
    assert calls == [10, 15, 20]  # batches 0 and 5 came from disk
    calls.clear()
    assert cached_map(lambda b: calls.append(1) or b, items, 5, tmp_path, key={"step": "square"},
                      progress=False) == out
    assert calls == []  # all on disk: fn not called (and not consulted: the cached squares come back)


def test_a_different_key_or_input_is_a_different_cache(tmp_path):
    a = cached_map(lambda b: [x + 1 for x in b], [1, 2, 3], 2, tmp_path, key={"seed": 0}, progress=False)
    b = cached_map(lambda b: [x + 2 for x in b], [1, 2, 3], 2, tmp_path, key={"seed": 1}, progress=False)
    c = cached_map(lambda b: [x + 3 for x in b], [1, 2, 4], 2, tmp_path, key={"seed": 0}, progress=False)
    assert (a, b, c) == ([2, 3, 4], [3, 4, 5], [4, 5, 7])
    assert not list(tmp_path.rglob("*.tmp"))  # atomic writes leave no temporaries


def test_wrong_result_count_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="returned 1 results for a batch of 2"):
        cached_map(lambda b: [0], [1, 2], 2, tmp_path, key={}, progress=False)
