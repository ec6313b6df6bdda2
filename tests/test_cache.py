"""cached_map: a killed run resumes and loses no finished batch; a changed input never reads stale results."""

import os

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


def _square(batch):
    return [x * x for x in batch]


def _batch_files(tmp_path):
    return sorted(tmp_path.rglob("batch_*.json"))


@pytest.mark.parametrize("damage", ["short", "truncated", "empty", "not_a_list", "binary"])
def test_a_damaged_batch_file_is_named_and_recomputed(tmp_path, damage):
    items = list(range(10))
    assert cached_map(_square, items, 4, tmp_path, key={"k": 1}, progress=False) == [x * x for x in items]
    bad = _batch_files(tmp_path)[1]  # items 4..7
    text = bad.read_text()
    bad.write_bytes({"short": b"[16, 25]", "truncated": text[: len(text) // 2].encode(), "empty": b"",
                     "not_a_list": b'{"a": 1}', "binary": b"\xff\xfe\x00"}[damage])
    calls = []
    with pytest.warns(UserWarning, match=rf"{bad.name}.*damaged.*recomputing"):
        out = cached_map(lambda b: calls.append(b[0]) or _square(b), items, 4, tmp_path, key={"k": 1}, progress=False)
    assert out == [x * x for x in items]  # aligned: no item lost or shifted
    assert calls == [4]  # only the damaged batch was recomputed
    calls.clear()
    assert cached_map(lambda b: calls.append(b[0]) or _square(b), items, 4, tmp_path, key={"k": 1},
                      progress=False) == out
    assert calls == []  # repaired on disk


def test_a_complete_cache_is_read_without_writing(tmp_path, monkeypatch):
    import apo_utils.cache as cache

    items = list(range(7))
    want = cached_map(_square, items, 3, tmp_path, key={"k": 2}, progress=False)

    def no_writes(path, obj):
        raise PermissionError(13, "Read-only file system", str(path))

    monkeypatch.setattr(cache, "atomic_write_json", no_writes)
    assert cached_map(_square, items, 3, tmp_path, key={"k": 2}, progress=False) == want
    # A missing batch in a folder that cannot be written: an error naming the file, not a silent loss.
    _batch_files(tmp_path)[0].unlink()
    with pytest.raises(OSError, match=r"cannot write .*batch_00000000\.json.*writable"):
        cached_map(_square, items, 3, tmp_path, key={"k": 2}, progress=False)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_a_complete_cache_in_a_read_only_folder(tmp_path):
    items = list(range(7))
    want = cached_map(_square, items, 3, tmp_path, key={"k": 3}, progress=False)
    folders = [p for p in tmp_path.rglob("*") if p.is_dir()] + [tmp_path]
    for p in folders:
        p.chmod(0o555)
    try:
        assert cached_map(_square, items, 3, tmp_path, key={"k": 3}, progress=False) == want
    finally:
        for p in folders:
            p.chmod(0o755)


def test_a_bad_batch_size_is_named(tmp_path):
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match="batch_size"):
            cached_map(_square, [1, 2], bad, tmp_path, key={}, progress=False)


def test_damaged_json_and_safetensors_are_recognised(tmp_path):
    import torch
    from safetensors.torch import save_file

    from apo_utils.storage import read_json_or_none, safetensors_problem

    good = tmp_path / "r.json"
    good.write_text('{"reward": 0.5}')
    assert read_json_or_none(good) == {"reward": 0.5}
    assert read_json_or_none(tmp_path / "absent.json") is None
    for text in ('{"reward": 0.', "", "[1, 2]"):
        bad = tmp_path / "bad.json"
        bad.write_text(text)
        with pytest.warns(UserWarning, match=r"bad.json is damaged .*moved to bad.json.damaged"):
            assert read_json_or_none(bad) is None
        assert not bad.exists() and (tmp_path / "bad.json.damaged").read_text() == text  # kept for a look

    w = tmp_path / "w.safetensors"
    save_file({"a": torch.ones(100), "b": torch.zeros(3, 4)}, w)
    assert safetensors_problem(w) is None
    data = w.read_bytes()
    for cut in (len(data) - 1, len(data) // 2, 12, 0):
        w.write_bytes(data[:cut])
        assert safetensors_problem(w) is not None, cut
    w.write_bytes(data + b"\0")
    assert "padded" in safetensors_problem(w)
    assert safetensors_problem(tmp_path / "none.safetensors") == "missing"
