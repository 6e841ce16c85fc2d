"""The lock (stable text, helpful errors) and the state's stat cache."""

from __future__ import annotations

import json
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


def _lock_doc(frames: dict) -> dict:
    return {"version": 1, "frames": frames}


def _stored(n: int) -> dict:
    return {"backend": "preview", "model": "gemini-3.1-flash-image", "cost_usd": 0.0,
            "digest": f"{n:064x}", "key": f"{n + 1:064x}", "output": f"out/{n}.png"}


def test_a_sound_section_is_validated_at_once(monkeypatch):
    """One pydantic-core call for the whole section: entry by entry cost 0.4 s a 10,000-frame
    lock on every build that plans."""
    from nbpipe.store import lock as lock_module

    def one_by_one(doc):
        raise AssertionError("validated entry by entry")

    monkeypatch.setattr(lock_module._StoredEntry, "model_validate", one_by_one)
    lock = Lock.parse(_lock_doc({f"f{n}": _stored(n) for n in range(3)}))
    assert lock.entries["f2"] == LockEntry(f"{3:064x}", "out/2.png", f"{2:064x}", "preview",
                                           "gemini-3.1-flash-image", 0.0)


def test_a_bad_entry_in_a_section_is_left_out_with_its_line(capsys):
    frames = {"a": _stored(1), "b": {**_stored(2), "output": "../x.png"},
              "c": {**_stored(3), "model": "nope"}, "d": {**_stored(4), "lane": "standard"}}
    text = json.dumps(_lock_doc(frames), indent=2)
    lock = Lock.parse(json.loads(text), text=text)
    assert sorted(lock.entries) == ["a", "d"] and lock.entries["d"].lane is None
    err = capsys.readouterr().err
    assert "nbpipe.lock:" in err and "entry of frame 'b' ignored: 'output' '../x.png' climbs" \
        in err and "entry of frame 'c' ignored: unknown backend/model 'preview/nope'" in err


@pytest.mark.parametrize("fields", [
    {}, {"lane": "batch"}, {"cost_usd": 0}, {"cost_usd": 1e-7}, {"cost_usd": float("nan")},
    {"output": 'out/"caf\u00e9"\\\n\x01\u2028\ud800.png', "model": "m\u00fc/\t"},
    {"backend": None}, {"lane": "flex", "cost_usd": True},
])
def test_a_lock_line_is_the_json_of_its_fields(fields):
    from dataclasses import fields as fields_of

    from nbpipe.store.lock import _line

    entry = LockEntry(**{"key": "a" * 64, "output": "out/a.png", "digest": "b" * 64,
                         "backend": "gemini", "model": "gemini-3-pro-image", "cost_usd": 0.067,
                         **fields})
    written = {k: v for k, v in vars(entry).items() if not (k == "lane" and v is None)}
    assert _line(entry) == json.dumps(written, sort_keys=True, ensure_ascii=False)
    # the line names each field by hand: a new one must be written there too
    assert [f.name for f in fields_of(LockEntry)] == ["key", "output", "digest", "backend",
                                                       "model", "cost_usd", "lane"]


def test_state_is_parsed_once_a_command_unless_it_changed_since(tmp_path, monkeypatch):
    """The no-op check reads state.json (fast) before the build lock; the build reads it again
    under it: an unchanged, settled file is handed over, a changed one is read again."""
    import os
    import time

    import nbpipe.store.state as module
    from nbpipe.store.state import State

    folder = tmp_path / ".nbpipe"
    folder.mkdir()
    path = folder / "state.json"
    path.write_text('{"version": 1, "failed": {"f": "why"}}')
    old = time.time() - 5
    os.utime(path, (old, old))
    time.sleep(0.12)  # past the racy window: the ctime is the write's
    reads = []
    real = module.read_capped
    monkeypatch.setattr(module, "read_capped", lambda *a: reads.append(a) or real(*a))
    State(tmp_path, fast=True)
    assert State(tmp_path).data["failed"] == {"f": "why"}
    assert len(reads) == 1  # handed over, not parsed again
    State(tmp_path, fast=True)
    path.write_text('{"version": 1, "failed": {"g": "another"}}')  # another build, meanwhile
    assert State(tmp_path).data["failed"] == {"g": "another"}
    assert len(reads) == 3
    assert State(tmp_path).data["failed"] == {"g": "another"}  # handed over once only
    assert len(reads) == 4
