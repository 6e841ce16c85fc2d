"""Review finding on the journal's read cap (review2)."""

from __future__ import annotations

import json

import pytest

from nbpipe.store.journal import Journal

KEY = "b" * 64
CAP = 1 << 16  # stands for LOCK_CAP (512 MiB), which a real journal reaches as below


@pytest.mark.xfail(strict=True, reason="review2 finding 10: a journal over the read cap "
                   "(LOCK_CAP, 512 MiB: ~4,400 Gemini intents of a 119k-character bible, all "
                   "written before the one compaction at the end of a build, so a kill -9 late "
                   "in a big build leaves one) reads as empty, and close() then compacts that "
                   "empty reading over it: every open task, possibly billed call and unreported "
                   "payment in it is erased without a word")
def test_a_journal_over_the_read_cap_is_never_erased(tmp_path, monkeypatch):
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
    monkeypatch.setattr("nbpipe.store.journal.LOCK_CAP", CAP)
    Journal(path).close()  # a build on this cache
    monkeypatch.undo()
    assert (KEY, 1) in Journal(path).open  # the paid task is still there to collect


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
