"""What each policy of the MMPO study trains (notebook 05): its loss, which labels and which margins, in one table.

MMPO's soft target σ(γ_bt Δ) (arXiv 2410.03145, §3, Eq. 6) is only as good as the margin Δ it is given, so a fair
DPO is told the same thing: DPO on truth-corrected labels knows what MMPO with the true margins knows (which
response is better, not by how much); DPO on the reward model's labels knows what MMPO with the reward model's
estimated margins knows. DPO on the labels as given is the paper's own baseline.
"""

from __future__ import annotations

from .ranking import oriented

# method -> (loss in apo_utils.losses, the column its margin comes from, the column whose sign sets the label)
POLICIES = {
    "dpo": ("dpo", None, None),  # the annotator's labels, a fifth of them wrong on the high tier
    "dpo_truth_labels": ("dpo", None, "true_margin"),  # each pair turned so that chosen is truly better
    "dpo_rm_labels": ("dpo", None, "margin"),  # each pair turned so that the reward model prefers chosen
    "mmpo": ("mmpo", "true_margin", None),  # soft targets from the true margins (an oracle)
    "mmpo_estimated": ("mmpo", "margin", None),  # soft targets from notebook 01's reward model
}


def knows(method: str) -> str:
    """What a policy is told beyond the annotator's labels, in words for a table."""
    loss, margin, label = POLICIES[method]
    if margin:
        return {"true_margin": "the true margin of every pair", "margin": "the reward model's margin"}[margin]
    return {None: "nothing more", "true_margin": "which response is truly better",
            "margin": "which response the reward model prefers"}[label]


def with_margin(rows: list[dict], column: str) -> list[dict]:
    """The rows with `column` as the margin a loss reads."""
    return [dict(r, margin=float(r[column])) for r in rows]


def training_rows(rows: list[dict], method: str) -> list[dict]:
    """The pairs `method` trains on: the same pairs in the same order for every method (a seed gives every method
    the same batches), turned where its label column disagrees, or carrying its margin column."""
    loss, margin, label = POLICIES[method]
    if label:
        return oriented(rows, by=label)[0]
    return with_margin(rows, margin) if margin else list(rows)


def gamma_bt_for(margin: str, gamma_bt: float) -> float:
    """The margin-to-target scale for a margin column: the study's for the true margins (VADER units), 1 for the
    reward model's (already in log-odds of a label). Reward models (notebook 05b) and policies (05) share it."""
    return gamma_bt if margin == "true_margin" else 1.0


# which soft targets MMPO can be given: name -> the margin column they come from
TARGET_MARGINS = {"true": "true_margin", "estimated": "margin"}


def loss_kwargs(method: str, gamma_bt: float) -> dict:
    """What MMPO's loss needs beyond the pairs: its gamma_bt for the margin it reads (`gamma_bt_for`)."""
    loss, margin, _ = POLICIES[method]
    if loss != "mmpo":
        return {}
    return {"gamma_bt": gamma_bt_for(margin, gamma_bt)}
