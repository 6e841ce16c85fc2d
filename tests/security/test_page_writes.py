"""`report` and `review` write only inside the project, or where the user names (issue #22,
finding 4): a committed `out` symlink that leads outside is refused, and thumbnails a pull
request committed are remade, never shown (SECURITY.md, "Symbolic links and special files")."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

MANIFEST = ("version: 1\ndefaults: {backend: preview}\n"
            "targets:\n  hero: {prompt: a red kite, output: images/hero.png}\n")


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True,
                          text=True).stdout


@pytest.fixture
def built(tmp_path, run) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    (root / "nbpipe.yaml").write_text(MANIFEST)
    (root / ".gitignore").write_text(".nbpipe/\n")
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.email", "t@example.com")
    git(root, "config", "user.name", "t")
    assert run("-C", str(root), "build").code == 0
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "main")
    return root


@pytest.mark.parametrize("command", [("report",), ("review",), ("review", "--self-contained")])
def test_a_committed_out_symlink_is_not_written_through(built, tmp_path, run, command):
    outside = tmp_path / "victim"
    outside.mkdir()
    (built / "out").symlink_to(outside)
    (built / "nbpipe.yaml").write_text(MANIFEST.replace("red kite", "blue kite"))
    result = run("-C", str(built), *command)
    assert result.code == 2, result.err
    assert "leads out of the project through a symbolic link" in result.err
    assert list(outside.rglob("*")) == []


def test_a_page_folder_named_outside_the_project_is_the_users_choice(built, tmp_path, run):
    page = tmp_path / "elsewhere" / "index.html"
    assert run("-C", str(built), "report", "-o", str(page)).code == 0
    assert page.is_file()


def test_report_remakes_thumbnails_a_pull_request_committed(built, run):
    assert run("-C", str(built), "report").code == 0
    thumbs = sorted((built / "out" / "report-thumbs").glob("*.jpg"))
    assert thumbs
    made = thumbs[0].read_bytes()
    thumbs[0].write_bytes(b"forged by a pull request")
    git(built, "add", "-f", "out/report-thumbs")
    git(built, "commit", "-q", "-m", "pr")
    assert run("-C", str(built), "report").code == 0
    assert thumbs[0].read_bytes() == made
