"""What a user needs to reuse and cite the kit agrees with the package: the licence pyproject declares is the file
shipped, and the citation names the same version and repository as the package and the Colab badges."""

import tomllib

import yaml

from apo_utils import colab
from apo_utils.storage import repo_root


def test_the_licence_file_is_the_one_pyproject_declares():
    project = tomllib.loads((repo_root() / "pyproject.toml").read_text())["project"]
    assert project["license"] == {"text": "Apache-2.0"}
    text = (repo_root() / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text and "END OF TERMS AND CONDITIONS" in text


def test_the_citation_file_matches_the_package():
    project = tomllib.loads((repo_root() / "pyproject.toml").read_text())["project"]
    cff = yaml.safe_load((repo_root() / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0" and cff["title"] and cff["authors"]
    assert cff["version"] == project["version"] and cff["license"] == "Apache-2.0"
    assert cff["repository-code"] == colab.REPO_URL
