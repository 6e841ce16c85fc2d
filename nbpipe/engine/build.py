"""Doing it: restore or render each selected frame in DAG order, then pin the results.

Every frame goes through `plan.planner.decide` — the same function `nbpipe plan` uses — at the
moment its upstreams are done, so an edit is keyed on the bytes its upstream actually holds
(early cutoff: an upstream that re-renders to identical bytes leaves its dependants fresh).

What is paid for is safe before anything else happens: the image is committed to the cache and
indexed under its key before the output file is written or the lock is touched.

This module is the scheduler: the DAG walk, the -j slots, the budget and Ctrl-C. Beside it:
recover.py (what earlier builds left in the journal), flights.py (identical requests sent once),
inflight.py (Gemini requests awaiting their reply), inputs.py (what a request carries) and
finish.py (what the build leaves on disk).
"""

from __future__ import annotations

import asyncio
import errno
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from nbpipe import interrupts
from nbpipe.backends import DEFAULT_JOBS, open_backend
from nbpipe.backends.base import Backend, InputData, Job
from nbpipe.backends.images import verify_image_async
from nbpipe.engine.finish import (
    drop_undeclared,
    quiet_until,
    record_pins,
    remember_outcomes,
    save_lock,
)
from nbpipe.engine.flights import EMPTY, STOPPED, Flights, Landing
from nbpipe.engine.inflight import InFlight
from nbpipe.engine.inputs import input_data
from nbpipe.engine.noop import fingerprint, fingerprint_options
from nbpipe.engine.recover import Recovery, seconds
from nbpipe.errors import BuildStopped, FrameFailed, ImageLost, NbpipeError, TaskFailed
from nbpipe.money import fmt_usd
from nbpipe.ops.prices import list_prices
from nbpipe.ops.push import Deferred, Pusher, pusher_for
from nbpipe.plan.budget import Budget
from nbpipe.plan.frame import Frame
from nbpipe.plan.planner import Project, Step, decide, make_plan, output_is_ours
from nbpipe.store.cache import Cache, Take
from nbpipe.store.journal import Entry, Journal
from nbpipe.store.known import StoreKnown
from nbpipe.store.lock import Lock, LockEntry
from nbpipe.store.marks import remote_id
from nbpipe.store.outputs import disk_message, write_output
from nbpipe.store.remote import Remote, remote_url
from nbpipe.store.state import State
from nbpipe.ui.events import Summary

DISK_STOPS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO}


@dataclass
class BuildOptions:
    patterns: tuple[str, ...] = ()
    force: bool = False
    backend: str | None = None
    jobs: int | None = None  # frames in flight per backend; None: the manifest's or the default
    max_cost: Decimal | None = None  # None: the manifest's max_cost, if any
    fail_fast: bool = False
    grace: float = field(default_factory=lambda: seconds("NBPIPE_INTERRUPT_GRACE", 10.0))
    # seconds to keep collecting HiAPI tasks after Ctrl-C (Gemini requests are waited for)
    offline: bool = False  # never touch the remote cache
    trust_prices: bool = False  # measure the budget in the manifest's `pricing:` as it stands
    remote_errors: str = "fail"  # "render": pay for a frame even when the remote may hold it
    profile: str | None = None


@dataclass
class Build:
    project: Project
    cache: Cache
    lock: Lock
    state: State
    journal: Journal
    events: object
    options: BuildOptions
    summary: Summary = field(default_factory=Summary)
    backends: dict[str, Backend] = field(default_factory=dict)
    stopped: str | None = None  # why no more requests may be sent (bad key, no balance, ^C)
    stop_told_later: bool = False
    interrupted: bool = False
    failed: dict[str, str] = field(default_factory=dict)  # frame → why, for the report
    remote: Remote | None = None
    pusher: Pusher | Deferred | None = None  # sends, or offline marks, the new images
    pulled: set[str] = field(default_factory=set)  # digests the remote served this build
    _remote_io: ThreadPoolExecutor = field(  # parallel downloads from the remote cache
        default_factory=lambda: ThreadPoolExecutor(16, thread_name_prefix="nbpipe-pull"))
    budget: Budget | None = None
    slots: dict = field(default_factory=dict)
    outcomes: dict[str, str | None] = field(default_factory=dict)  # frame → digest it holds
    flights: Flights = field(default_factory=Flights)  # one request per key
    tasks: dict[str, asyncio.Task] = field(default_factory=dict)
    decided: dict[str, Step] = field(default_factory=dict)  # the preflight's steps to keep
    recovery: Recovery = field(init=False)  # the journal across builds; made with the budget
    inflight: InFlight = field(init=False)  # Gemini requests awaiting their reply

    def __post_init__(self) -> None:
        self.inflight = InFlight(self.journal, self.summary)

    @property
    def root(self) -> Path:
        return self.project.loaded.root

    def run(self) -> Summary:
        frames = self.project.select(self.options.patterns)
        self._sweep(frames)
        self._preflight(frames)
        self._say_remote()
        self.pusher = pusher_for(self.remote, self._remote_url(), self.cache, self.state,
                                 self.project.frames.values(), self.lock, self.events)
        self.budget = Budget(self._cap(), list_prices(self.cache.root), self.options.trust_prices)
        self.recovery = Recovery(self.journal, self.project.catalog, self.budget, self.flights,
                                 self.summary, self.events,
                                 fetch=lambda frame, job, record:
                                 self._fetch(frame, [], job, record),
                                 stopped=lambda: self.stopped, account=self._account)
        self.recovery.announce_unknown()
        try:
            interrupts.take_over()  # a Ctrl-C swallowed while planning stops us here
            with asyncio.Runner() as runner:
                runner.run(self._all(frames))
        except asyncio.CancelledError:
            self.interrupted = True
        except KeyboardInterrupt:  # pressed before the event loop began (the CLI says it)
            self.interrupted = True
            raise
        finally:
            self._finish(frames)
        self._say_end()
        self.summary.interrupted = self.interrupted
        self.events.summary(self.summary)
        return self.summary

    def _cap(self) -> Decimal | None:
        if self.options.max_cost is not None:
            return self.options.max_cost  # --max-cost says it outright
        declared = self.project.loaded.manifest.max_cost
        return Decimal(str(declared)) if declared is not None else None

    def _say_remote(self) -> None:
        if self.remote is None or not self.remote.unreachable:
            return
        self.events.note(f"remote: unreachable ({self.remote.unreachable}); restoring from the "
                         "local cache; " + ("frames to render are paid for even if the remote "
                         "may hold them (--remote-errors=render)"
                         if self.options.remote_errors == "render" else
                         "frames to render wait (retry later, or --remote-errors=render)"))

    def _say_end(self) -> None:
        """What the frames' lines could not say, once, before the summary."""
        refused = self.budget.refused
        if refused:
            names = ", ".join(refused[:8]) + (" …" if len(refused) > 8 else "")
            self.events.note(f"over budget: {len(refused)} frame(s) not rendered to stay within "
                             f"USD {fmt_usd(self.budget.cap)}: {names}")
        if self.stop_told_later:
            self.events.note(f"build stopped: {self.stopped}")

    def _sweep(self, frames: list[Frame]) -> None:
        """Partial files of a killed build (we hold the build locks: nothing else writes)."""
        self.cache.sweep()
        for folder in {(self.root / f.output).parent for f in frames}:
            for partial in folder.glob(".*.part") if folder.is_dir() else ():
                partial.unlink(missing_ok=True)

    def _jobs(self, backend: str) -> int:
        limits = self.project.loaded.manifest.limits.get(backend)
        declared = limits.jobs if limits and limits.jobs else DEFAULT_JOBS[backend]
        return self.options.jobs or declared  # -j says it outright; the manifest is the default

    def _interrupt(self, main: asyncio.Task) -> None:
        """First Ctrl-C: send nothing new; collect HiAPI tasks for the grace period (they are
        journalled: the next build resumes them for free) and wait for Gemini requests already
        sent (they are paid, and a lost reply cannot be fetched again). Second: stop now."""
        loop = asyncio.get_running_loop()
        if self.interrupted:
            if self.inflight:
                self.events.note(f"warning: abandoning {self.inflight.text()}: they may have "
                                 "been billed; the next build sends them again")
                self.inflight.abandon("abandoned at a second Ctrl-C")
            main.cancel()
            return
        self.interrupted = True
        self.stopped = "interrupted"
        self.events.note(f"interrupted: nothing new is sent; collecting what is in flight for up "
                         f"to {self.options.grace:g} s (Ctrl-C again to stop now)")
        if self.inflight:
            self.events.note(f"waiting for {self.inflight.text()} already sent: they are paid "
                             "for, so their images are kept (Ctrl-C again abandons them)")
        loop.call_later(self.options.grace, self._cancel_resumable)

    def _cancel_resumable(self) -> None:
        """The grace period is over: stop every frame but a Gemini request in flight."""
        for name, task in self.tasks.items():
            if name not in self.inflight and not task.done():
                task.cancel()

    def _preflight(self, frames: list[Frame]) -> None:
        """Plan once up front: open the backends it will render on, so a missing one stops the
        build before anything happens; frames with no upstream keep this decision."""
        known = StoreKnown(self.lock, self.cache, self.state, self.remote)
        if self.remote is not None:
            self.remote.prefetch_takes([f.key for f in frames
                                        if f.key and not self.cache.takes(f.key)])
        plan = make_plan(frames, known, lambda frame: self.options.force)
        if self.remote is not None:  # the images only the remote has, in one concurrent batch
            self.pulled = {s.digest for s in plan.steps
                           if s.action == "restore" and s.digest and known.remote_only(s.digest)}
            self.remote.fetch_many(sorted(self.pulled), self.cache)
        self.decided = {s.frame.name: s for s in plan.steps if not s.frame.upstreams}
        needed = {s.frame.backend for s in plan.steps
                  if s.action == "render" or (s.action == "blocked" and s.frame.key is None)}
        for name in sorted(needed):
            self._backend(name)

    def _account(self, backend: str) -> str | None:
        """Who this build pays from on `backend`; None when it cannot send there (no key)."""
        try:
            return self._backend(backend).account
        except NbpipeError:
            return None

    def _backend(self, name: str) -> Backend:
        if name not in self.backends:
            limits = self.project.loaded.manifest.limits.get(name)
            self.backends[name] = open_backend(name, self._jobs(name), limits.rpm if limits else None)
        return self.backends[name]

    async def _all(self, frames: list[Frame]) -> None:
        known = self.known = StoreKnown(self.lock, self.cache, self.state, self.remote)
        loop = asyncio.get_running_loop()
        done: dict[str, asyncio.Future] = {f.name: loop.create_future() for f in frames}
        self.slots = {b: asyncio.Semaphore(self._jobs(b)) for b in DEFAULT_JOBS}
        main = asyncio.current_task()
        try:
            loop.add_signal_handler(signal.SIGINT, self._interrupt, main)
        except (NotImplementedError, RuntimeError, ValueError):
            pass  # not the main thread, or no signals here: Ctrl-C then stops at once
        loop_tasks = [asyncio.ensure_future(self.recovery.collect(self.slots))]
        for f in frames:
            self.tasks[f.name] = asyncio.ensure_future(self._one(f, known, done))
        try:
            # return_exceptions: a frame stopped after the grace period must not end the wait
            # for the Gemini requests still in flight
            for outcome in await asyncio.gather(*loop_tasks, *self.tasks.values(),
                                                return_exceptions=True):
                if isinstance(outcome, Exception):
                    raise outcome
            await self.recovery.collect(self.slots, after=True)  # tasks this build's frames left
        finally:
            try:
                loop.remove_signal_handler(signal.SIGINT)
            except (NotImplementedError, RuntimeError, ValueError):
                pass
            for backend in self.backends.values():
                await backend.aclose()

    async def _one(self, frame: Frame, known: StoreKnown, done: dict) -> None:
        try:
            await self._one_frame(frame, known, done)
        finally:  # dependants never wait on a frame that was cancelled
            if not done[frame.name].done():
                done[frame.name].set_result(None)
            self.outcomes.setdefault(frame.name, None)

    async def _one_frame(self, frame: Frame, known: StoreKnown, done: dict) -> None:
        digests = {}
        for upstream in frame.upstreams:
            digest = await done[upstream]
            if digest is None:
                self._skip(frame, upstream)
                done[frame.name].set_result(None)
                return
            digests[upstream] = digest
        if digests:
            frame = frame.keyed(digests)
        step = self.decided.get(frame.name) or decide(frame, known, self.options.force)
        try:
            digest = await self._act(step)
        except BuildStopped as exc:
            said = self.stopped == str(exc)  # frames in flight meet the same stop: say it once
            self.stopped = self.stopped or str(exc)
            digest = self._fail(step, self._see_end() if said else str(exc))
        except NbpipeError as exc:
            digest = self._fail(step, exc.render().removeprefix("error: "))
        except OSError as exc:
            if exc.errno in DISK_STOPS:  # every later write would fail the same way
                self.stopped = self.stopped or disk_message(exc)
            digest = self._fail(step, disk_message(exc))
        self.outcomes[frame.name] = digest
        done[frame.name].set_result(digest)

    async def _act(self, step: Step) -> str | None:
        frame = step.frame
        if step.action == "fresh":
            self.summary.fresh += 1
            self._pin(frame, step.digest, self._locked_cost(frame), step.output)
            self.events.frame("fresh", step, step.reason, step.output)
            return step.digest
        if step.action == "blocked":
            self.summary.left += 1
            self.events.frame("left", step, f"{frame.output}: {step.reason}")
            return None
        if step.action == "restore" and step.digest and await self._restore(step):
            return step.digest
        landing = await self.flights.wait(frame.key, lambda: self.stopped)
        if landing is STOPPED:
            return self._skip_stopped(step)
        if landing is EMPTY:
            self.summary.skipped += 1
            self.events.frame("skipped", step, "the same request, sent by another frame of this "
                              "build, brought no image")
            return None
        if landing is not None:
            return self._follow(step, landing)
        with self.flights.lead(frame.key):
            return await self._send(step)

    async def _restore(self, step: Step) -> bool:
        """Restore from the cache (or the remote cache); False: not to be had, render it."""
        frame = step.frame
        remote = step.digest in self.pulled or not self.cache.has_blob(step.digest)
        source = "the remote cache" if remote else "the cache"
        if not (await self._fetch_remote(frame, step.digest) and
                self._materialize(frame, step.output, step.digest)):
            return False
        self.summary.restored += 1
        self.summary.saved += frame.cost
        self._pin(frame, step.digest, self._take_cost(frame, step.digest), step.output)
        self.events.frame("restored", step, f"{step.reason} · from {source}, free",
                          step.output)
        return True

    def _follow(self, step: Step, landing: Landing) -> str:
        """Identical requests in one build are sent once: this frame takes the image another
        frame (or the recovery of an earlier build's task) paid for."""
        frame, take, leader, recovered = step.frame, landing.take, landing.leader, landing.recovered
        output = frame.output_for(take.format)
        if not self._materialize(frame, output, take.digest):
            raise FrameFailed(f"the image of {leader} vanished from the cache while writing")
        self._pin(frame, take.digest, Decimal(take.cost_usd), output)
        if recovered:
            self.summary.rendered += 1  # its earlier build paid: nothing more is spent
        else:
            self.summary.restored += 1
            self.summary.saved += frame.cost
        source = f"the task an earlier build sent for {leader}" if recovered \
            else f"same request as {leader}"
        self.events.frame("rendered" if recovered else "restored", step, f"{source} · free",
                          output)
        return take.digest

    async def _send(self, step: Step) -> str | None:
        frame = step.frame
        slot = self.slots[frame.backend]
        await slot.acquire()
        held = [True]

        def release() -> None:  # once the remote work is done, or when this frame ends
            if held[0]:
                held[0] = False
                slot.release()
        try:
            if self.stopped:
                return self._skip_stopped(step)
            if self.remote is not None and self.remote.unreachable and \
                    self.options.remote_errors != "render":
                raise FrameFailed(f"remote unavailable ({self.remote.unreachable}): not rendered, "
                                  "since the team's cache may hold it; retry, or pass "
                                  "--remote-errors=render to pay for it anyway", retry_later=True)
            if not self.budget.reserve(frame):
                self.summary.skipped += 1
                self.events.frame("skipped", step,
                                  f"over budget (USD {fmt_usd(self.budget.measure(frame))})")
                return None
            self.events.start(step)
            return await self._render(step, release)
        finally:
            release()

    async def _render(self, step: Step, release: Callable[[], None]) -> str:
        frame = step.frame
        lifetime = self.project.loaded.manifest.cache.url_lifetime
        inputs = [input_data(image, frame.backend, self.root, self.cache, self.remote, lifetime)
                  for image in frame.inputs]
        entry = self._entry(step)
        take_no = entry.take
        job = Job(take=take_no, cost=frame.cost, resume_task=entry.task_id, body=entry.body,
                  on_send=lambda body: self.journal.sent(frame.key, take_no, body),
                  on_task=lambda task_id: self.journal.task(frame.key, take_no, task_id),
                  on_finished=release)
        with self.inflight.sending(frame):
            try:
                take = await self._fetch(frame, inputs, job)
            except TaskFailed:
                self.journal.failed(frame.key, take_no)
                raise
            except ImageLost as exc:
                self.recovery.lost(frame.key, take_no, frame.cost, f"{frame.name}: {exc}")
                raise FrameFailed(str(exc)) from None
            except (NbpipeError, OSError) as exc:
                self.recovery.settle(frame, entry, exc)
                raise
        self.flights.landed(frame.key, take, frame.name)
        output = frame.output_for(take.format)
        try:
            written = self._materialize(frame, output, take.digest)
        except FrameFailed:  # a file in the way: paid, and kept in the cache
            self.summary.spent += max(Decimal(take.cost_usd), self.budget.measure(frame))
            raise
        if not written:  # paid, and not to be had: lost
            self.summary.lost += 1
            self.summary.lost_usd += Decimal(take.cost_usd)
            raise FrameFailed(f"the image of {frame.name} vanished from the cache while writing")
        self.summary.rendered += 1
        self.summary.spent += max(Decimal(take.cost_usd), self.budget.measure(frame))
        self._pin(frame, take.digest, Decimal(take.cost_usd), output)
        where = f" as {output}" if output != frame.output else ""
        self.events.frame("rendered", step,
                          f"{step.reason} · {frame.backend} {frame.model}{where}", output)
        return take.digest

    def _entry(self, step: Step) -> Entry:
        """The journal entry this render goes under: an open one of this key (its task is
        re-attached, its create resent byte for byte), else a new take's intent."""
        frame = step.frame
        account = self._backend(frame.backend).account
        entry = self.journal.open_for(frame.key, frame.backend, account)
        if entry is None:  # a new take, under a number never used for this key anywhere
            known = [t for t, _ in self.remote.takes(frame.key)] \
                if self.remote is not None and step.action == "render" and self.options.force \
                else []
            take_no = self.cache.allocate_take(frame.key, known)
            self.journal.intent(frame.key, take_no, frame.name, frame.backend, frame.record(),
                                account)
            entry = self.journal.open[(frame.key, take_no)]
        return entry

    async def _fetch(self, frame: Frame, inputs: list[InputData], job: Job,
                     record: dict | None = None) -> Take:
        """Render (or re-attach) into the cache: verified, committed, indexed, journalled,
        and pushed. `record`: the request as journalled, for a task an earlier build left."""
        record = record or frame.record()
        started = time.time()
        with self.cache.writer() as sink:
            rendered = await self._backend(frame.backend).render(frame.request, inputs, sink, job)
            sink.flush()
            fmt = await verify_image_async(sink.path)  # only images enter the cache
            digest = sink.commit()
        take = Take(digest=digest, backend=frame.backend, model=frame.model, format=fmt,
                    cost_usd=str(rendered.cost), created=started, task_id=rendered.task_id,
                    url=rendered.url, url_expires=rendered.url_expires, take=job.take)
        self.cache.add_take(frame.key, record, take)  # paid for: safe before anything else
        if self.pusher is not None:  # also an earlier build's task: the team paid for it too
            self.pusher.push(frame.key, take, record)  # remembered, then sent in the background
        self.journal.done(frame.key, job.take, digest)
        return take

    async def _fetch_remote(self, frame: Frame, digest: str) -> bool:
        """A restore whose image came from the remote: download it if the batch before the build
        did not (verified), and index its take here so later builds know it even offline."""
        if self.remote is None:
            return self.cache.has_blob(digest)
        loop = asyncio.get_running_loop()
        if not self.cache.has_blob(digest) and not await loop.run_in_executor(
                self._remote_io, self.remote.fetch, digest, self.cache):
            return False
        if digest not in {t.digest for t in self.cache.takes(frame.key)}:
            for take, request in await loop.run_in_executor(self._remote_io, self.remote.takes,
                                                            frame.key):
                if take.digest == digest:
                    self.cache.add_take(frame.key, request, take)
        return True

    def _materialize(self, frame: Frame, output: str, digest: str) -> bool:
        """Write the image to `output`; False if the cache lacks it. `output` may not be the
        path `decide` checked (Gemini picks the format: a JPEG reply is written as .jpg), so
        it is checked here too: a file nbpipe did not make is never replaced without --force
        (the image stays in the cache, and the next build says what is in the way)."""
        if not self.options.force:
            pinned = self.lock.entries.get(frame.name)
            if not output_is_ours(output, self.state.output_digest(output),
                                  pinned.digest if pinned else None, frame.key, self.known):
                raise FrameFailed(f"a file not made by nbpipe is in the way: {output} (--force "
                                  "overwrites; the image is in the cache)")
        return write_output(self.cache, self.state, self.root, output, digest)

    def _pin(self, frame: Frame, digest: str, cost: Decimal, output: str | None) -> None:
        self.lock.entries[frame.name] = LockEntry(
            key=frame.key, output=output or frame.output, digest=digest, backend=frame.backend,
            model=frame.model, cost_usd=float(cost))

    def _locked_cost(self, frame: Frame) -> Decimal:
        entry = self.lock.entries.get(frame.name)
        return Decimal(str(entry.cost_usd)) if entry and entry.key == frame.key else frame.cost

    def _take_cost(self, frame: Frame, digest: str) -> Decimal:
        for take in self.cache.takes(frame.key):
            if take.digest == digest:
                return Decimal(take.cost_usd)
        return self._locked_cost(frame)

    def _fail(self, step: Step, message: str) -> None:
        self.summary.failed += 1
        self.failed[step.frame.name] = message
        self.events.frame("failed", step, message)
        if self.options.fail_fast and not self.stopped:
            self.stopped = f"{step.frame.name} failed and --fail-fast is on"
        return None

    def _skip_stopped(self, step: Step) -> None:
        self.summary.skipped += 1
        why = "interrupted" if self.interrupted else self._see_end()
        self.events.frame("skipped", step, f"not sent: {why}")
        return None

    def _see_end(self) -> str:
        self.stop_told_later = True  # the reason is printed once, before the summary
        return "the build stopped (see the end)"

    def _skip(self, frame: Frame, upstream: str) -> None:
        self.summary.skipped += 1
        self.events.frame("skipped", Step(frame, "blocked", f"upstream {upstream} not built"),
                          f"upstream {upstream} was not built")

    def _finish(self, frames: list[Frame]) -> None:
        """Pin what was built, drop frames no longer declared, and remember file stats."""
        drop_undeclared(self.lock, self.project.frames, self.state, self.events)
        remember_outcomes(self.state, frames, self.failed, self.summary)
        save_lock(self.lock, self.root)
        if self.pusher is not None:
            self.pusher.finish(self.events, self.interrupted)
        record_pins(self.cache, self.root, self.lock, self.events)
        self.state.set_fingerprint(self._fingerprint(frames))
        try:
            self.state.save()
        except OSError:
            pass  # only a cache of file stats: the next build re-reads the files

    def _remote_url(self) -> str | None:
        return remote_url(self.project.loaded.manifest.cache.remote)

    def _fingerprint(self, frames: list[Frame]) -> dict | None:
        """What lets the next build answer "nothing to do" without planning, or None."""
        # Complete from each frame's outcome, never from counters: an interrupted frame has
        # none. Open journal entries keep the fast path off until they are collected, and so
        # does work left for the remote (a push not done, a catch-up not yet possible).
        complete = not self.options.patterns and not self.options.force and \
            not self.interrupted and not self.journal.open and \
            (self.pusher is None or self.pusher.settled()) and \
            len(frames) == len(self.project.frames) and \
            all(self.outcomes.get(f.name) and f.name in self.lock.entries for f in frames)
        if not complete:
            return None
        outputs = [self.lock.entries[f.name].output for f in frames]  # the real paths (.jpg too)
        options = fingerprint_options(self.options.backend, self.options.profile)
        url = self._remote_url()  # its marks are what the fast path waits for (a build
        # killed after marking left them)
        return fingerprint(self.root, options, self.project.loaded.digest, self.project.reads,
                           self.lock.text(), outputs, len(frames),
                           self.state.data.get("fingerprint"),
                           quiet_until(self.project.catalog, frames),
                           remote_id(url) if url else None)
