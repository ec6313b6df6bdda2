"""The researchers' page (book/own-data.md) runs as written, and its table of names says what the package does.

The page is the first thing a researcher copies from; a snippet that needs an undefined name, or a table that
lists a logged key the trainer does not log, costs them an afternoon. So the page is executed, not trusted.
"""

import math
import re
from collections import defaultdict
from pathlib import Path

import pytest
import torch

from apo_utils import losses as L
from apo_utils.objective import Objective
from apo_utils.trainer import log_loss_metrics

PAGE = Path(__file__).resolve().parents[1] / "book" / "own-data.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def table_rows(text: str) -> dict[str, dict]:
    """{loss_name: {'margin': bool, 'beta': str, 'logged': set}} from the page's table of names."""
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and re.fullmatch(r"`[a-z_]+`", cells[1]) and cells[2] in ("yes", "no"):
            rows[cells[1].strip("`")] = {"margin": cells[2] == "yes", "beta": cells[3],
                                         "logged": set(re.findall(r"`apo/([a-z_]+)`", cells[4]))}
    return rows


def logged_stats(name: str) -> set[str]:
    """The `apo/<key>` diagnostics the trainer logs for a loss besides the two every loss logs: what
    `trainer.log_loss_metrics` writes for one batch of random log-probs."""
    n, g = 8, torch.Generator().manual_seed(0)
    objective = Objective(name)
    logps = [torch.randn(n, generator=g) - 5 for _ in range(4)]
    if not objective.needs_reference:
        logps[2:] = [None, None]
    extra = {"margin": torch.randn(n, generator=g)} if objective.needs_margin else {}
    out = objective(*logps, chosen_lengths=torch.full((n,), 10.0), rejected_lengths=torch.full((n,), 10.0), **extra)
    metrics = defaultdict(list)
    log_loss_metrics(metrics, lambda x: x, out, *logps, beta=0.1)
    return {k.removeprefix("apo/") for k in metrics if k.startswith("apo/")} - {"ranking_accuracy", "grad_weight"}


def test_every_block_of_the_page_runs_in_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the blocks write their output_dir where they run
    blocks = python_blocks(PAGE.read_text())
    assert len(blocks) >= 3, "the page lost its examples"
    namespace = {}
    for i, block in enumerate(blocks):
        exec(compile(block, f"{PAGE.name}, python block {i + 1}", "exec"), namespace)
    trainer = namespace["trainer"]  # the last block's: the margin reward model
    first = trainer.state.log_history[0]
    assert math.isfinite(first["loss"]) and 0 < first["mmpo/target"] < 1


def test_the_table_of_names_matches_the_losses():
    rows = table_rows(PAGE.read_text())
    assert set(rows) == set(L.LOSSES), "every loss in the table, and nothing else"
    for name, row in rows.items():
        objective = Objective(name)
        assert row["margin"] == objective.needs_margin, name
        expected_beta = "`DPOConfig.beta`" if objective.needs_reference else f"{L.default_beta(name)}"
        assert row["beta"] == expected_beta, name
        assert row["logged"] == logged_stats(name), name


def test_the_table_parser_sees_a_wrong_row():
    text = PAGE.read_text().replace("| MADPO | `madpo` | yes |", "| MADPO | `madpo` | no |")
    assert table_rows(text)["madpo"]["margin"] is False
    with pytest.raises(KeyError):
        table_rows("| DPO | dpo | no | x | |")["dpo"]
