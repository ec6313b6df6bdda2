"""The benchmark runs every loss and TRL's sigmoid on the same batch and reports comparable numbers."""

import math

from apo_utils import bench
from apo_utils import losses as L


def test_benchmark_on_the_tiny_model():
    res = bench.run("tiny", batch_size=4, rounds=2, log=lambda *_: None)
    assert set(res["losses"]) == {"trl_sigmoid", *L.LOSSES}
    assert res["losses"]["trl_sigmoid"]["ratio_to_trl_sigmoid"] == 1.0
    for r in res["losses"].values():
        assert r["median_s"] > 0 and math.isfinite(r["ratio_to_trl_sigmoid"]) and r["train_tokens_per_s"] > 0
    assert res["tokens_per_batch"] > 0 and res["generation_tokens_per_s"] > 0 and res["git"]["commit"]
