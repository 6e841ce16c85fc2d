"""Review findings on the journal's `unreported` and `kept` entries (review2): what a journal
in a shared cache, which others write, can make a build say or do."""

from __future__ import annotations

import io
import json
import os
import signal
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest

from nbpipe.engine.build import Build, BuildOptions
from nbpipe.events import BuildEnded, Event
from nbpipe.plan.planner import open_project
from nbpipe.store.cache import Cache
from nbpipe.store.journal import Journal
from nbpipe.store.lock import Lock
from nbpipe.store.state import State
from nbpipe.ui.events import TextEvents
from tests.engine.test_renderer import (
    HIAPI,
    HIAPI_PRICE,
    Recorded,
    Scripted,
    build,
    dies_at_the_summary,
)

THEIRS = "d" * 64


def plant(root: Path, records: list[dict]) -> None:
    path = root / ".nbpipe" / "journal.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def their_intent(account: str | None) -> dict:
    record = {"op": "intent", "key": THEIRS, "take": 1, "frame": "their/frame",
              "backend": "hiapi", "request": {"model": "Nano-Banana-Pro",
                                              "prompt": "not this project's", "params": {
                                                  "resolution": "4K"}}}
    return record if account is None else {**record, "account": account}


@pytest.mark.parametrize("ended", [
    {"op": "done", "key": THEIRS, "take": 1, "digest": "e" * 64},
    {"op": "closed", "key": THEIRS, "take": 1, "why": "lost", "billed": True},
])
def test_an_unreported_entry_of_another_account_is_not_this_builds_money(make_project, ended):
    root = make_project(HIAPI)
    plant(root, [their_intent("another-account"), ended])
    hiapi = Scripted("hiapi", ["ok"])  # pays from account-1
    summary, said = build(root, hiapi)
    assert [e.frame for e in said.frames() if e.journal] == []
    assert summary.spent + summary.spent_earlier == hiapi.billed == HIAPI_PRICE


def test_a_kept_entry_never_swallows_this_builds_own_intent(make_project):
    """A kept intent (a backend this nbpipe does not know) under the (key, take) a frame is
    about to use swallowed the build's own intent into `kept` (Entries.apply), and
    Renderer._entry then read journal.open[(key, take)]: KeyError, a traceback (review2).
    The take number skips kept entries as it skips open ones."""
    root = make_project(HIAPI)
    key = open_project(root).frames["a"].key
    plant(root, [{"op": "intent", "key": key, "take": 1, "frame": "x", "backend": "acme",
                  "request": {"model": "acme-1", "prompt": "x", "params": {}}}])
    hiapi = Scripted("hiapi", ["ok"])
    summary, _ = build(root, hiapi)
    assert (summary.rendered, summary.spent) == (1, HIAPI_PRICE)


@dataclass
class CtrlCAfterTheSummary(Recorded):
    """A Ctrl-C pressed just as the summary is printed: it lands after the print."""

    def emit(self, event: Event) -> None:
        super().emit(event)
        if isinstance(event, BuildEnded):
            os.kill(os.getpid(), signal.SIGINT)


def test_a_ctrl_c_just_after_the_summary_does_not_make_the_next_build_say_it_again(
        make_project):
    root = make_project(HIAPI)
    hiapi = Scripted("hiapi", ["ok"])
    sink = CtrlCAfterTheSummary()
    project, cache = open_project(root), Cache(root / ".nbpipe")
    journal = Journal(root / ".nbpipe" / "journal.jsonl")
    try:
        with pytest.raises(KeyboardInterrupt):
            Build(project, cache, Lock.load(root), State(root), journal, sink, BuildOptions(),
                  open_backend=lambda name, jobs, rpm: hiapi).run()
    finally:
        journal.close()
        cache.close()
    (said,) = [e.summary for e in sink.events if isinstance(e, BuildEnded)]
    assert said.spent == HIAPI_PRICE  # the first build said it
    second, _ = build(root, hiapi)
    assert said.spent + second.spent + second.spent_earlier == hiapi.billed  # once


def test_state_totals_count_a_request_once_when_its_build_dies_at_the_summary(make_project):
    root = make_project(HIAPI)
    hiapi = Scripted("hiapi", ["ok"])
    dies_at_the_summary(root, hiapi)
    build(root, hiapi)
    totals = State(root).data["totals"]
    assert Decimal(totals["spent_usd"]) + Decimal(totals.get("spent_earlier_usd", "0")) == \
        hiapi.billed


def test_a_task_counted_as_left_then_collected_is_not_reported_again(make_project,
                                                                     monkeypatch):
    """Journal.summary_said wrote `reported` only for counted entries still open: one counted
    as left out and then collected in the same build ended `done` with no `reported` line, so
    when compaction did not happen (a full disk: _close_journal swallows the OSError; a kill
    after the summary) it read back as unreported and the next build reported it again."""
    root = make_project(HIAPI)
    hiapi = Scripted("hiapi", ["still-out", "ok"])  # left out, then its end-of-build poll
    project, cache = open_project(root), Cache(root / ".nbpipe")
    journal = Journal(root / ".nbpipe" / "journal.jsonl")
    try:
        first = Build(project, cache, Lock.load(root), State(root), journal, Recorded(),
                      BuildOptions(), open_backend=lambda name, jobs, rpm: hiapi).run()
        with monkeypatch.context() as patch:  # compaction fails, as on a full disk
            patch.setattr("nbpipe.store.journal.atomic_write", fail_to_write)
            with pytest.raises(OSError):
                journal.close()  # (the workspace's _close_journal swallows it)
    finally:
        cache.close()
    assert first.spent == HIAPI_PRICE == hiapi.billed  # said, once, as left out
    second, _ = build(root, hiapi)
    assert first.spent + second.spent + second.spent_earlier == hiapi.billed


def fail_to_write(path: Path, data: bytes) -> None:
    raise OSError(28, "No space left on device")


def test_a_text_build_names_the_requests_an_earlier_build_paid_and_never_said(make_project):
    root = make_project(HIAPI.replace("  a:", "  lighthouse-17:"))
    hiapi = Scripted("hiapi", ["ok"])
    dies_at_the_summary(root, hiapi)
    out = io.StringIO()
    project, cache = open_project(root), Cache(root / ".nbpipe")
    journal = Journal(root / ".nbpipe" / "journal.jsonl")
    try:
        summary = Build(project, cache, Lock.load(root), State(root), journal, TextEvents(out),
                        BuildOptions(), open_backend=lambda name, jobs, rpm: hiapi).run()
    finally:
        journal.close()
        cache.close()
    assert summary.spent_earlier == HIAPI_PRICE
    assert any("lighthouse-17" in line for line in out.getvalue().splitlines())
