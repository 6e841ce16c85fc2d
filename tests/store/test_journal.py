"""The journal keeps every paid task it cannot act on: an entry of a plug-in that is not
installed here, or of a model that left the catalogue, survives compaction as it was."""

from __future__ import annotations

import json
from pathlib import Path

from nbpipe.store.journal import Journal, unfinished

KEY = "a" * 64
OURS = "b" * 64


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def write(path: Path, records: list[object]) -> None:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n"
                            for r in records))


ACME = [{"op": "intent", "key": KEY, "take": 1, "frame": "hero", "backend": "acme",
         "request": {"model": "acme-1", "prompt": "a kite", "params": {}}, "account": "x"},
        {"op": "sent", "key": KEY, "take": 1, "body": "{\"prompt\": \"a kite\"}"},
        {"op": "task", "key": KEY, "take": 1, "task_id": "acme-task-7"}]
HIAPI = {"op": "intent", "key": OURS, "take": 1, "frame": "a", "backend": "hiapi",
         "request": {"model": "Nano-Banana", "prompt": "x", "params": {}}}


def test_an_entry_of_a_backend_not_installed_survives_compaction(tmp_path):
    path = tmp_path / "journal.jsonl"
    write(path, [ACME[0], HIAPI, ACME[1], "{torn", {"op": "done", "key": OURS, "take": 1,
                                                      "digest": "c" * 64}, ACME[2],
                 {"op": "reported", "key": OURS, "take": 1}])
    journal = Journal(path)
    assert journal.open == {} and list(journal.kept) == [(KEY, 1)]
    journal.close()
    assert lines(path) == ACME  # as it was, never acted on here
    again = Journal(path)
    again.close()
    assert lines(path) == ACME  # and again


def test_a_model_that_left_the_catalogue_is_kept_too(tmp_path):
    path = tmp_path / "journal.jsonl"
    gone = {**HIAPI, "request": {"model": "Nano-Banana-0", "prompt": "x", "params": {}}}
    write(path, [gone])
    Journal(path).close()
    assert lines(path) == [gone]


def test_its_outcome_closes_it_and_damage_is_not_kept(tmp_path):
    path = tmp_path / "journal.jsonl"
    bad_shape = {**HIAPI, "key": OURS, "request": {"model": "Nano-Banana", "prompt": 5}}
    write(path, [*ACME, {"op": "closed", "key": KEY, "take": 1, "why": "collected"},
                 bad_shape, {**ACME[0], "key": "not-a-digest"}, {"op": "intent"}])
    journal = Journal(path)
    assert journal.kept == {} and journal.open == {}
    journal.close()
    assert path.read_text() == ""


def test_a_build_says_what_it_keeps_and_keeps_it(make_project, run):
    root = make_project("version: 1\ntargets:\n  a: {prompt: a red kite}\n")
    path = root / ".nbpipe" / "journal.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    write(path, ACME)
    result = run("-C", str(root), "build", "--backend", "preview")
    assert result.code == 0, result
    assert "1 journal entry of a backend or model this nbpipe does not know (acme/acme-1): " \
        "kept, not sent; a build with that plug-in or model collects them" in result.out + result.err
    assert lines(path) == ACME


def test_a_paid_request_waits_in_the_journal_until_a_summary_says_it(tmp_path):
    """Its image done (or closed as billed), but no summary said yet (the build was killed):
    the entry survives compaction for the next build to report; `summary_said` lets it go."""
    path = tmp_path / "journal.jsonl"
    gemini = {**HIAPI, "key": KEY, "backend": "gemini",
              "request": {"model": "gemini-3.1-flash-image", "prompt": "y", "params": {}}}
    write(path, [HIAPI, gemini, {"op": "done", "key": OURS, "take": 1, "digest": "c" * 64},
                 {"op": "closed", "key": KEY, "take": 1, "why": "lost", "billed": True}])
    journal = Journal(path)
    assert journal.open == {}
    assert {slot: e.ended for slot, e in journal.unreported.items()} == \
        {(OURS, 1): "done", (KEY, 1): "closed"}
    journal.close()
    again = Journal(path)  # compacted, and read back the same
    assert {slot: e.ended for slot, e in again.unreported.items()} == \
        {(OURS, 1): "done", (KEY, 1): "closed"}
    again.summary_said()  # a build that counted neither (another account's, say)
    assert again.unreported.keys() == {(OURS, 1), (KEY, 1)}
    for key, take in list(again.unreported):
        again.counting(key, take)
    again.summary_said()
    again.close()
    assert path.read_text() == "" and Journal(path).unreported == {}


def test_a_request_closed_unbilled_or_already_reported_is_let_go(tmp_path):
    path = tmp_path / "journal.jsonl"
    other = {**HIAPI, "key": KEY}
    write(path, [HIAPI, other, {"op": "reported", "key": OURS, "take": 1},
                 {"op": "done", "key": OURS, "take": 1, "digest": "c" * 64},
                 {"op": "closed", "key": KEY, "take": 1, "why": "HTTP 400"}])
    journal = Journal(path)
    assert journal.unreported == {} and journal.open == {}


def test_unfinished_names_open_and_unsaid_takes_and_moves_nothing(tmp_path, monkeypatch):
    """What gc keeps (ops/maintain.py): the takes of a build that stopped before pinning them.
    An entry a summary said, or one closed unbilled, is finished; reading moves no journal
    aside, even one not read whole (that is the next build's to say)."""
    path = tmp_path / "journal.jsonl"
    said, refused, left = ({**HIAPI, "key": k} for k in ("d" * 64, "e" * 64, "f" * 64))
    write(path, [HIAPI, {"op": "done", "key": OURS, "take": 1, "digest": "c" * 64},
                 said, {"op": "done", "key": said["key"], "take": 1, "digest": "c" * 64},
                 {"op": "reported", "key": said["key"], "take": 1},
                 refused, {"op": "closed", "key": refused["key"], "take": 1, "why": "HTTP 400"},
                 left, {"op": "task", "key": left["key"], "take": 1, "task_id": "tk-1"}])
    assert unfinished(path) == {(OURS, 1), (left["key"], 1)}
    assert unfinished(tmp_path / "none.jsonl") == set()
    before = path.read_bytes()
    first_two = sum(len(line) for line in before.splitlines(keepends=True)[:2])
    monkeypatch.setattr("nbpipe.store.journal.JOURNAL_CAP", first_two)
    assert unfinished(path) == {(OURS, 1)}  # what was read is kept; nothing is moved
    assert [p.name for p in tmp_path.iterdir()] == ["journal.jsonl"]
    assert path.read_bytes() == before
