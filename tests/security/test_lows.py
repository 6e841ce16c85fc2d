"""Issue #22, finding 12's lows outside the engine and the planner: a ref given to
`gc --remote --refs` is never a git option, and a console that cannot encode the output does
not turn a paid build into exit 3 (the Markdown links: tests/query/test_diff.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from nbpipe.errors import UsageError
from nbpipe.ops.maintain import pins_in_git

REPO = Path(__file__).resolve().parents[2]


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True)


@pytest.mark.parametrize("ref", ["--output=planted", "-oplanted", "no-such-branch"])
def test_a_ref_is_never_a_git_option_nor_silently_empty(tmp_path, ref, monkeypatch):
    git(tmp_path, "init", "-q", "-b", "main")
    (tmp_path / "nbpipe.lock").write_text('{"version": 1, "frames": {}}\n')
    git(tmp_path, "add", ".")
    git(tmp_path, "-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-qm", "x")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError):
        pins_in_git(tmp_path, (ref,))
    assert sorted(p.name for p in tmp_path.iterdir()) == [".git", "nbpipe.lock"]
    assert pins_in_git(tmp_path, ("main",))[1] == ["main"]


@pytest.mark.parametrize("encoding", ["ascii", "cp1252"])
def test_a_console_that_cannot_encode_the_output_is_no_internal_error(tmp_path, encoding):
    (tmp_path / "nbpipe.yaml").write_text(
        "version: 1\ndefaults: {backend: preview}\n"
        "targets:\n  ミラ: {prompt: a red kite ☂, output: out/mira.png}\n", "utf-8")
    env = {**os.environ, "PYTHONIOENCODING": encoding, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "nbpipe", "-C", str(tmp_path), "build"],
                          capture_output=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr.decode("utf-8", "replace")
    assert b"\\u30df\\u30e9" in done.stdout
    assert (tmp_path / "out" / "mira.png").is_file()


def test_a_base_lock_with_a_huge_model_name_is_refused(tmp_path, run):
    """A 60 MB model string in BASE's lock became the review page; now a located refusal."""
    git(tmp_path, "init", "-q", "-b", "main")
    (tmp_path / "nbpipe.yaml").write_text(
        "version: 1\ndefaults: {backend: preview}\n"
        "targets:\n  hero: {prompt: a red kite, output: out/hero.png}\n")
    entry = {"key": "a" * 64, "digest": "b" * 64, "output": "out/old.png", "backend": "preview",
             "model": "M" * (1 << 20), "cost_usd": 0.0}
    import json

    (tmp_path / "nbpipe.lock").write_text(json.dumps({"version": 1, "frames": {"old": entry}}))
    git(tmp_path, "add", ".")
    git(tmp_path, "-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-qm", "x")
    (tmp_path / "nbpipe.lock").unlink()
    for command in (("diff", "HEAD"), ("review", "HEAD")):
        result = run("-C", str(tmp_path), *command)
        assert result.code == 2, result.err
        assert "frame 'old' has a model or backend name of more than 200" in result.err
        assert "MMMM" not in result.err
