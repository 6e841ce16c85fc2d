"""The never-pay-twice unit: journal, backend call, settle.

Every paid request goes through here, whether a frame of this build sends it or the recovery
collects one an earlier build left: the journal learns of it before anything is sent (the
intent, then the exact body), the backend is called under that journal entry, and the entry is
settled by the outcome (done, failed, closed, or kept open for a later build to collect for
free). The money it moved is charged to the frame (`Teller`) as this build reports it: a
request this build sent is its spending; one an earlier build sent is that build's, or, if it
died before saying so, "paid by an interrupted build".
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Container, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from nbpipe.backends.base import (
    Backend,
    InputData,
    Job,
    LearnsDurations,
    StoppedMaybeSent,
    TaskStillOut,
)
from nbpipe.backends.images import verify_image_async
from nbpipe.backends.registry import (
    counted_on_landing,
    resumable,
    spec,
    unfindable,
    unrepeatable,
)
from nbpipe.engine.batches import BatchLane
from nbpipe.engine.claiming import Claimant, freed_on_failure, peer_take
from nbpipe.engine.entries import on_its_lane, recorded_key
from nbpipe.engine.flights import key_of
from nbpipe.engine.inflight import InFlight
from nbpipe.engine.inputs import input_data
from nbpipe.engine.pusher import Deferred, Pusher
from nbpipe.engine.telling import Charge, Teller
from nbpipe.errors import (
    BatchPending,
    BuildStopped,
    FrameFailed,
    ImageLost,
    NbpipeError,
    TaskFailed,
)
from nbpipe.events import Billing
from nbpipe.plan.budget import Budget
from nbpipe.plan.frame import Frame, InputImage
from nbpipe.plan.planner import Project, Step
from nbpipe.store.cache import Cache, Take
from nbpipe.store.journal import Entry, Journal, project_mark
from nbpipe.store.remote import Remote, shares

OpenBackend = Callable[[str, int, int | None], Backend]  # name, jobs, rpm → a ready backend


@dataclass
class Backends:
    """The backends this build opened, each once, through the injected factory; one that
    learns its task durations starts from `learned` (backend → model → seconds, as the last
    build left them) and says what it knows at the end (`durations`)."""

    open: OpenBackend
    jobs: Callable[[str], int]
    rpm: Callable[[str], int | None]
    opened: dict[str, Backend] = field(default_factory=dict)
    learned: Mapping[str, Mapping[str, Sequence[float]]] = field(default_factory=dict)

    def get(self, name: str) -> Backend:
        if name not in self.opened:
            backend = self.open(name, self.jobs(name), self.rpm(name))
            if isinstance(backend, LearnsDurations):
                backend.recall(self.learned.get(name, {}))
            self.opened[name] = backend
        return self.opened[name]

    def durations(self) -> dict[str, dict[str, list[float]]]:
        return {name: backend.durations() for name, backend in self.opened.items()
                if isinstance(backend, LearnsDurations)}

    def account(self, name: str) -> str | None:
        """Who this build pays from on `name`; None when it cannot send there (no key)."""
        try:
            return self.get(name).account
        except NbpipeError:
            return None

    async def aclose(self) -> None:
        for backend in self.opened.values():
            await backend.aclose()


@dataclass
class Renderer:
    project: Project
    cache: Cache
    journal: Journal
    remote: Remote | None
    backends: Backends
    budget: Budget
    teller: Teller
    inflight: InFlight
    force: bool = False
    pusher: Pusher | Deferred | None = None  # sends, or offline marks, the new images
    mine: set[tuple[str, int]] = field(default_factory=set)  # entries this build opened
    created: set[tuple[str, int]] = field(default_factory=set)  # new tasks this build paid for
    sent_keys: dict[str, Frame] = field(default_factory=dict)  # keys its frames rendered
    batch: BatchLane | None = None  # how frames on the batch lane are sent
    claimant: Claimant | None = None  # claims on the team remote (None: no remote)
    peers: set[str] = field(default_factory=set)  # keys another runner rendered meanwhile
    left: set[tuple[str, int]] = field(default_factory=set)  # tasks it said left out

    async def render(self, step: Step, release: Callable[[], None]) -> Take:
        """Send the frame's request (or re-attach to the open entry of its key) into the
        cache; its money charged to the frame, however it ends."""
        frame = step.frame
        key = key_of(frame)
        lifetime = self.project.loaded.manifest.cache.url_lifetime
        inputs = [input_data(image, frame.backend, self.project.loaded.root, self.cache,
                             self.remote, lifetime) for image in frame.inputs]
        entry = self._entry(step)
        frame = on_its_lane(frame, entry, self.project.catalog)  # a job's entry is the job's
        take_no = entry.take
        job = Job(take=take_no, lane=entry.lane, resume_task=entry.task_id, body=entry.body,
                  on_send=lambda body: self.journal.sent(key, take_no, body),
                  on_task=lambda task_id: self.journal.task(key, take_no, task_id),
                  on_replayed=lambda: self.journal.reported(key, take_no),
                  on_created=lambda: self.created.add((key, take_no)),
                  on_finished=release)
        if (theirs := await claimed_elsewhere(self, key, entry)) is not None:
            return theirs
        with freed_on_failure(self.claimant, key):  # a runner waiting for it claims it then
            return await self._send(frame, entry, inputs, job)

    async def _send(self, frame: Frame, entry: Entry, inputs: list[InputData],
                    job: Job) -> Take:
        key, take_no = entry.key, entry.take
        try:
            with self.inflight.sending(frame, self.budget.measure(frame)):
                take = await self.fetch(frame, inputs, job)
        except asyncio.CancelledError:  # Ctrl-C past the grace: a task it leaves out is said
            if not self.left_out(frame, entry):
                cut_off(self, frame, entry)
            raise
        except TaskFailed as exc:
            if exc.maybe_billed:  # a batch line whose image was made but is unusable
                settle_batch(self, frame, entry, exc)
            else:
                self.journal.failed(key, take_no)
            raise
        except ImageLost as exc:
            self.teller.charge(frame.name, self.lost(entry, frame, f"{frame.name}: {exc}"))
            raise FrameFailed(str(exc)) from None
        except (NbpipeError, OSError) as exc:
            self._settle(frame, entry, exc)
            raise
        self.teller.charge(frame.name, self.owed(entry, frame))
        return take

    def _entry(self, step: Step) -> Entry:
        """The journal entry this render goes under: an open one of this key (its task is
        re-attached, its create resent byte for byte), else a new take's intent."""
        frame = step.frame
        key = key_of(frame)
        self.sent_keys[key] = frame
        account = self.backends.get(frame.backend).account
        entry = self.journal.open_for(key, frame.backend, account,
                                      lambda found: self.sendable(found, frame))
        if entry is None:  # a new take, under a number never used for this key anywhere
            known = [t for t, _ in self.remote.takes(key)] \
                if self.remote is not None and step.action == "render" and self.force else []
            take_no = self.cache.allocate_take(key, known)
            # held by an entry set aside, or kept for another nbpipe (the journal is shared)
            while (key, take_no) in self.journal.open or (key, take_no) in self.journal.kept:
                take_no = self.cache.allocate_take(key, known)
            self.journal.intent(key, take_no, frame.name, frame.backend, frame.record(),
                                account, project_mark(self.project.loaded.root), frame.lane)
            self.mine.add((key, take_no))
            entry = self.journal.open[(key, take_no)]
        else:
            self.resends(entry)
        return entry

    def sendable(self, entry: Entry, frame: Frame) -> bool:
        """Whether this build may take `entry` for `frame` (see `would_send`)."""
        return would_send(entry, frame, [SentUrls(image, self.cache, self.remote)
                                         for image in frame.inputs])

    def frames(self) -> dict[str, Frame]:
        """This build's frames by key: those keyed from the start, and those keyed since."""
        return {**{f.key: f for f in self.project.frames.values() if f.key}, **self.sent_keys}

    def resends(self, entry: Entry) -> None:
        """This build sends the entry's create (again, byte for byte): whether it makes the
        task or finds it, the payment is this build's to report."""
        if entry.task_id is None and resumable(entry.backend):
            self.mine.add((entry.key, entry.take))

    async def fetch(self, frame: Frame, inputs: list[InputData], job: Job,
                    record: dict[str, object] | None = None) -> Take:
        """Render (or re-attach) into the cache: verified, committed, indexed, journalled,
        and pushed. `record`: the request as journalled, for a task an earlier build left."""
        record = record or frame.record()
        key = key_of(frame)
        started = time.time()
        with self.cache.writer() as sink:
            if job.lane == "batch":  # an entry sent in a job is collected from it, whatever
                rendered = await _lane(self.batch).render(frame, key, inputs, sink, job,  # lane
                                                      self.budget.measure(frame))  # now
            else:
                rendered = await self.backends.get(frame.backend).render(frame.request, inputs,
                                                                          sink, job)
            sink.flush()
            fmt = await verified(frame, sink.path)  # only images enter the cache
            digest = sink.commit()
        # priced as the build reports it (owed), so a restore later saves what was spent
        take = Take(digest=digest, backend=frame.backend, model=frame.model, format=fmt,
                    cost_usd=str(self.budget.measure(frame)), created=started,
                    task_id=rendered.task_id, url=rendered.url,
                    url_expires=rendered.url_expires, take=job.take, lane=job.lane)
        self.cache.add_take(key, record, take)  # paid for: safe before anything else
        if self.pusher is not None:  # also an earlier build's task: the team paid for it too
            self.pusher.push(key, take, record)  # remembered, then sent in the background
        self.journal.done(key, job.take, digest)
        return take

    def owed(self, entry: Entry, frame: Frame, billing: Billing | None = None,
             left: bool = False) -> Charge:
        """What this build reports for the request of `entry`, made for `frame`: its own
        request's price; an earlier build's, if that build never reported it (it died); else
        nothing. A new task this build's create made is its own, whatever the (untrusted)
        journal says. Every charge is priced here, at the budget's measure (the list price at
        least: a manifest's `pricing:` may come from a pull request), however the request
        ended."""
        price = self.budget.measure(frame)
        if entry.lane == "batch":  # billed as its job runs: said by the build that collects it
            return Charge(Decimal(0) if entry.reported else price, billing=billing, left=left)
        if (entry.key, entry.take) in self.created:
            return Charge(price, billing=billing, left=left)
        if entry.reported:
            return Charge(Decimal(0), billing=billing, left=left)
        if (entry.key, entry.take) in self.mine:
            return Charge(price, billing=billing, left=left)
        return Charge(price, earlier=True, billing=billing, left=left)

    def lost(self, entry: Entry, frame: Frame, message: str) -> Charge:
        """A paid task whose image is gone: close it; render anew next time."""
        charge = self.owed(entry, frame, Billing.LOST)
        self.journal.closed(entry.key, entry.take, "image lost", billed=True)
        self.teller.note(f"lost      {message}; the next render is a new task")
        return charge

    def _settle(self, frame: Frame, entry: Entry, exc: Exception) -> None:
        """After a render failed: close its journal entry if it will never bring an image, so
        no later build replays it; keep (and report, once) the ones a later build can still
        collect for free."""
        if (entry.key, entry.take) not in self.journal.open:
            return  # done
        if entry.lane == "batch":
            return settle_batch(self, frame, entry, exc)
        unknown = isinstance(exc, StoppedMaybeSent) or \
            (isinstance(exc, FrameFailed) and (exc.retry_later or exc.maybe_billed))
        if unrepeatable(frame.backend) or (entry.task_id is None and unfindable(frame.backend)):
            billed = isinstance(exc, FrameFailed) and exc.maybe_billed
            if billed:
                self.teller.charge(frame.name, self.owed(entry, frame, Billing.MAYBE))
            self.journal.closed(entry.key, entry.take, f"no image: {exc}", billed)
        elif entry.task_id is None and (entry.body is None or not unknown):
            self.journal.closed(entry.key, entry.take, f"no task: {exc}")
        else:  # a task, or a create whose reply was lost: the next build collects it
            self.left_out(frame, entry, isinstance(exc, TaskStillOut))

    def left_out(self, frame: Frame, entry: Entry, left: bool = True) -> bool:
        """A paid request of this frame still out as the build ends it (once): its charge to
        the frame, counted here or said as due (`left_charge`). `left`: the frame ends `left`
        (a timeout, Ctrl-C past the grace), not failed."""
        slot = (entry.key, entry.take)
        if slot not in self.journal.open or slot in self.left or \
                not resumable(entry.backend) or not entry.task_id:
            return False  # no task: a create whose reply was lost is its resender's to count
        self.left.add(slot)
        self.teller.charge(frame.name, left_charge(self.journal, entry,
                                                   self.owed(entry, frame, left=left)))
        return True


def left_charge(journal: Journal, entry: Entry, charge: Charge) -> Charge:
    """How a build that ends with `entry`'s task still out counts `charge`, the task's price
    as that build reports it. A provider that bills a failed task all the same: counted now,
    and the journal marks it counted, so the build that collects it counts nothing. One that
    bills only a task that lands (fal, HiAPI): it may yet fail and cost nothing, so its price
    is said as due, not counted; the build that collects its image counts it then (as paid
    by an earlier build), and one that sees it fail counts nothing."""
    if not counted_on_landing(entry.backend):
        journal.counting(entry.key, entry.take)
        return charge
    return Charge(Decimal(0), billing=charge.billing, left=charge.left, due=charge.cost)


def cut_off(renderer: Renderer, frame: Frame, entry: Entry) -> None:
    """A create without an idempotency key stopped after its body was journalled and before
    its id came (Ctrl-C past the grace): it may be queued and billed, and nothing can find it
    again. Charged as possibly billed and closed, so no build sends it again unannounced nor
    counts it twice."""
    if (entry.key, entry.take) in renderer.journal.open and entry.task_id is None and \
            entry.body is not None and unfindable(entry.backend) and \
            not unrepeatable(entry.backend):  # a call in flight is InFlight's to close
        renderer.teller.charge(frame.name, renderer.owed(entry, frame, Billing.MAYBE))
        renderer.journal.closed(entry.key, entry.take, "stopped before its id came", True)


async def claimed_elsewhere(renderer: Renderer, key: str, entry: Entry) -> Take | None:
    """Claim the key before its create goes out: None, send it; a take, another runner
    made it meanwhile (restored here, free; the journal's intent closed unsent). A task
    already made is only polled (free), and a batch line is the job's: neither claimed; nor
    is anything on a remote this build found unreachable (it said so, and pays anyway only
    when told to: --remote-errors=render)."""
    remote = renderer.remote
    if renderer.claimant is None or entry.task_id is not None or entry.lane == "batch" or \
            remote is None or remote.unreachable:
        return None
    # the takes the plan already weighed are no other runner's new one (--force renders anew)
    planned = set(remote.digests(key))

    async def new_take(digest: str) -> Take | None:
        if digest in planned:
            return None
        return await peer_take(remote, renderer.cache, key, digest)
    try:
        take = await renderer.claimant.claim(key, new_take)
    except (BuildStopped, asyncio.CancelledError):  # stopped while waiting: never sent
        renderer.journal.closed(key, entry.take, "not sent: the build stopped")
        raise
    if take is not None:
        renderer.journal.closed(key, entry.take, "made by another runner meanwhile")
        renderer.peers.add(key)
    return take


async def verified(frame: Frame, path: Path) -> str:
    """The image's format; a call-lane image that does not verify was made, so billed."""
    try:
        return await verify_image_async(path)
    except FrameFailed as exc:
        if not unrepeatable(frame.backend):
            raise
        raise FrameFailed(f"{exc}; not retried, since the image was made and may have "
                          "been billed", maybe_billed=True) from None


def settle_batch(renderer: Renderer, frame: Frame, entry: Entry, exc: Exception) -> None:
    """A batch request that brought no image: still in a running job (kept: any later
    build collects it), else closed; one whose image was made but is unusable may be
    billed, and is said."""
    if isinstance(exc, BatchPending) or not isinstance(exc, FrameFailed):
        return
    if exc.maybe_billed:
        renderer.teller.charge(frame.name, renderer.owed(entry, frame, Billing.MAYBE))
    renderer.journal.closed(entry.key, entry.take, f"no image: {exc}", exc.maybe_billed)


def _lane(batch: BatchLane | None) -> BatchLane:
    if batch is None:  # pending, never failed: its job (paid) stays for a build that has one
        raise BatchPending("this build has no batch lane to collect it")
    return batch


def would_send(entry: Entry, frame: Frame, urls: Sequence[Container[str]]) -> bool:
    """Whether this build would send the journalled create of `entry` for `frame` now. The
    journal lives in the cache, which others may write: an entry's body is resent (paid from
    this build's key) only if it is the body this frame makes, its input URLs among `urls`
    (one container per input: those this build would send for it), and a task whose body is not
    is not collected into this frame either (its image was made from another request). An
    entry with no body has nothing to resend: its task, if any, is only polled; nor has one
    with a task of its own request (an earlier nbpipe may have written its body otherwise)."""
    if entry.key != frame.key or entry.backend != frame.backend:
        return False
    if entry.body is None:
        return True
    if entry.task_id is not None and recorded_key(entry) == entry.key:
        return True  # this request's own paid task: a poll is free, and nothing is resent
    check = spec(frame.backend).would_send
    return check is not None and check(entry.body, frame.request, urls)


@dataclass(frozen=True)
class SentUrls:
    """The URLs this build would send for one input image: a URL input's own; for a project
    file or an upstream frame's image, where the backend serves those bytes (an upstream
    take's URL) or where this build shares them from the remote cache (signed anew). A URL
    anywhere else would make the frame's paid image from some other image."""

    image: InputImage
    cache: Cache
    remote: Remote | None

    def __contains__(self, url: object) -> bool:
        if not isinstance(url, str):
            return False
        if self.image.kind == "url":
            return url == self.image.ref
        digest = self.image.digest
        if not digest:
            return False
        return url == self.cache.served_at(digest)[0] or \
            (self.remote is not None and shares(self.remote, digest, url))
