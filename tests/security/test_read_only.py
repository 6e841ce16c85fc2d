"""A read-only project or cache ends every command with one message and exit 1, never a
traceback and exit 3 (issue #22, finding 6; SECURITY.md, "A read-only project or cache").

A read-only place is made the way the running user allows: `chmod -w` for a user, a read-only
bind mount for root (whom chmod does not stop), else the test is skipped; a file standing where
a folder must be (ENOTDIR) fails every write the same way for anyone, and always runs."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

MANIFEST = ("version: 1\ndefaults: {backend: preview}\n"
            "targets:\n  hero: {prompt: a red kite, output: out/hero.png}\n")
COMMANDS = [("build", "--force"), ("report",), ("clean", "--orphans"), ("gc",), ("pull",),
            ("pin", "hero", "1"), ("build", "--check")]


@pytest.fixture
def built(tmp_path, run) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    (root / "nbpipe.yaml").write_text(MANIFEST)
    assert run("-C", str(root), "build").code == 0
    # stale, so `build --check` plans (and `pull` has a file to write) instead of the fast path
    (root / "out" / "hero.png").unlink()
    return root


def read_only(folder: Path, tmp_path: Path):
    """A read-only view of `folder`, and how to undo it; skips when neither way is allowed."""
    if os.geteuid() != 0:
        modes = {p: p.stat().st_mode for p in [folder, *folder.rglob("*")] if p.is_dir()}
        for path in modes:
            path.chmod(0o555)
        return folder, lambda: [p.chmod(m) for p, m in modes.items()]
    view = tmp_path / "read-only"
    view.mkdir()
    for args in (["mount", "--bind", str(folder), str(view)],
                 ["mount", "-o", "remount,ro,bind", str(view)]):
        if shutil.which("mount") is None or subprocess.run(args, capture_output=True).returncode:
            subprocess.run(["umount", str(view)], capture_output=True)
            pytest.skip("root, and no read-only bind mount allowed here")
    # lazy: a file the failed command left open must not keep the mount (and fail the test)
    return view, lambda: subprocess.run(["umount", "-l", str(view)], check=True)


def _no_traceback(result, args):
    assert result.code in (1, 2), (args, result.code, result.err)
    assert "Traceback" not in result.err and "internal error" not in result.err, result.err
    assert result.err.count("error:") == 1, result.err


@pytest.mark.parametrize("args", COMMANDS)
def test_a_read_only_project(built, tmp_path, run, args):
    view, undo = read_only(built, tmp_path)
    try:
        _no_traceback(run("-C", str(view), *args), args)
    finally:
        undo()


@pytest.mark.parametrize("args", COMMANDS)
def test_a_read_only_cache(built, tmp_path, run, monkeypatch, args):
    cache = tmp_path / "cache"
    shutil.copytree(built / ".nbpipe", cache, ignore=shutil.ignore_patterns("state.json"))
    view, undo = read_only(cache, tmp_path)
    monkeypatch.setenv("NBPIPE_CACHE_DIR", str(view))
    try:
        result = run("-C", str(built), *args)
        if result.code:
            _no_traceback(result, args)
    finally:
        undo()


@pytest.mark.parametrize("args", COMMANDS)
def test_a_file_where_the_cache_folder_must_be(built, tmp_path, run, monkeypatch, args):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("NBPIPE_CACHE_DIR", str(blocker / "cache"))
    result = run("-C", str(built), *args)
    assert "warning" not in result.err  # nothing there is nothing damaged
    if result.code:
        _no_traceback(result, args)
