"""A `.nbpipe/` that git tracks is refused: a pull request could commit take records (a request
key mapped to any image) or a fingerprint (nothing to check), and CI would trust them. Real git
repositories in temp dirs; the no-op fast path stays free of git."""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

import pytest

CABIN = """\
version: 1
targets:
  a: {prompt: "a cabin"}
"""


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com",
                           "-c", "init.defaultBranch=main", *args], cwd=cwd, check=True,
                          capture_output=True, text=True)
    return done.stdout


def committed_clone(make_project, run, tmp_path: Path) -> Path:
    """A project built and committed with its cache (outputs ignored), checked out afresh,
    as CI checks out a pull request."""
    author = make_project(CABIN)
    (author / ".gitignore").write_text("out/\n")  # .nbpipe/ forgotten
    assert run("-C", str(author), "build").code == 0
    git(author, "init", "-q")
    git(author, "add", "-A")
    git(author, "commit", "-qm", "assets")
    ci = tmp_path / "ci"
    git(tmp_path, "clone", "-q", str(author), str(ci))
    return ci


def refusal(ci: Path) -> str:
    folder = ci / ".nbpipe"
    tracked = git(folder, "ls-files").split()
    return (f"error: git tracks files in {folder}/ ({folder}/{tracked[0]} and "
            f"{len(tracked) - 1} more): nbpipe's cache and state are this machine's record of "
            "what was paid for, and a commit could forge them (map a frame to any image), so "
            "nbpipe will not use them\n"
            f"hint: untrack them (they stay on disk): git rm -r --cached {shlex.quote(str(folder))}"
            ", then add .nbpipe/ to .gitignore and commit\n")


@pytest.mark.parametrize("command", [("build",), ("build", "--check"), ("plan",),
                                     ("explain", "a")])
def test_a_committed_cache_is_refused_not_restored_from(command, make_project, run, tmp_path):
    ci = committed_clone(make_project, run, tmp_path)
    result = run("-C", str(ci), *command)
    assert (result.code, result.err) == (2, refusal(ci))
    assert not (ci / "out").exists()  # nothing "restored" from the committed take records


def test_a_committed_fingerprint_cannot_make_the_check_pass(make_project, run, tmp_path):
    ci = committed_clone(make_project, run, tmp_path)
    state_file = ci / ".nbpipe" / "state.json"
    state = json.loads(state_file.read_text())
    state["fingerprint"].update(inputs={}, outputs=[])  # what a forger commits: nothing to stat
    state_file.write_text(json.dumps(state))
    result = run("-C", str(ci), "build", "--check")  # out/a.png is missing
    assert (result.code, result.err) == (2, refusal(ci))


def test_untracking_the_cache_as_the_hint_says_lets_the_build_run(make_project, run, tmp_path):
    ci = committed_clone(make_project, run, tmp_path)
    git(ci, "rm", "-r", "-q", "--cached", ".nbpipe")
    (ci / ".gitignore").write_text("out/\n.nbpipe/\n")
    result = run("-C", str(ci), "build")
    assert (result.code, result.out.splitlines()[0]) == (
        0, "restored a  output missing · from the cache, free")
    assert run("-C", str(ci), "build").out == "nothing to do: 1 frame fresh\n"


def test_a_shared_cache_dir_that_git_tracks_is_refused(make_project, run, tmp_path, monkeypatch):
    root = make_project(CABIN)
    (root / ".gitignore").write_text(".nbpipe/\n")
    shared = root / "cache"
    monkeypatch.setenv("NBPIPE_CACHE_DIR", str(shared))
    assert run("-C", str(root), "build").code == 0
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "oops")
    (root / "out" / "a.png").unlink()
    result = run("-C", str(root), "build")
    assert result.code == 2
    assert result.err.startswith(f"error: git tracks files in {shared}/ ({shared}/")


def test_the_no_op_fast_path_runs_no_git(make_project, run, monkeypatch, capsys):
    from nbpipe import launch

    root = make_project(CABIN)
    (root / ".gitignore").write_text(".nbpipe/\n")
    git(root, "init", "-q")
    assert run("-C", str(root), "build").code == 0

    def no_process(*args, **kwargs):
        raise AssertionError(f"the fast path started a process: {args}")

    monkeypatch.setattr(subprocess, "run", no_process)
    monkeypatch.setattr(subprocess, "Popen", no_process)
    capsys.readouterr()
    assert launch.fast_noop(["-C", str(root), "build"]) == 0
    assert capsys.readouterr().out == "nothing to do: 1 frame fresh\n"
