"""The batch lane: frames on `lane: batch` go to the provider in jobs, at the batch price.

Each frame still goes through the renderer (its journal entry, its budget, its verified and
cached image, its charge); only the sending differs. A frame joins a queue and parks; once no
frame of the walk can join any more (parking.py) the queue is sent as one job per model. Before
a job is created it is journalled (store/batchlog.py) under a display name made from its
requests, and each member's journal entry gets the job's name as its task once it is known, so:

- a build killed while a job runs leaves its frames' entries open: the next build polls that
  job (free) and collects its results, creating nothing;
- a create whose reply was lost is found again by its display name (listing the account's
  jobs) before any job is created for those requests: never a second job for them;
- a job that EXPIRED or FAILED is sent again once, in a new journalled job; then its frames
  fail with the reason. A cancelled job fails its frames (a line it answered is collected).

The build waits for its jobs by default, polling every `poll` seconds; `wait=False`
(`--no-wait`), Ctrl-C or a stop leave them running: their frames end `pending`, and any later
build collects them.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable, Container
from dataclasses import dataclass, field
from decimal import Decimal

from nbpipe.backends.base import Backend, InputData, Job, Rendered, Sink
from nbpipe.backends.batch import (
    Batches,
    CreateLost,
    JobGone,
    JobState,
    JobView,
    LineResult,
    ResultsGone,
)
from nbpipe.backends.registry import spec
from nbpipe.engine.parking import Parking
from nbpipe.engine.stop import Stop
from nbpipe.errors import BatchPending, FrameFailed, NbpipeError, TaskFailed
from nbpipe.plan.frame import Frame
from nbpipe.store.batchlog import BatchJob, BatchLog
from nbpipe.store.journal import Journal

MAX_LINES = 1000  # requests per job: a failed job costs its frames one turnaround, not all
ATTEMPTS = 2  # an expired or failed job is sent again once
RECENT_PAGES = 3  # of the account's newest jobs, looked through before a job is created
TICK_MS = 200  # between two looks at the stop while waiting to poll
GATHER = 30.0  # seconds at most a queued frame waits for the walk to park (a safety net)
ENDS = {JobState.FAILED: "failed", JobState.EXPIRED: "expired (not run within 48 h)",
        JobState.CANCELLED: "was cancelled"}


@dataclass
class Member:
    """A frame's request in a batch job, and where its result goes."""

    frame: Frame
    key: str
    job: Job  # the renderer's: its take, and how to journal the job's name
    body: dict[str, object]
    result: asyncio.Future[LineResult | None]  # None: not waited for (pending)
    price: Decimal = Decimal(0)  # at the lane's price, as the build measures it
    name: str | None = None  # the server's job name, once known


@dataclass
class BatchLane:
    log: BatchLog
    client_of: Callable[[str], Batches]  # backend name → its batch client (opened once)
    account_of: Callable[[str], str | None]
    stop: Stop
    note: Callable[[str], None]
    parking: Parking
    wait: bool = True
    poll: float = 30.0
    force: bool = False  # --force: a new take, never found among older jobs
    project: str = ""  # journal.project_mark: a job's name is its project's (see display_name)
    settle: float = 600.0  # seconds a job not listed after a lost create reply may still appear
    queue: list[Member] = field(default_factory=list)
    follower: Follower = field(init=False)
    _flush: asyncio.Task[None] | None = None
    _timer: asyncio.TimerHandle | None = None

    def __post_init__(self) -> None:
        self.parking.on_idle = self.flush_soon
        self.follower = Follower(self.log, self.client_of, self.stop, self.note, self.resend,
                                 self.wait, self.poll)

    async def resend(self, members: list[Member], attempt: int) -> None:
        """Send the members of a job that expired or failed again, in a new job."""
        first = members[0].frame
        await self._guarded(members, self._create(first.backend, first.model, members, attempt))

    async def render(self, frame: Frame, key: str, inputs: list[InputData], sink: Sink,
                     job: Job, price: Decimal) -> Rendered:
        """The frame's image from a batch job: one its journal entry names (re-attached), or
        a new one this frame is queued for."""
        loop = asyncio.get_running_loop()
        member = Member(frame, key, job, self.client_of(frame.backend).line(frame.request, inputs),
                        loop.create_future(), price)
        job.on_finished()  # a job's wait holds no slot of the backend's -j
        if job.resume_task:
            self.follower.watch(job.resume_task, [member])
        else:
            self.queue.append(member)
            if self._timer is None:
                self._timer = loop.call_later(GATHER, self._gathered)
        if job.wait:  # a frame of the walk: parked while it waits
            with self.parking.parked():
                result = await member.result
        else:  # the recovery, taking a look: never counted as a frame
            result = await member.result
        if result is None:
            raise BatchPending(f"in batch job {member.name or '(being looked for)'}, still "
                               "running; a later `nbpipe build` collects it")
        if result.image is None:  # the job's last word on it: its entry ends (renderer)
            said = result.error or "no image"
            raise TaskFailed(said if member.name is None or member.name in said else
                             f"{said} (batch job {member.name})", maybe_billed=result.billed)
        sink.write(result.image)
        return Rendered(task_id=member.name)

    def flush_soon(self) -> None:
        if self.queue and (self._flush is None or self._flush.done()):
            self._flush = asyncio.ensure_future(self._send_queue())

    def _gathered(self) -> None:  # the safety net fired: a new one for the next queue
        self._timer = None
        self.flush_soon()

    async def _send_queue(self) -> None:
        while self.queue:  # frames queued while a create was out go in the next round
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            queue, self.queue = self.queue, []
            if self.stop:  # fail-fast, a refused key, Ctrl-C: nothing new is sent
                _settle_all(queue, LineResult(error=f"not sent: {self.stop.skipped_why()}"))
                continue
            try:
                await self._send(queue)
            finally:  # one the round could not reach (no job named) waits for a later build
                _settle_all([m for m in queue if m.name is None], None)

    async def _send(self, queue: list[Member]) -> None:
        fresh: dict[tuple[str, str], list[Member]] = {}
        lost: dict[str, list[Member]] = {}
        for member in queue:
            journalled = self.log.of((member.key, member.job.take))
            if journalled is not None and (journalled.backend, journalled.model) == \
                    (member.frame.backend, member.frame.model):  # a lost create: find it
                lost.setdefault(journalled.display, []).append(member)
            else:  # (a log line naming another model is not this request's: untrusted)
                fresh.setdefault((member.frame.backend, member.frame.model), []).append(member)
        for display, members in lost.items():
            await self._guarded(members, self._refind(self.log.jobs[display], members))
        for (backend, model), members in fresh.items():
            for start in range(0, len(members), MAX_LINES):
                chunk = members[start:start + MAX_LINES]
                await self._guarded(chunk, self._create(backend, model, chunk, 1))

    async def _guarded(self, members: list[Member], sending: Awaitable[None]) -> None:
        """Run one create (or re-find); what it cannot send fails only its own frames."""
        try:
            await sending
        except (NbpipeError, OSError) as exc:
            _settle_all(members, LineResult(error=str(exc)))

    async def _refind(self, journalled: BatchJob, members: list[Member]) -> None:
        """Members of a job journalled by an earlier build whose create reply never came: the
        job that create made, if the server lists it; else no job was made: create it now,
        under the same name (a later look finds this one)."""
        client = self.client_of(journalled.backend)
        try:
            view = await client.find(journalled.display)
        except NbpipeError as exc:  # the job may exist: nothing is created until it is found
            self.note(f"batch job {journalled.display} could not be looked for ({exc}); a "
                      "later build looks again")
            return _settle_all(members, None)
        if view is None and time.time() - journalled.at < self.settle:  # a listing may lag
            self.note(f"batch job {journalled.display}: its create's reply was lost and the "
                      "server lists no such job yet; a later build looks again")
            return _settle_all(members, None)
        if view is None:
            self.note(f"batch job {journalled.display}: its create's reply was lost and the "
                      "server lists no such job; creating it now")
            await self._create(journalled.backend, journalled.model, members, journalled.attempt,
                               journalled.display)
            return
        self._created(journalled.display, view, members)

    async def _create(self, backend: str, model: str, members: list[Member], attempt: int,
                      display: str | None = None) -> None:
        display = display or display_name([(m.key, m.job.take) for m in members], attempt,
                                          self.project)
        if display not in self.log.jobs:  # journalled before it exists: never made twice
            self.log.job(BatchJob(display, backend, model, self.account_of(backend),
                                  tuple((m.key, m.job.take) for m in members), attempt,
                                  time.time(), usd=str(sum((m.price for m in members),
                                                           Decimal(0)))))
        client = self.client_of(backend)
        made = None
        try:  # made by a build on a cache since lost? (best effort: the journal is the rule)
            if not self.force:  # (a forced take is a new image: never an older job's)
                made = await client.find(display, RECENT_PAGES)
        except NbpipeError:
            pass
        if self.stop:  # stopped while looking (fail-fast, a refused key, Ctrl-C)
            self.log.ended(display, "not sent")
            return _settle_all(members, LineResult(error=f"not sent: {self.stop.skipped_why()}"))
        if made is not None and made.state not in (JobState.FAILED, JobState.EXPIRED):
            self.note(f"batch job {made.name} of these very requests exists already (made by "
                      "a build whose journal this cache does not hold): re-attached, not made "
                      "again")
            return self._created(display, made, members)
        try:
            view = await client.create(model, display,
                                       [(m.key, m.body) for m in members])
        except CreateLost as exc:
            try:
                found = await client.find(display)
            except NbpipeError as failed:
                self.note(f"batch job {display}: the create's reply was lost ({exc}) and the "
                          f"jobs could not be listed ({failed}); the next build looks for it "
                          "before creating one")
                return _settle_all(members, None)
            if found is None:  # not listed (yet): the next build looks again before creating
                self.note(f"batch job {display}: the create's reply was lost ({exc}) and the "
                          "job is not listed; the next build looks for it before creating one")
                _settle_all(members, None)
                return
            view = found
        except FrameFailed:
            self.log.ended(display, "refused")
            raise
        for member in members:
            member.job.on_created()
        self._created(display, view, members)

    def _created(self, display: str, view: JobView, members: list[Member]) -> None:
        self.log.created(display, view.name)
        for member in members:
            member.job.on_task(view.name)
        self.note(f"batch job {view.name}: {len(members)} request(s) on {view.model or '?'}, "
                  f"sent at the batch price ({'waiting for it' if self.wait else 'not waiting'})")
        self.follower.watch(view.name, members)

    def close(self) -> list[str]:
        """The build is over: the jobs it leaves running."""
        if self._timer is not None:
            self._timer.cancel()
        return self.follower.close()


@dataclass
class Follower:
    """The jobs a build waits for: each polled to its end (or once, not waiting), its results
    handed to its members by key; a job that expired or failed is sent again (`resend`)."""

    log: BatchLog
    client_of: Callable[[str], Batches]
    stop: Stop
    note: Callable[[str], None]
    resend: Callable[[list[Member], int], Awaitable[None]]
    wait: bool = True
    poll: float = 30.0
    waiting: dict[str, list[Member]] = field(default_factory=dict)  # job name → members
    watchers: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    said: dict[str, str] = field(default_factory=dict)  # job name → its last progress said
    left: set[str] = field(default_factory=set)  # jobs left running as this build ends

    def watch(self, name: str, members: list[Member]) -> None:
        for member in members:
            member.name = name
        self.waiting.setdefault(name, []).extend(members)
        watcher = self.watchers.get(name)
        if watcher is None or watcher.done():
            backend = members[0].frame.backend
            self.watchers[name] = asyncio.ensure_future(self._follow(name, backend))

    async def _follow(self, name: str, backend: str) -> None:
        """Poll the job to its end (or only once, not waiting), then hand each member its
        result. A poll that fails leaves the job to a later build; no member is left waiting."""
        client = self.client_of(backend)
        try:
            while True:
                view = await client.get(name)
                if view.name != name:  # an answer about another job is no word on this one
                    raise FrameFailed(f"the server answered about {view.name} when asked "
                                      f"about {name}")
                self._progress(view)
                if view.state.ended:
                    break
                members = self.waiting.get(name, [])
                _settle_all([m for m in members if not m.job.wait], None)  # a look was all
                self.waiting[name] = [m for m in members if m.job.wait]
                if not self.wait or not self.waiting[name] or self.stop or \
                        not await self._slept():
                    self.left.add(name)
                    return
            results = await client.results(view) \
                if view.state in (JobState.SUCCEEDED, JobState.CANCELLED) else {}
            await self._ended(view, results)
        except (JobGone, ResultsGone) as exc:  # nothing to collect: sent again later
            self.note(f"batch job {name}: {exc}")
            _settle_all(self.waiting.pop(name, []),
                      LineResult(error=str(exc), billed=isinstance(exc, ResultsGone)))
        except (NbpipeError, OSError) as exc:
            self.note(f"batch job {name}: {exc}; it stays journalled for a later build")
            self.left.add(name)
        finally:
            _settle_all(self.waiting.pop(name, []), None)

    async def _slept(self) -> bool:
        """Sleep one poll interval; False if the build stopped meanwhile (Ctrl-C)."""
        end = time.monotonic() + self.poll
        while (left := end - time.monotonic()) > 0:
            if self.stop:
                return False
            await asyncio.sleep(min(TICK_MS / 1000, left))
        return not self.stop

    def _progress(self, view: JobView) -> None:
        if self.said.get(view.name) != view.progress:
            self.said[view.name] = view.progress
            self.note(f"batch job {view.name}: {view.progress}")

    async def _ended(self, view: JobView, results: dict[str, LineResult]) -> None:
        members = self.waiting.pop(view.name, [])
        journalled = next((j for j in self.log.jobs.values() if j.name == view.name), None)
        results = _unkeyed(results, journalled)
        again = []
        for member in members:
            found = results.get(member.key)
            if found is not None:
                _settle(member, found)
            elif view.state is JobState.SUCCEEDED:
                _settle(member, results.get(UNKEYED) or LineResult(
                    error=f"batch job {view.name} answered no line for this request"))
            elif view.state is JobState.CANCELLED:
                _settle(member, LineResult(error=f"batch job {view.name} was cancelled before "
                                           "it answered this request"))
            else:
                again.append(member)
        # (its log line stays until no entry of it is open: compaction at the build's end)
        attempt = journalled.attempt if journalled is not None else 1
        if not again:
            return  # every member answered (a SUCCEEDED or CANCELLED job ends here)
        looks = [m for m in again if not m.job.wait]  # the recovery's: no frame here wants them
        _settle_all(looks, LineResult(error=f"batch job {view.name} {ENDS[view.state]}; not sent "
                                    "again for a frame this build does not make"))
        again = [m for m in again if m.job.wait]
        if again and attempt < ATTEMPTS and not self.stop:
            self.note(f"batch job {view.name} {ENDS[view.state]}"
                      + (f" ({view.error})" if view.error else "")
                      + f"; sending its {len(again)} request(s) again in a new job")
            await self.resend(again, attempt + 1)
        elif again:
            _settle_all(again, LineResult(error=f"batch job {view.name} {ENDS[view.state]}"
                                        + (f": {view.error}" if view.error else "")
                                        + f", on attempt {attempt}; a later build sends it again"))

    def close(self) -> list[str]:
        for watcher in self.watchers.values():
            watcher.cancel()
        return sorted(self.left)


UNKEYED = "#unkeyed"  # a member's answer when the job answered one line without its key


def _unkeyed(results: dict[str, LineResult], job: BatchJob | None) -> dict[str, LineResult]:
    """Results by key, with what a job answered without a key (Google's inline responses can
    lose their metadata) placed where it can be: given to the one request of the job left
    without an answer when exactly one is, else said as possibly billed for every request
    without an answer (an image may have been made and billed for it)."""
    loose = [r for k, r in results.items() if k.startswith("#")]
    keyed = {k: r for k, r in results.items() if not k.startswith("#")}
    if not loose:
        return keyed
    missing = {key for key, _ in job.members} - set(keyed) if job is not None else set()
    if len(missing) == 1 and len(loose) == 1:
        return {**keyed, missing.pop(): loose[0]}
    return {**keyed, UNKEYED: LineResult(error="the batch job answered a request without its "
                                         "key, so its image cannot be matched; it may have been "
                                         "billed", billed=True)}


def _settle_all(members: list[Member], result: LineResult | None) -> None:
    for member in members:
        _settle(member, result)


def _settle(member: Member, result: LineResult | None) -> None:
    if not member.result.done():
        member.result.set_result(result)


async def adopt(batch: BatchLane | None, journal: Journal, sent: Container[str]) -> None:
    """Batch entries no frame of this build sent (a frame since edited away or removed, a take
    a `--force` left, a create killed before its reply) and whose job's name was never
    journalled: their job is looked for by its journalled name, its name journalled as their
    task (the recovery then collects them, paid as they are), or, when the server lists none,
    they are closed: never created, so never billed."""
    if batch is None:
        return
    lane, found = batch, dict[str, JobView | None]()
    for entry in list(journal.open.values()):
        if entry.lane != "batch" or entry.task_id is not None or entry.key in sent or \
                not entry.belongs_to(lane.account_of(entry.backend)):
            continue
        job = lane.log.of((entry.key, entry.take))
        if job is None:  # journalled, never put in a job: never sent
            journal.closed(entry.key, entry.take, "never sent in a batch job")
            continue
        try:
            if job.display not in found:
                found[job.display] = await lane.client_of(job.backend).find(job.display)
        except NbpipeError:
            continue  # looked for again by a later build
        view = found[job.display]
        if view is None and time.time() - job.at >= lane.settle:  # not listed, long after
            journal.closed(entry.key, entry.take, "its batch job was never created")
        elif view is None:
            continue  # a listing may lag: a later build looks again
        else:
            lane.log.created(job.display, view.name)
            journal.task(entry.key, entry.take, view.name)


def display_name(members: list[tuple[str, int]], attempt: int, project: str = "") -> str:
    """A job's display name: made from the set of requests (key, take) it holds, its attempt
    and its project, so a build of that project finds the job an earlier one created for
    exactly these (also when its cache was lost), and another project on the account never
    takes it for its own."""
    digest = hashlib.sha256(f"{project}\n".encode())
    for key, take in sorted(members):
        digest.update(f"{key}:{take}\n".encode())
    digest.update(f"attempt {attempt}".encode())
    return f"nbpipe-{digest.hexdigest()[:32]}"


def batch_client(backend: Backend) -> Batches:
    """The batch client of an opened backend, from its spec (FrameFailed if it has none)."""
    make = spec(backend.name).batch
    if make is None:
        raise FrameFailed(f"backend '{backend.name}' has no batch lane")
    return make(backend)
