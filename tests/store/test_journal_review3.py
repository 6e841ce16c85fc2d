"""Review3 findings on the journal read line by line (store/journal.py `_lines`, `problem`)."""

from __future__ import annotations

import json

from nbpipe.store.journal import Journal

KEY, NEW = "b" * 64, "f" * 64
CAP = 1 << 16  # stands for JOURNAL_CAP (8 GiB)


def intent(key: str) -> dict:
    return {"op": "intent", "key": key, "take": 1, "frame": "a", "backend": "hiapi",
            "request": {"model": "Nano-Banana", "prompt": "a lighthouse", "params": {}}}


def test_a_task_recorded_after_the_cap_was_reached_is_collected_by_the_next_build(
        tmp_path, monkeypatch):
    path = tmp_path / "journal.jsonl"
    bulk = [intent(f"{n:064x}") for n in range(400)]
    path.write_text("".join(json.dumps(r) + "\n" for r in bulk))
    assert path.stat().st_size > CAP
    monkeypatch.setattr("nbpipe.store.journal.JOURNAL_CAP", CAP)
    build = Journal(path)
    assert build.problem
    build.intent(NEW, 1, "a", "hiapi", intent(NEW)["request"], "account-1")
    build.task(NEW, 1, "task-paid-for")  # left out as the build ends (a timeout, Ctrl-C)
    build.close()
    monkeypatch.undo()  # what was read, compacted, is itself over the lowered cap
    assert (NEW, 1) in Journal(path).open  # the next build on this cache collects it
