"""What each run of the MADPO study trains (notebooks 02 and 02b): its loss, settings and pairs, in one table.

The two notebooks share it so that a frontier point of 02b (another beta, a variant) and one of 02 are the same
kind of run. `dpo_rm_labels` is DPO told what MADPO is told: MADPO re-weights each pair by the reward model's
margin (arXiv 2510.05342v1, §3), so a fair DPO may use the same reward model, here to set each pair's label by the
sign of that margin.
"""

from __future__ import annotations

from .ranking import oriented

MADPO = {"c_max": 4.0, "tau": 7.0}  # the paper's headline row (its README "Main Results") and its ablation's setting

# method -> (loss in apo_utils.losses, its settings)
METHODS = {
    "dpo": ("dpo", {}),
    "dpo_rm_labels": ("dpo", {}),  # the same loss on the reward model's labels (`training_rows`)
    "beta_dpo": ("beta_dpo", {"alpha": 0.6}),  # the authors' alpha; momentum 0.9 and keep 80 % are the defaults
    "madpo": ("madpo", MADPO),
    "ipo": ("ipo", {}),
    "madpo_c2": ("madpo", {**MADPO, "c_max": 2.0}),  # the paper's sensitivity point
    "madpo_amplify": ("madpo", {**MADPO, "mode": "amplify"}),  # ablation: w = max(w, 1)
    "madpo_dampen": ("madpo", {**MADPO, "mode": "dampen"}),  # ablation: w = min(w, 1)
}


def training_rows(study, method: str, tier: str) -> list[dict]:
    """The pairs `method` trains on: the tier's pairs, turned where the reward model disagrees with the label for
    `dpo_rm_labels` (same pairs, same order, so a seed gives every method the same batches)."""
    rows = study.train_rows(tier)
    return oriented(rows, by="margin")[0] if method == "dpo_rm_labels" else rows


def train(study, job: dict) -> dict:
    """One job of `MadpoSettings.jobs` / `companion_jobs` through `Study.policy`, measured on the 'test' pairs
    when the study has them."""
    loss, kwargs = METHODS[job["method"]]
    tier, scale = job.get("tier", job["setting"]), job.get("beta_scale", 1.0)  # a beta-sweep run names both
    if scale != 1.0:
        kwargs = {**kwargs, "beta": scale * study.policy_settings.beta}
    return study.policy(job["method"], loss, training_rows(study, job["method"], tier), seed=job["seed"], folder=tier,
                        loss_kwargs=kwargs, measure=tuple(k for k in ("test",) if k in study.sets))
