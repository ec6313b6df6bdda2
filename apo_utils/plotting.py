"""One figure style for the whole kit: a fixed colour per method, labelled axes, PNG into figures/.

Baselines are drawn in cool/neutral tones, the four margin-adaptive methods in strong ones, and a
method keeps its colour in every notebook so a reader can compare figures across studies.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from .storage import atomic_write_bytes

METHOD_COLORS = {
    "dpo": "#4C72B0",
    "ipo": "#8C8C8C",
    "cdpo": "#64B5CD",
    "robust": "#2A9D8F",
    "beta_dpo": "#8172B3",
    "simpo": "#937860",
    "madpo": "#D1495B",
    "gamma_dpo": "#EDAE49",
    "gamma_simpo": "#C17C00",
    "amapo": "#00798C",
    "mmpo": "#6A994E",
    "mmpo_estimated": "#A7C957",  # MMPO with a reward model's margins: a lighter shade of MMPO's colour
    "bradley_terry": "#4C72B0",  # a reward model on hard labels: the counterpart of DPO, in DPO's colour
    "madpo_c2": "#F08A5D",  # MADPO's sensitivity point (c_max 2)
    "madpo_amplify": "#E8919B",  # MADPO ablations: lighter shades of MADPO's colour
    "madpo_dampen": "#8E1F2F",
}

METHOD_LABELS = {
    "dpo": "DPO", "ipo": "IPO", "cdpo": "cDPO", "robust": "rDPO (robust)", "beta_dpo": "β-DPO",
    "simpo": "SimPO", "madpo": "MADPO", "gamma_dpo": "γ-DPO", "gamma_simpo": "γ-SimPO", "amapo": "AMaPO",
    "mmpo": "MMPO", "mmpo_estimated": "MMPO (estimated margins)", "bradley_terry": "Bradley–Terry (hard labels)",
    "madpo_c2": "MADPO, c_max 2", "madpo_amplify": "MADPO, amplify only", "madpo_dampen": "MADPO, dampen only",
}

METHOD_ORDER = list(METHOD_COLORS)


def color(method: str) -> str:
    return METHOD_COLORS.get(method, "#333333")


def label(method: str) -> str:
    return METHOD_LABELS.get(method, method)


def apply_style():
    plt.rcParams.update({
        "figure.dpi": 110, "savefig.dpi": 130, "font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10,
        "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3,
        "legend.frameon": False, "figure.constrained_layout.use": True,
    })


def savefig(fig, path, record=None) -> Path:
    """Save as PNG atomically (a killed run never leaves half a figure) and list it in the run record."""
    import io

    path = Path(path).with_suffix(".png")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())
    if record is not None:
        record.add_figure(path)
    return path
