"""Review finding on the journal's read cap (review2)."""

from __future__ import annotations

import json

import pytest

from nbpipe.store.journal import Journal

KEY = "b" * 64
CAP = 1 << 16  # stands for JOURNAL_CAP (8 GiB)


def test_a_journal_over_the_read_cap_is_never_erased(tmp_path, monkeypatch):
    """A journal over the read cap read as empty, and close() compacted that empty reading over
    it: every open task, possibly billed call and unreported payment in it erased (review2,
    finding 10; ~4,400 Gemini intents of a 119k-character bible reached 512 MiB). It is read
    line by line now, to a far larger cap, and a journal not read whole is set aside whole."""
    path = tmp_path / "journal.jsonl"
    paid = [{"op": "intent", "key": KEY, "take": 1, "frame": "a", "backend": "hiapi",
             "request": {"model": "Nano-Banana", "prompt": "a lighthouse", "params": {}}},
            {"op": "task", "key": KEY, "take": 1, "task_id": "tk-hiapi-" + "A" * 26}]
    bulk = [{"op": "intent", "key": f"{n:064x}", "take": 1, "frame": f"f{n}",
             "backend": "gemini", "request": {"model": "gemini-3-pro-image",
                                               "prompt": "x" * 2000, "params": {}}}
            for n in range(40)]
    bulk += [{"op": "done", "key": r["key"], "take": 1, "digest": "c" * 64} for r in bulk]
    path.write_text("".join(json.dumps(r) + "\n" for r in [*paid, *bulk]))
    assert path.stat().st_size > CAP
    before = path.read_bytes()
    monkeypatch.setattr("nbpipe.store.journal.JOURNAL_CAP", CAP)
    capped = Journal(path)  # a build on this cache
    assert (KEY, 1) in capped.open and "only its start was read" in (capped.problem or "")
    assert "set aside as journal.jsonl.unread-" in (capped.problem or "")
    capped.close()
    monkeypatch.undo()
    (aside,) = path.parent.glob("journal.jsonl.unread-*")
    assert aside.read_bytes() == before  # set aside whole, never compacted over
    again = Journal(path)  # what was read goes on in a new journal
    assert (KEY, 1) in again.open and again.problem is None


def test_an_over_long_line_is_skipped_and_the_rest_stands(tmp_path, monkeypatch):
    path = tmp_path / "journal.jsonl"
    ours = {"op": "intent", "key": KEY, "take": 1, "frame": "a", "backend": "hiapi",
            "request": {"model": "Nano-Banana", "prompt": "a lighthouse", "params": {}}}
    monkeypatch.setattr("nbpipe.store.journal.LINE_CAP", 300)
    tail = {**ours, "key": "e" * 64}  # the end of an over-long line is not a line of its own
    path.write_text(" " * 301 + json.dumps(tail) + "\n" + json.dumps(ours) + "\n")
    journal = Journal(path)
    assert list(journal.open) == [(KEY, 1)] and journal.problem is None


def test_a_line_nested_too_deeply_is_skipped_not_a_crash(tmp_path):
    """A journal line nested deep enough to exhaust the stack (a shared cache's planted line)
    raised RecursionError out of Journal() (json.loads): every build on that cache ended with
    a traceback, exit 3 (review2). It is read through store.jsontext, as other untrusted
    JSON is: skipped, and the lines around it stand."""
    path = tmp_path / "journal.jsonl"
    ours = {"op": "intent", "key": KEY, "take": 1, "frame": "a", "backend": "hiapi",
            "request": {"model": "Nano-Banana", "prompt": "a lighthouse", "params": {}}}
    path.write_text("[" * 200_000 + "]" * 200_000 + "\n" + json.dumps(ours) + "\n")
    assert (KEY, 1) in Journal(path).open
