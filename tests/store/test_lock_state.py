"""The lock (stable text, helpful errors) and the state's stat cache."""

from __future__ import annotations

import os

import pytest

from nbpipe.errors import UsageError
from nbpipe.store.lock import Lock, LockEntry
from nbpipe.store.state import State


def entry(key="a" * 64) -> LockEntry:
    return LockEntry(key=key, output="out/x.png", digest="b" * 64, backend="preview",
                     model="Nano-Banana", cost_usd=0.05)


def test_lock_text_is_sorted_and_only_written_when_changed(tmp_path):
    lock = Lock({"z": entry(), "a": entry()})
    assert lock.save(tmp_path) is True
    text = (tmp_path / "nbpipe.lock").read_text()
    assert text.index('"a"') < text.index('"z"') and text.endswith("}\n")
    mtime = (tmp_path / "nbpipe.lock").stat().st_mtime_ns
    assert Lock.load(tmp_path).save(tmp_path) is False
    assert (tmp_path / "nbpipe.lock").stat().st_mtime_ns == mtime


def test_merge_conflict_in_lock_is_a_clear_error(tmp_path):
    (tmp_path / "nbpipe.lock").write_text('{\n<<<<<<< HEAD\n  "version": 1\n=======\n')
    with pytest.raises(UsageError) as info:
        Lock.load(tmp_path)
    assert "is not a valid lock file" in str(info.value)
    assert "merge conflict" in info.value.hint


def test_stat_cache_rehashes_only_changed_files(tmp_path, monkeypatch):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x.png").write_bytes(b"one")
    state = State(tmp_path)
    first = state.output_digest("out/x.png")
    state.save()
    calls = []
    import nbpipe.store.state as module
    real = module.file_sha256
    monkeypatch.setattr(module, "file_sha256", lambda p: calls.append(p) or real(p))
    again = State(tmp_path)
    assert again.output_digest("out/x.png") == first and calls == []
    (tmp_path / "out" / "x.png").write_bytes(b"two!")
    assert again.output_digest("out/x.png") != first and len(calls) == 1
    os.remove(tmp_path / "out" / "x.png")
    assert again.output_digest("out/x.png") is None


def test_corrupt_state_is_ignored(tmp_path):
    (tmp_path / ".nbpipe").mkdir()
    (tmp_path / ".nbpipe" / "state.json").write_text("{not json")
    assert State(tmp_path).data == {"outputs": {}}


def test_the_lock_says_a_takes_lane_and_reads_a_lock_without_one(tmp_path):
    import json

    entry = dict(key="a" * 64, output="out/a.png", digest="b" * 64, backend="gemini",
                 model="gemini-3-pro-image", cost_usd=0.067)
    lock = Lock({"a": LockEntry(**entry, lane="batch"), "b": LockEntry(**entry)})
    lock.save(tmp_path)
    doc = json.loads((tmp_path / "nbpipe.lock").read_text())
    assert doc["frames"]["a"]["lane"] == "batch" and "lane" not in doc["frames"]["b"]
    again = Lock.load(tmp_path)
    assert (again.entries["a"].lane, again.entries["b"].lane) == ("batch", None)
    # written by hand as standard: the same as unsaid; a lane nbpipe does not know: ignored
    doc["frames"]["b"]["lane"] = "standard"
    doc["frames"]["a"]["lane"] = "overnight"
    (tmp_path / "nbpipe.lock").write_text(json.dumps(doc))
    read = Lock.load(tmp_path)
    assert read.entries["b"].lane is None and "a" not in read.entries
