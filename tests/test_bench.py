"""The benchmark runs every loss and TRL's sigmoid on the same batch and reports comparable numbers."""

import math

import torch

from apo_utils import bench
from apo_utils import losses as L


def test_benchmark_on_the_tiny_model():
    res = bench.run("tiny", batch_size=4, rounds=2, log=lambda *_: None)
    assert set(res["losses"]) == {"trl_sigmoid", *L.LOSSES}
    assert res["losses"]["trl_sigmoid"]["ratio_to_trl_sigmoid"] == 1.0
    for r in res["losses"].values():
        assert r["median_s"] > 0 and math.isfinite(r["ratio_to_trl_sigmoid"]) and r["train_tokens_per_s"] > 0
    assert res["tokens_per_batch"] > 0 and res["generation_tokens_per_s"] > 0 and res["git"]["commit"]
    both = bench.combine([res, res])
    dpo = res["losses"]["dpo"]["ratio_to_trl_sigmoid"]
    assert both["repeats"] == 2 and both["losses"]["dpo"]["ratio_per_repeat"] == [dpo, dpo]
    assert both["worst_ratio"] == res["worst_ratio"]


def test_stateful_losses_are_timed_in_their_steady_state():
    """gamma-PO's per-step cost grows with its gap queue; the benchmark must time it with the queue full."""
    from types import SimpleNamespace

    from apo_utils.objective import Objective

    tr = SimpleNamespace(objective=Objective("gamma_simpo", beta=2.0, queue_size=300, opt_size=64))
    bench._steady_state(tr, seed=0)
    assert tr.objective.queue.shape == (300,)
    ctx = tr.objective._sample_context(torch.zeros(8))
    assert ctx.shape == (56,)  # opt_size - batch: the margin optimisation runs over 64 gaps, as in a long run


def test_result_files_are_named_by_the_device_as_the_committed_ones_are():
    assert bench.device_slug("cpu: x86_64, 2 cores") == "cpu-x86-64-2-cores"
    assert (bench.device_slug("cpu: x86_64, AMD EPYC, bf16 units: avx512_bf16, 2 cores")
            == "cpu-x86-64-amd-epyc-bf16-units-avx512-bf16-2-cores")
