"""A pull request commits symbolic links and special files where nbpipe reads (issue #22,
findings 2, 3 and 10): the manifest, the lock, a bible reference or an input that leads out
of the project, a FIFO, a device, a huge file. Every command refuses with one message (exit
2), quotes nothing from outside, reads nothing without a bound, and the no-op fast path
trusts no state whose manifest is a symbolic link (SECURITY.md, "Symbolic links and special
files")."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from nbpipe import launch
from nbpipe.engine import noop
from nbpipe.projectfile import MANIFEST_CAP
from tests.conftest import tiny_png

SECRET = "machine github.com login ci password hunter2-SECRET"
MANIFEST = ("version: 1\ndefaults: {backend: preview}\n"
            "targets:\n  hero: {prompt: a red kite, output: out/hero.png}\n")
# Every command that reads the manifest, as a user or CI would run it.
COMMANDS = [("validate",), ("plan",), ("build",), ("build", "--check"), ("build", "--force"),
            ("report",), ("status",), ("graph",), ("show", "hero"),
            ("explain", "hero"), ("takes", "hero"), ("pull",)]


@pytest.fixture
def project(tmp_path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    (root / "nbpipe.yaml").write_text(MANIFEST)
    return root


@pytest.fixture
def secret(tmp_path) -> Path:
    """A file outside the project, shaped to fail validation with a quoted line."""
    path = tmp_path / "netrc"
    path.write_text(f"{SECRET}\n")
    return path


def _commands(run, root: Path, commands=COMMANDS):
    for args in commands:
        start = time.perf_counter()
        result = run("-C", str(root), *args)
        assert time.perf_counter() - start < 20, args
        if "No such command" in result.err:
            continue  # (a command this version does not have)
        yield args, result


def test_a_manifest_symlinked_out_of_the_project_is_refused_unread(project, secret, run):
    (project / "nbpipe.yaml").unlink()
    (project / "nbpipe.yaml").symlink_to(secret)
    for args, result in _commands(run, project):
        assert result.code == 2, (args, result.err)
        assert "hunter2" not in result.err + result.out, args
        assert "leads outside the project" in result.err, (args, result.err)
        assert "Traceback" not in result.err


def test_a_manifest_symlinked_inside_the_project_is_read(project, run):
    (project / "real.yaml").write_text(MANIFEST)
    (project / "nbpipe.yaml").unlink()
    (project / "nbpipe.yaml").symlink_to("real.yaml")
    assert run("-C", str(project), "validate").code == 0


def test_a_lock_symlinked_out_of_the_project_is_refused_unread(project, tmp_path, run):
    outside = tmp_path / "token.json"
    outside.write_text('{"version": 1, "frames": {"hero": "' + SECRET + '"}}')
    (project / "nbpipe.lock").symlink_to(outside)
    for args, result in _commands(run, project, [("plan",), ("build",), ("build", "--check"),
                                                 ("report",), ("gc",)]):
        assert result.code == 2, (args, result.err)
        assert "hunter2" not in result.err + result.out
        assert "leads outside the project" in result.err
    assert outside.read_text().startswith('{"version"')  # never rewritten through the link


@pytest.mark.parametrize("name", ["nbpipe.yaml", "nbpipe.lock"])
def test_dev_zero_is_refused_at_once(project, run, name):
    (project / name).unlink(missing_ok=True)
    (project / name).symlink_to("/dev/zero")
    for args, result in _commands(run, project, [("validate",), ("plan",), ("build",),
                                                 ("build", "--check")]):
        if name == "nbpipe.lock" and args == ("validate",):
            continue  # validate reads no lock
        assert result.code == 2, (args, result.err)
        assert "not read" in result.err and "Traceback" not in result.err


@pytest.mark.parametrize("name", ["nbpipe.yaml", "nbpipe.lock"])
def test_a_fifo_in_the_project_is_refused_without_blocking(project, run, name):
    (project / name).unlink(missing_ok=True)
    os.mkfifo(project / name)
    result = run("-C", str(project), "plan")
    assert result.code == 2, result.err
    assert "not a regular file" in result.err


@pytest.mark.parametrize("name", ["nbpipe.yaml", "nbpipe.lock"])
def test_a_file_past_the_cap_is_refused_unread(project, run, name):
    with open(project / name, "ab") as handle:  # sparse: costs no disk, would cost the memory
        handle.truncate(max(MANIFEST_CAP, 1 << 20) + 1 if name == "nbpipe.yaml" else 600 << 20)
    result = run("-C", str(project), "plan")
    assert result.code == 2, result.err
    assert "is larger than" in result.err


def test_a_bible_reference_or_input_symlinked_out_is_a_located_error(project, tmp_path, run):
    outside = tmp_path / "face.png"
    outside.write_bytes(tiny_png())
    (project / "refs").mkdir()
    (project / "refs" / "face.png").symlink_to(outside)
    (project / "in.png").symlink_to(outside)
    (project / "nbpipe.yaml").write_text(
        "version: 1\ndefaults: {backend: preview}\n"
        "bibles:\n  mira: {text: tall, references: [refs/face.png]}\n"
        "targets:\n  hero: {prompt: a kite, bible: mira, output: out/hero.png}\n"
        "  edit: {prompt: brighter, inputs: [in.png], output: out/edit.png}\n")
    for args, result in _commands(run, project, [("validate",), ("plan",), ("build",)]):
        assert result.code == 2, (args, result.err)
        assert "symbolic link out of the project" in result.err, result.err
        assert "Traceback" not in result.err


# --- the fast path -------------------------------------------------------------------------

def _fresh(project: Path, build) -> None:
    assert build(project)["code"] == 0
    for _ in range(2):  # until the fingerprint is written (a racy stat writes none)
        time.sleep(0.15)
        build(project)
    assert noop.still_fresh(project, noop.fingerprint_options(None, None),
                            project / ".nbpipe" / "journal.jsonl") is not None


def _swap_for_link(path: Path, target: Path) -> None:
    """Replace `path` by a symbolic link to `target`, keeping nothing of the old file."""
    path.unlink()
    path.symlink_to(target)


def test_the_fast_path_never_trusts_a_symlinked_manifest(project, build, tmp_path):
    _fresh(project, build)
    # The link's target has the bytes and the stat the fingerprint names (a runner's file whose
    # stat a pull request can foresee, here the very file): the link alone must make it doubt.
    path = project / ".nbpipe" / "state.json"
    state = json.loads(path.read_text())
    runner = tmp_path / "runner-file.yaml"
    runner.write_text(MANIFEST)
    _swap_for_link(project / "nbpipe.yaml", runner)
    seen = os.stat(runner)  # what the forger foresaw
    state["fingerprint"]["checkout"] = [seen.st_size, seen.st_mtime_ns, seen.st_ctime_ns,
                                        seen.st_ino]
    path.write_text(json.dumps(state))
    found = noop.check(project, noop.fingerprint_options(None, None),
                       project / ".nbpipe" / "journal.jsonl")
    assert found.fresh is None and "symbolic link" in found.why
    assert launch.probe(["-C", str(project), "build", "--check"]).summary is None


def test_the_fast_path_never_trusts_made_up_library_paths(project, build):
    _fresh(project, build)
    path = project / ".nbpipe" / "state.json"
    state = json.loads(path.read_text())
    state["fingerprint"]["libraries"] = {f"/nowhere/{i}.py": [] for i in range(4)}
    path.write_text(json.dumps(state))
    assert not noop._libraries_unchanged(state["fingerprint"]["libraries"])


def test_the_fast_path_reads_no_special_state_or_mark(project, build, tmp_path):
    _fresh(project, build)
    state = project / ".nbpipe" / "state.json"
    state.rename(tmp_path / "state.json")
    state.symlink_to("/dev/zero")
    start = time.perf_counter()
    assert launch.probe(["-C", str(project), "build"]).summary is None
    assert time.perf_counter() - start < 5
    state.unlink()
    (tmp_path / "state.json").rename(state)  # the same state as a plain file: trusted again
    assert launch.probe(["-C", str(project), "build"]).summary is not None
    unpushed = project / ".nbpipe" / "unpushed"
    unpushed.mkdir(exist_ok=True)
    mark = unpushed / f"{'0' * 64}.{'1' * 64}.remote"
    os.mkfifo(mark)
    with os.scandir(unpushed) as entries:  # a FIFO planted in a shared cache: no blocking
        assert not any(noop._marks_for(entry, "remote") for entry in entries)
