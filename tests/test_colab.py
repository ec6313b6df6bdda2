"""The Colab path's one repository URL and one install cell (apo_utils/colab.py) are what README.md and every
notebook use, and nothing in the package pins torch in a way that would replace Colab's CUDA build."""

import json
import re
import tomllib
from pathlib import Path

import pytest

from apo_utils import colab

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
BADGE = re.compile(r"https://colab\.research\.google\.com/github/[^\s)\"'\\]+")
GIT_URL = re.compile(r"git\+(https://[^\s\"'@\\]+)")


def cells(nb: Path) -> list[dict]:
    return json.loads(nb.read_text())["cells"]


def test_readme_and_notebooks_point_at_the_one_repository_url():
    readme = (ROOT / "README.md").read_text()
    assert colab.REPO_URL in readme, "README.md must say which repository the badges and install cell point at"
    for text, where in [(readme, "README.md")] + [(nb.read_text(), nb.name) for nb in NOTEBOOKS]:
        for badge in BADGE.findall(text):
            assert badge == colab.badge_url(badge.rsplit("/", 1)[-1]), f"{where}: badge {badge} is not colab.badge_url"
        for url in GIT_URL.findall(text):
            assert url.removesuffix(".git") == colab.REPO_URL, f"{where}: installs from {url}, not colab.REPO_URL"
    for nb in NOTEBOOKS:
        assert f"({colab.badge_url(nb.name)})" in readme, f"README.md: no Colab badge for {nb.name}"
        badges = BADGE.findall("".join(cells(nb)[0]["source"]))
        assert badges == [colab.badge_url(nb.name)], f"{nb.name}: its first cell's badge is not colab.badge_url"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_notebook_installs_the_kit_with_the_one_install_cell(nb):
    code = [c for c in cells(nb) if c["cell_type"] == "code"]
    assert code and "".join(code[0]["source"]) == colab.INSTALL_CELL, (
        f"{nb.name}: its first code cell must be apo_utils.colab.INSTALL_CELL (python -m apo_utils.colab prints it)")


def test_the_install_cell_keeps_colabs_torch_and_brings_the_fallback():
    compile(colab.INSTALL_CELL, "install cell", "exec")
    assert '"-c"' in colab.INSTALL_CELL and "torch=={torch.__version__}" in colab.INSTALL_CELL
    assert not re.search(r'"/(tmp|root|home|content)/', colab.INSTALL_CELL), "no machine path in the notebooks' cell"
    assert colab.requirement() == f"apo-kit[colab] @ git+{colab.REPO_URL}@{colab.BRANCH}"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    torch_req = [r for r in project["dependencies"] if re.match(r"torch\b", r)]
    assert torch_req and all("==" not in r and "<" not in r for r in torch_req), torch_req
    extras = project["optional-dependencies"]
    assert set(extras["offline"]) <= set(extras[colab.EXTRA]), "the Colab extra must bring the offline Gemma"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_notebook_is_valid_nbformat_with_cell_ids(nb):
    """nbformat 4.5 wants a unique id on every cell: Jupyter and papermill add a missing one with a warning today,
    and nbformat says it will become an error."""
    import nbformat

    ids = [c.get("id") for c in cells(nb)]
    assert all(ids) and len(set(ids)) == len(ids), f"{nb.name}: cells without an id or with a repeated one"
    nbformat.validate(nbformat.reads(nb.read_text(), as_version=nbformat.NO_CONVERT))
