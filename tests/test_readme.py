"""README is a product surface: its manifests validate, its commands are the ones CI runs."""

from __future__ import annotations

import re

import pytest

from tests.conftest import REPO

README = (REPO / "README.md").read_text("utf-8")
YAML_BLOCKS = re.findall(r"^```yaml\n(.*?)^```", README, re.S | re.M)
MANIFESTS = [b for b in YAML_BLOCKS if re.search(r"^version: ", b, re.M)]
FRAGMENTS = [b for b in YAML_BLOCKS if b not in MANIFESTS]


def test_readme_has_a_tour_manifest_and_fragments():
    assert len(MANIFESTS) >= 1 and len(FRAGMENTS) >= 2


@pytest.mark.parametrize("block", MANIFESTS, ids=lambda b: b.split("\n", 3)[2][:30])
def test_every_readme_manifest_validates_as_written(block, make_project, run):
    result = run("-C", str(make_project(block)), "validate")
    assert result.code == 0, result.err


@pytest.mark.parametrize("block", FRAGMENTS, ids=lambda b: b.split(":", 1)[0])
def test_every_readme_fragment_validates_inside_the_tour(block, make_project, run):
    """A fragment (`cache:`, `profiles:`) is a part of a manifest: it must fit the tour's."""
    result = run("-C", str(make_project(MANIFESTS[0] + block)), "validate")
    assert result.code == 0, result.err


def test_readme_never_installs_the_unrelated_pypi_project():
    for text in (README, (REPO / "docs" / "ci.md").read_text("utf-8")):
        assert not re.search(r"pip install ['\"]?nbpipe\b(?!-images)", text)
    assert 'name = "nbpipe-images"' in (REPO / "pyproject.toml").read_text("utf-8")


def test_no_install_line_fetches_the_unpublished_name_from_an_index():
    """`nbpipe-images` is not on PyPI: `pip install nbpipe-images` fails today, and installs
    whoever registers the name tomorrow, in CI, next to the API keys. Docs install from a
    checkout or a pinned commit of the repository."""
    docs = [REPO / "README.md", REPO / "SECURITY.md", *(REPO / "docs").glob("*.md"),
            *(REPO / "docs").glob("*.yml"), *(REPO / "docs").glob("*.sh")]
    for path in docs:
        for line in path.read_text("utf-8").splitlines():
            for spec in re.findall(r"pip install\s+(?:-\w+\s+)*(['\"]?[^\s`'\"]+)", line):
                spec = spec.strip("'\"")
                assert spec.startswith((".", "/", "path/")) or \
                    ("@ git+" in line and  # a pinned commit (the workflow checks its variable)
                     re.search(r"@[0-9a-f]{7,40}|@COMMIT|@\$NBPIPE_COMMIT\b", line)), \
                    f"{path.name}: {line.strip()}"
