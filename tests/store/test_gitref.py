"""Reading images committed at a git commit (store/gitref.Committed)."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

from nbpipe.store.gitref import Committed

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


def test_an_object_missing_from_the_clone_skips_that_image_only(tmp_path):
    """A blob the clone does not hold (shallow, partial, damaged) is answered `missing` by
    cat-file: that image is not read, and the ones after it still are."""
    root = tmp_path / "repo"
    (root / "out").mkdir(parents=True)
    images = {"out/a.png": b"\x89PNG a", "out/b.png": b"\x89PNG b"}
    for name, data in images.items():
        (root / name).write_bytes(data)
    git(root, "init", "-q")
    git(root, "add", ".")
    git(root, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "x")
    commit = git(root, "rev-parse", "HEAD")
    gone = git(root, "rev-parse", "HEAD:out/a.png")
    committed = Committed(root, commit)
    try:
        digest = {name: hashlib.sha256(data).hexdigest() for name, data in images.items()}
        assert committed.image("out/b.png", digest["out/b.png"]) == images["out/b.png"]
        (root / ".git" / "objects" / gone[:2] / gone[2:]).unlink()  # listed, then gone
        assert committed.image("out/a.png", digest["out/a.png"]) is None
        assert committed.image("out/b.png", digest["out/b.png"]) == images["out/b.png"]
    finally:
        committed.close()
