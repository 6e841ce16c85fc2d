"""The corruptions the security sweep found crashing nbpipe (exit 3), each now a miss, a
set-aside file with a warning, or a located error, and never a crash that repeats."""

from __future__ import annotations

import json

import diskcache
import pytest

from nbpipe.errors import EXIT_INTERNAL
from tests.security.test_store_fuzz import MANIFEST


@pytest.fixture
def project(make_project, build):
    root = make_project(MANIFEST)
    assert build(root)["code"] == 0
    return root


def index_records(root, change) -> None:
    with diskcache.Cache(str(root / ".nbpipe" / "index"), disk=diskcache.JSONDisk) as index:
        for name in [k for k in index.iterkeys() if k.startswith("key:")]:
            index[name] = change(index[name])


def twice(run, root, *args):
    """Run a command twice: the second run shows whether a crash would repeat."""
    return [run("-C", str(root), *args).code for _ in range(2)]


@pytest.mark.parametrize("change", [
    lambda r: {**r, "takes": "abc"},
    lambda r: {**r, "takes": ["abc", "def"]},
    lambda r: {**r, "takes": [{**t, "cost_usd": "lots"} for t in r["takes"]]},
    lambda r: {**r, "takes": [{**t, "digest": "../../../x"} for t in r["takes"]]},
    lambda r: {**r, "takes": [{**t, "created": "yesterday"} for t in r["takes"]]},
    lambda r: "not a record",
])
def test_damaged_index_records_are_misses(project, run, change):
    index_records(project, change)
    for path in (project / "out").iterdir():
        path.unlink()
    assert twice(run, project, "build", "*") == [0, 0]  # '*': never the no-op fast path
    assert run("-C", str(project), "gc").code == 0
    assert run("-C", str(project), "report").code == 0


@pytest.mark.parametrize("state", [
    {"version": 1, "outputs": []}, {"version": 1, "outputs": {"out/a.png": "x"}},
    {"version": 1, "orphans": {"/etc/passwd": "0" * 64}}, {"version": 1, "orphans": []},
    {"version": 1, "failed": [1]}, {"version": 1, "totals": {"spent_usd": "lots"}},
    {"version": 1, "unpushed": [[1, 2, 3]]}, {"version": 1, "fingerprint": {"inputs": []}},
    {"version": 1, "fingerprint": {"outputs": {"a": 1}, "frames": 3}},
])
def test_damaged_state_is_forgotten(project, run, state):
    (project / ".nbpipe" / "state.json").write_text(json.dumps(state))
    for command in (["build", "*"], ["build", "*"], ["clean", "--orphans"], ["report"], ["plan"]):
        assert run("-C", str(project), *command).code == 0, command


@pytest.mark.parametrize("entry", [
    {"request": {"model": "Nano-Banana", "params": ["x"]}},
    {"backend": "ftp"},
    {"request": "a string"},
    {"take": "nine"},
])
def test_damaged_journal_entries_never_repeat_a_crash(project, run, entry):
    key = json.loads((project / "nbpipe.lock").read_text())["frames"]["a"]["key"]
    intent = {"op": "intent", "key": key, "take": 9, "frame": "a", "backend": "preview",
              "request": {"model": "Nano-Banana", "prompt": "a fox", "params": {}}, **entry}
    (project / ".nbpipe" / "journal.jsonl").write_text(
        json.dumps(intent) + "\n" + json.dumps({"op": "task", "key": key, "take": 9,
                                                 "task_id": "t-9"}) + "\n")
    codes = twice(run, project, "build", "*")
    assert EXIT_INTERNAL not in codes


def test_a_directory_in_the_caches_tmp_is_swept(project, run):
    (project / ".nbpipe" / "tmp" / "stray" / "deeper").mkdir(parents=True)
    assert twice(run, project, "build", "--force") == [0, 0]
    assert not (project / ".nbpipe" / "tmp" / "stray").exists()
