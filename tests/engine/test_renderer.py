"""The never-pay-twice rules in memory: a real Build (journal, cache, lock on disk in tmp) with
a scripted backend injected through `open_backend`, so each rule runs in milliseconds.

Every build here also checks the event contract's first invariant (the frame events' costs sum
to spent + spent_earlier); the across-builds invariant (each paid request reported by exactly
one build) is checked against what the scripted backend billed.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import pytest
from PIL import Image

from nbpipe.backends.base import Job, Rendered, TaskStillOut
from nbpipe.backends.hiapi import create_body, wire
from nbpipe.engine.build import Build, BuildOptions
from nbpipe.errors import FrameFailed, ImageLost
from nbpipe.events import BuildEnded, Event, FrameDone, Status, Summary
from nbpipe.plan.frame import Request
from nbpipe.plan.planner import open_project
from nbpipe.store.cache import Cache
from nbpipe.store.journal import Journal
from nbpipe.store.lock import Lock
from nbpipe.store.state import State

HIAPI = "version: 1\ndefaults: {backend: hiapi, model: Nano-Banana}\ntargets:\n" \
    "  a: {prompt: a lighthouse}\n"
GEMINI = "version: 1\ndefaults: {backend: gemini, model: gemini-3.1-flash-image}\ntargets:\n" \
    "  a: {prompt: a lighthouse}\n"
HIAPI_PRICE, GEMINI_PRICE = Decimal("0.05"), Decimal("0.067")


class Crash(SystemExit):
    """The process dies here (kill -9): nothing after this line runs."""


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (4, 4), (200, 0, 0)).save(out, "PNG")
    return out.getvalue()


@dataclass
class Scripted:
    """A backend that plays one step per render: "ok", "lost-reply", "429", "crash-after-send",
    "crash-after-task", "still-out", "image-lost". `billed`: what the provider charged."""

    name: str
    script: list[str]
    account: str | None = "account-1"
    billed: Decimal = Decimal(0)
    bodies: list[str | None] = field(default_factory=list)  # the body each render sent
    resumed: list[str] = field(default_factory=list)  # task ids re-attached to
    tasks: int = 0

    async def render(self, request: object, inputs: list[object], sink: io.RawIOBase,
                     job: Job) -> Rendered:
        step = self.script.pop(0)
        price = HIAPI_PRICE if self.name == "hiapi" else GEMINI_PRICE  # the provider's bill
        if job.resume_task:
            self.resumed.append(job.resume_task)
            task = job.resume_task
        else:
            body = job.body or self.body(request)
            job.on_send(body)  # journalled before it is sent
            if step == "crash-after-journal":
                raise Crash()  # between the journal and the call: nothing was sent
            self.bodies.append(f"create {job.take}" if body == self.body(request) else body)
            if step == "429":
                raise FrameFailed("HTTP 429: too many requests", retry_later=True)
            self.billed += price
            if step == "lost-reply":
                raise FrameFailed("the reply was lost", maybe_billed=True)
            if step == "crash-after-send":
                raise Crash()
            task = f"task-{job.take}"
            if self.name == "hiapi":
                self.tasks += 1
                job.on_task(task)
        if step == "crash-after-task":
            raise Crash()
        if step == "still-out":
            raise TaskStillOut(f"task {task} is still running")
        if step == "image-lost":
            raise ImageLost(f"task {task}: its output URL is gone")
        sink.write(png())
        return Rendered(task if self.name == "hiapi" else None)

    def body(self, request: object) -> str:
        """The body a render of `request` sends: HiAPI's own (a journalled create is resent
        only if it is the body the frame makes now), else a stand-in."""
        assert isinstance(request, Request)
        return wire(create_body(request, [])) if self.name == "hiapi" else "the body"

    async def aclose(self) -> None:
        return None


@dataclass
class Recorded:
    events: list[Event] = field(default_factory=list)

    def emit(self, event: Event) -> None:
        self.events.append(event)

    def frames(self) -> list[FrameDone]:
        return [e for e in self.events if isinstance(e, FrameDone)]


def build(root: Path, backend: Scripted, **options: object) -> tuple[Summary, Recorded]:
    """One build against `backend`; checks invariant 1 on what it said."""
    project = open_project(root)
    cache = Cache(root / ".nbpipe")
    journal = Journal(root / ".nbpipe" / "journal.jsonl")
    sink = Recorded()
    try:
        summary = Build(project, cache, Lock.load(root), State(root), journal, sink,
                        BuildOptions(**options),  # type: ignore[arg-type]
                        open_backend=lambda name, jobs, rpm: backend).run()
    finally:
        journal.close()
        cache.close()
    costs = sum((e.cost for e in sink.frames()), Decimal(0))
    assert costs == summary.spent + summary.spent_earlier  # invariant 1
    return summary, sink


def crash(root: Path, backend: Scripted) -> None:
    with pytest.raises(Crash):
        build(root, backend)


def open_entries(root: Path) -> list[object]:
    journal = Journal(root / ".nbpipe" / "journal.jsonl")
    try:
        return list(journal.open.values())
    finally:
        journal.close()


def test_a_lost_reply_on_the_call_lane_is_counted_and_never_resent(make_project):
    root = make_project(GEMINI)
    gemini = Scripted("gemini", ["lost-reply", "ok"])
    summary, said = build(root, gemini)
    assert (summary.failed, summary.maybe_billed, gemini.bodies) == (1, 1, ["create 1"])
    assert summary.spent == summary.maybe_billed_usd == GEMINI_PRICE  # inside spent
    (event,) = said.frames()
    assert (event.status, event.billing, event.cost) == (Status.FAILED, "maybe_billed",
                                                         GEMINI_PRICE)
    assert open_entries(root) == []  # closed: no later build announces it again
    again, _ = build(root, gemini)  # the frame is still needed: a new request, said as such
    assert (again.rendered, again.spent, again.maybe_billed) == (1, GEMINI_PRICE, 0)


def test_a_429_is_not_billed_and_not_counted(make_project):
    root = make_project(GEMINI)
    gemini = Scripted("gemini", ["429"])
    summary, said = build(root, gemini)
    assert (summary.failed, summary.spent, summary.maybe_billed, gemini.billed) == \
        (1, 0, 0, 0)
    assert said.frames()[0].cost == 0


def test_a_crash_between_journal_and_call_resends_the_same_bytes_once(make_project):
    root = make_project(HIAPI)
    hiapi = Scripted("hiapi", ["crash-after-journal", "ok"])
    crash(root, hiapi)
    (entry,) = open_entries(root)
    assert entry.body == Scripted("hiapi", []).body(open_project(root).frames["a"].request) and hiapi.billed == 0
    summary, _ = build(root, hiapi)
    assert hiapi.bodies == ["create 1"]  # the journalled body, byte for byte, under take 1
    assert (summary.rendered, summary.spent, summary.spent_earlier) == (1, HIAPI_PRICE, 0)
    assert open_entries(root) == []


def test_a_task_is_resumed_after_a_crash_and_counted_once_as_earlier(make_project):
    root = make_project(HIAPI)
    hiapi = Scripted("hiapi", ["crash-after-task", "ok"])
    crash(root, hiapi)  # the task exists and is paid; the build died before saying so
    summary, said = build(root, hiapi)
    assert (hiapi.resumed, hiapi.tasks) == (["task-1"], 1)  # polled, not created again
    assert (summary.spent, summary.spent_earlier) == (0, HIAPI_PRICE)
    assert summary.spent_earlier == hiapi.billed  # invariant 2: reported once, here
    assert "paid by an interrupted build" in summary.line()
    assert [e.status for e in said.frames() if not e.journal] == [Status.RENDERED]


def test_a_task_left_out_is_reported_by_its_build_and_free_for_the_collector(make_project,
                                                                             monkeypatch):
    """A provider that bills a failed task all the same (a plug-in's default): the build that
    leaves the task out counts it, and the collector counts nothing."""
    monkeypatch.setattr("nbpipe.engine.renderer.counted_on_landing", lambda name: False)
    root = make_project(HIAPI)
    hiapi = Scripted("hiapi", ["still-out", "still-out", "ok"])  # its end-of-build poll too
    first, said = build(root, hiapi)
    (event,) = said.frames()
    assert (event.status, event.cost, event.due, first.left, first.left_usd, first.due_usd) == \
        (Status.LEFT, HIAPI_PRICE, 0, 1, HIAPI_PRICE, 0)
    assert first.spent == HIAPI_PRICE and first.exit_code == 1
    assert "USD 0.05 in 1 task(s) still out; the next build collects them" in first.line()
    (entry,) = open_entries(root)
    assert entry.reported  # the journal knows it was said
    second, said = build(root, hiapi)
    assert hiapi.resumed == ["task-1", "task-1"] and second.rendered == 1
    assert (second.spent, second.spent_earlier) == (0, 0)  # already reported
    # invariant 2: each paid request in exactly one build's spent + spent_earlier
    assert first.spent + first.spent_earlier + second.spent + second.spent_earlier == \
        hiapi.billed


def test_a_task_left_out_is_due_until_it_lands_and_counted_by_its_collector(make_project):
    """HiAPI bills no failed task: the build that leaves a task out says its price as due, not
    spent (it may yet fail); the build that collects its image counts it, once."""
    root = make_project(HIAPI)
    hiapi = Scripted("hiapi", ["still-out", "still-out", "ok"])  # its end-of-build poll too
    first, said = build(root, hiapi)
    (event,) = said.frames()
    assert (event.status, event.cost, event.due, first.left, first.left_usd, first.due_usd) == \
        (Status.LEFT, 0, HIAPI_PRICE, 1, HIAPI_PRICE, HIAPI_PRICE)
    assert (first.spent, first.spent_earlier, first.exit_code) == (0, 0, 1)
    assert "spent USD 0.00 · USD 0.05 in 1 task(s) still out, not counted until they land; " \
        "the next build collects them" in first.line()
    (entry,) = open_entries(root)
    assert not entry.reported  # the collector counts it
    second, said = build(root, hiapi)
    assert hiapi.resumed == ["task-1", "task-1"] and second.rendered == 1
    assert (second.spent, second.spent_earlier) == (0, HIAPI_PRICE)  # paid by an earlier build
    assert first.spent + first.spent_earlier + second.spent + second.spent_earlier == \
        hiapi.billed
    third, _ = build(root, hiapi)
    assert (third.spent, third.spent_earlier) == (0, 0)


def test_a_lost_image_is_counted_lost_inside_spent(make_project):
    root = make_project(HIAPI)
    hiapi = Scripted("hiapi", ["image-lost", "ok"])
    summary, said = build(root, hiapi)
    assert (summary.lost, summary.lost_usd, summary.spent) == (1, HIAPI_PRICE, HIAPI_PRICE)
    assert said.frames()[0].billing == "lost" and open_entries(root) == []
    again, _ = build(root, hiapi)  # closed: a new task, not the dead one
    assert (again.rendered, hiapi.tasks, hiapi.resumed) == (1, 2, [])


def test_a_gemini_request_in_flight_at_a_crash_is_said_once_as_earlier(make_project):
    root = make_project(GEMINI)
    gemini = Scripted("gemini", ["crash-after-send", "ok"])
    crash(root, gemini)
    summary, said = build(root, gemini)
    (announced,) = [e for e in said.frames() if e.journal]
    assert (announced.billing, announced.earlier, announced.cost) == \
        ("maybe_billed", True, GEMINI_PRICE)
    assert (summary.maybe_billed, summary.spent_earlier, summary.spent) == \
        (1, GEMINI_PRICE, GEMINI_PRICE)  # the old request, and the new one
    assert summary.spent + summary.spent_earlier == gemini.billed  # invariant 2
    third, _ = build(root, gemini)
    assert (third.spent, third.spent_earlier, third.maybe_billed) == (0, 0, 0)


def test_money_across_builds_is_never_reported_twice_nor_dropped(make_project):
    """Invariant 2 over a sequence: a crash after the task, a timeout, then a clean build."""
    root = make_project(HIAPI + "  b: {prompt: a harbour}\n")
    hiapi = Scripted("hiapi", ["crash-after-task"])
    crash(root, hiapi)
    hiapi.script = ["still-out", "ok", "ok"]  # recovery collects a's task; b times out
    reported = Decimal(0)
    for _ in range(2):
        summary, _ = build(root, hiapi, jobs=1)
        reported += summary.spent + summary.spent_earlier
    assert hiapi.billed == 2 * HIAPI_PRICE and reported == hiapi.billed
    assert open_entries(root) == []


@dataclass
class DiesAtTheSummary(Recorded):
    """A Ctrl-C that lands as the build says its summary: nothing of it is said."""

    def emit(self, event: Event) -> None:
        if isinstance(event, BuildEnded):
            raise KeyboardInterrupt
        super().emit(event)


def dies_at_the_summary(root: Path, backend: Scripted) -> None:
    project = open_project(root)
    cache = Cache(root / ".nbpipe")
    journal = Journal(root / ".nbpipe" / "journal.jsonl")
    try:
        with pytest.raises(KeyboardInterrupt):
            Build(project, cache, Lock.load(root), State(root), journal, DiesAtTheSummary(),
                  BuildOptions(), open_backend=lambda name, jobs, rpm: backend).run()
    finally:
        journal.close()
        cache.close()


def test_a_task_left_out_by_a_build_that_dies_before_its_summary_is_reported_next(
        make_project):
    """The journal marks a left-out task reported only once the summary that counts it is
    said: a build interrupted before that said nothing, and the build that collects the task
    reports it (invariant 2: once, not never)."""
    root = make_project(HIAPI)
    hiapi = Scripted("hiapi", ["still-out", "still-out", "ok"])
    dies_at_the_summary(root, hiapi)
    (entry,) = open_entries(root)
    assert not entry.reported  # nothing said it
    second, _ = build(root, hiapi)
    assert second.rendered == 1 and second.spent_earlier == HIAPI_PRICE == hiapi.billed


@pytest.mark.parametrize("manifest, backend, script, price", [
    (HIAPI, "hiapi", ["ok"], HIAPI_PRICE),  # its image came
    (GEMINI, "gemini", ["lost-reply", "ok"], GEMINI_PRICE),  # closed, possibly billed
])
def test_what_a_build_paid_and_never_said_is_said_by_the_next(make_project, manifest, backend,
                                                               script, price):
    """A build killed after it paid for a request and ended it, but before its summary (a
    Ctrl-C or kill as it ends), said nothing: the next build reports it, once, as spent
    earlier; the one after reports nothing."""
    root = make_project(manifest)
    provider = Scripted(backend, script)
    dies_at_the_summary(root, provider)
    second, said = build(root, provider)
    (earlier,) = [e for e in said.frames() if e.journal]
    assert (earlier.earlier, earlier.cost) == (True, price)
    assert second.spent_earlier == price
    assert second.spent + second.spent_earlier == provider.billed  # invariant 2
    third, _ = build(root, provider)
    assert (third.spent, third.spent_earlier) == (0, 0)
    assert Journal(root / ".nbpipe" / "journal.jsonl").unreported == {}


def test_a_lost_create_of_a_target_since_removed_is_closed_and_said_once(make_project):
    """A create lost at a kill, then its target removed from the manifest: the entry names a
    frame this project no longer declares, which a build once left in the journal for ever
    ("the project that made them"), keeping the no-op fast path off. The journal records which
    project sent it: its own entry is closed, never resent, and said once as possibly billed
    (found by a fresh-seed money soak, seed 375280334)."""
    root = make_project(HIAPI)
    hiapi = Scripted("hiapi", ["crash-after-send", "ok"])
    crash(root, hiapi)  # sent, maybe billed; the reply never heard
    (root / "nbpipe.yaml").write_text(HIAPI.replace("a: {prompt: a lighthouse}",
                                                    "z: {prompt: a harbour}"))
    summary, said = build(root, hiapi)
    (closed,) = [e for e in said.frames() if e.journal]
    assert (closed.frame, closed.billing, closed.cost) == ("a", "maybe_billed", HIAPI_PRICE)
    assert summary.spent + summary.spent_earlier == hiapi.billed == 2 * HIAPI_PRICE
    assert open_entries(root) == [] and hiapi.bodies == ["create 1", "create 1"]
