"""Doing it: restore or render each selected frame in DAG order, then pin the results.

Every frame goes through `plan.planner.decide` — the same function `nbpipe plan` uses — at the
moment its upstreams are done, so an edit is keyed on the bytes its upstream actually holds
(early cutoff: an upstream that re-renders to identical bytes leaves its dependants fresh).

What is paid for is safe before anything else happens: the image is committed to the cache and
indexed under its key before the output file is written or the lock is touched.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import errno
import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from nbpipe.backends import DEFAULT_JOBS, open_backend
from nbpipe.backends.base import Backend, InputData, Job
from nbpipe.backends.images import MIME, sniff, verify_image_async
from nbpipe.errors import BuildStopped, FrameFailed, ImageLost, NbpipeError, TaskFailed
from nbpipe.plan.frame import Frame, InputImage
from nbpipe.plan.planner import Project, Step, decide, make_plan
from nbpipe.run.budget import Budget
from nbpipe.run.prices import list_prices
from nbpipe.run.events import Summary, fmt_usd
from nbpipe.run.known import StoreKnown
from nbpipe.run.noop import fingerprint
from nbpipe.run.outputs import write_output
from nbpipe.store.cache import Cache, Take
from nbpipe.run.push import Pusher
from nbpipe.store.journal import Entry, Journal
from nbpipe.store.remote import Remote, RemoteUnavailable
from nbpipe.store.lock import Lock, LockEntry
from nbpipe.store.state import State

DISK_STOPS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO}
SYNC_BACKENDS = {"gemini"}  # no task, no idempotency: a request sent is a request paid
RECOVER_TIMEOUT = 300.0  # seconds for collecting what earlier builds left, all tasks together


def _seconds(name: str, default: float) -> float:
    try:
        value = float(os.environ.get(name) or default)
    except ValueError:
        return default
    return value if value >= 0 else default  # nan fails the comparison too


def disk_message(exc: OSError) -> str:
    where = f" ({exc.filename})" if exc.filename else ""
    return f"cannot write{where}: {exc.strerror or exc}"


@dataclass
class BuildOptions:
    patterns: tuple[str, ...] = ()
    force: bool = False
    backend: str | None = None
    jobs: int | None = None  # frames in flight per backend; None: the manifest's or the default
    max_cost: Decimal | None = None  # None: the manifest's max_cost, if any
    fail_fast: bool = False
    grace: float = field(default_factory=lambda: _seconds("NBPIPE_INTERRUPT_GRACE", 10.0))
    # seconds to keep collecting HiAPI tasks after Ctrl-C (Gemini requests are waited for)
    offline: bool = False  # never touch the remote cache
    trust_prices: bool = False  # measure the budget in the manifest's `pricing:` as it stands
    remote_errors: str = "fail"  # "render": pay for a frame even when the remote may hold it

    profile: str | None = None

    def fingerprint_options(self) -> dict:
        return {"backend": self.backend, "profile": self.profile}


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
    pusher: Pusher | None = None
    pulled: set[str] = field(default_factory=set)  # digests the remote served this build
    _remote_io: ThreadPoolExecutor = field(  # parallel downloads from the remote cache
        default_factory=lambda: ThreadPoolExecutor(16, thread_name_prefix="nbpipe-pull"))
    budget: "Budget | None" = None
    slots: dict = field(default_factory=dict)
    outcomes: dict[str, str | None] = field(default_factory=dict)  # frame → digest it holds
    flights: dict[str, asyncio.Future] = field(default_factory=dict)  # key → its one request
    sync_inflight: dict[str, Decimal] = field(default_factory=dict)  # frame → price (Gemini)
    tasks: dict[str, asyncio.Task] = field(default_factory=dict)
    _flown: dict[str, tuple] = field(default_factory=dict)  # key → (take, frame, recovered)
    _recovering: set[str] = field(default_factory=set)  # keys whose flight is a recovery
    _tried: set[tuple[str, int]] = field(default_factory=set)  # entries recovery has tried

    @property
    def root(self) -> Path:
        return self.project.loaded.root

    def run(self) -> Summary:
        frames = self.project.select(self.options.patterns)
        self._sweep(frames)
        self._preflight(frames)
        if self.remote is not None and self.remote.unreachable:
            self.events.note(f"remote: unreachable ({self.remote.unreachable}); restoring from "
                             "the local cache; " + ("frames to render are paid for even if the "
                             "remote may hold them (--remote-errors=render)"
                             if self.options.remote_errors == "render" else
                             "frames to render wait (retry later, or --remote-errors=render)"))
        if self.remote is not None:
            self.pusher = Pusher(self.remote, self.cache, self.state)
        manifest = self.project.loaded.manifest
        cap = self.options.max_cost if self.options.max_cost is not None else (
            Decimal(str(manifest.max_cost)) if manifest.max_cost is not None else None)
        self.budget = Budget(cap, list_prices(self.cache.root), self.options.trust_prices)
        self._announce_unknown()
        try:
            with asyncio.Runner() as runner:
                runner.run(self._all(frames))
        except asyncio.CancelledError:
            self.interrupted = True
        finally:
            self._finish(frames)
        if self.budget.refused:
            names = ", ".join(self.budget.refused[:8]) + (" …" if len(self.budget.refused) > 8 else "")
            self.events.note(f"over budget: {len(self.budget.refused)} frame(s) not rendered to "
                             f"stay within USD {fmt_usd(cap)}: {names}")
        if self.stop_told_later:
            self.events.note(f"build stopped: {self.stopped}")
        self.summary.interrupted = self.interrupted
        self.events.summary(self.summary)
        return self.summary

    def _remember_outcomes(self, frames: list[Frame]) -> None:
        """What the report shows later: the last failures, and running totals."""
        failed = {k: v for k, v in self.state.data.get("failed", {}).items()
                  if k not in {f.name for f in frames}}
        self.state.data["failed"] = {**failed, **self.failed}
        totals = self.state.data.setdefault("totals", {"spent_usd": "0", "saved_usd": "0"})
        totals["spent_usd"] = str(Decimal(totals["spent_usd"]) + self.summary.spent)
        totals["saved_usd"] = str(Decimal(totals["saved_usd"]) + self.summary.saved)
        self.state.changed = True

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
            if self.sync_inflight:
                self.events.note(f"warning: abandoning {self._inflight_text()}: they may have "
                                 "been billed; the next build sends them again")
                for name in list(self.sync_inflight):  # _close_sync pops each one
                    self._close_sync(name, "abandoned at a second Ctrl-C")
            main.cancel()
            return
        self.interrupted = True
        self.stopped = "interrupted"
        self.events.note(f"interrupted: nothing new is sent; collecting what is in flight for up "
                         f"to {self.options.grace:.0f} s (Ctrl-C again to stop now)")
        if self.sync_inflight:
            self.events.note(f"waiting for {self._inflight_text()} already sent: they are paid "
                             "for, so their images are kept (Ctrl-C again abandons them)")
        loop.call_later(self.options.grace, self._cancel_resumable)

    def _inflight_text(self) -> str:
        cost = sum(self.sync_inflight.values(), Decimal(0))
        return f"{len(self.sync_inflight)} Gemini request(s) (USD {fmt_usd(cost)})"

    def _cancel_resumable(self) -> None:
        """The grace period is over: stop every frame but a Gemini request in flight."""
        for name, task in self.tasks.items():
            if name not in self.sync_inflight and not task.done():
                task.cancel()

    def _close_sync(self, name: str, why: str) -> None:
        # by name: a frame keyed on an upstream image has no key in self.project.frames
        entry = next((e for e in self.journal.open.values()
                      if e.frame == name and e.backend in SYNC_BACKENDS), None)
        if entry is not None:
            self.journal.closed(entry.key, entry.take, why)
        cost = self.sync_inflight.pop(name, Decimal(0))
        self.summary.maybe_billed += 1
        self.summary.maybe_billed_usd += cost

    def _announce_unknown(self) -> None:
        """Gemini requests an earlier build sent and never heard back from (kill -9, a crash):
        they may have been billed. Say so, count them, and only then send again."""
        unknown = [e for e in self.journal.open.values()
                   if e.backend in SYNC_BACKENDS and e.task_id is None]
        if not unknown:
            return
        cost = sum((self._entry_price(e) for e in unknown), Decimal(0))
        names = ", ".join(sorted({e.frame for e in unknown})[:8])
        self.events.note(f"{len(unknown)} Gemini request(s) were in flight when an earlier build "
                         f"stopped ({names}): they may have been billed (USD {fmt_usd(cost)}); "
                         "frames still needed are sent again")
        for entry in unknown:
            self.journal.closed(entry.key, entry.take, "outcome unknown after a crash")
            self.summary.maybe_billed += 1
            self.summary.maybe_billed_usd += self._entry_price(entry)
        self.budget.reserved += cost  # the cap covers what may already be spent

    def _entry_price(self, entry: Entry) -> Decimal:
        spec = self.project.catalog.get(entry.backend, str(entry.request.get("model")))
        params = entry.request.get("params") or {}
        try:
            return spec.price(params.get("resolution")) if spec else Decimal(0)
        except Exception:  # noqa: BLE001 - a journal record is untrusted input: unknown price
            return Decimal(0)

    def _preflight(self, frames: list[Frame]) -> None:
        """Plan once up front: open the backends it will render on, so a missing one stops the
        build before anything happens; frames with no upstream keep this decision."""
        known = StoreKnown(self.lock, self.cache, self.state, self.remote)
        if self.remote is not None:
            self.remote.prefetch_takes([f.key for f in frames
                                        if f.key and not self.cache.takes(f.key)])
        plan = make_plan(frames, known, self._forced)
        if self.remote is not None:  # the images only the remote has, in one concurrent batch
            self.pulled = {s.digest for s in plan.steps
                           if s.action == "restore" and s.digest and known.remote_only(s.digest)}
            self.remote.fetch_many(sorted(self.pulled), self.cache)
        self.decided = {s.frame.name: s for s in plan.steps if not s.frame.upstreams}
        needed = {s.frame.backend for s in plan.steps
                  if s.action == "render" or (s.action == "blocked" and s.frame.key is None)}
        for name in sorted(needed):
            self._backend(name)

    def _forced(self, frame: Frame) -> bool:
        if not self.options.force:
            return False
        return not self.options.patterns or frame.name in self._forced_names

    @property
    def _forced_names(self) -> set[str]:
        if not hasattr(self, "_forced_cache"):
            self._forced_cache = {f.name for f in self.project.select(self.options.patterns)}
        return self._forced_cache

    def _backend(self, name: str) -> Backend:
        if name not in self.backends:
            limits = self.project.loaded.manifest.limits.get(name)
            self.backends[name] = open_backend(name, self._jobs(name), limits.rpm if limits else None)
        return self.backends[name]

    async def _all(self, frames: list[Frame]) -> None:
        known = StoreKnown(self.lock, self.cache, self.state, self.remote)
        loop = asyncio.get_running_loop()
        done: dict[str, asyncio.Future] = {f.name: loop.create_future() for f in frames}
        self.slots = {b: asyncio.Semaphore(self._jobs(b)) for b in DEFAULT_JOBS}
        main = asyncio.current_task()
        try:
            loop.add_signal_handler(signal.SIGINT, self._interrupt, main)
        except (NotImplementedError, RuntimeError, ValueError):
            pass  # not the main thread, or no signals here: Ctrl-C then stops at once
        loop_tasks = [asyncio.ensure_future(self._recover())]
        for f in frames:
            self.tasks[f.name] = asyncio.ensure_future(self._one(f, known, done))
        try:
            # return_exceptions: a frame stopped after the grace period must not end the wait
            # for the Gemini requests still in flight
            for outcome in await asyncio.gather(*loop_tasks, *self.tasks.values(),
                                                return_exceptions=True):
                if isinstance(outcome, Exception):
                    raise outcome
            await self._recover(after=True)  # tasks this build's frames left (a bad download)
        finally:
            try:
                loop.remove_signal_handler(signal.SIGINT)
            except (NotImplementedError, RuntimeError, ValueError):
                pass
            for backend in self.backends.values():
                await backend.aclose()

    async def _recover(self, after: bool = False) -> None:
        """Collect every task an earlier build created but never collected (a crash, Ctrl-C, a
        changed manifest): it is paid for, so its image belongs in the cache. Concurrently,
        within the build's -j, and within a total time bound: what is still out then stays in
        the journal for the next build."""
        entries = [e for e in list(self.journal.open.values())
                   if e.backend not in SYNC_BACKENDS and (e.task_id or e.body)
                   and (e.key, e.take) not in self._tried]
        if not entries or self.stopped:
            return
        bound = _seconds("NBPIPE_RECOVER_TIMEOUT", RECOVER_TIMEOUT)
        flights = []
        for entry in entries:
            if entry.key in self.flights and not after:
                continue  # a frame of this build is already sending this key
            self._tried.add((entry.key, entry.take))
            self.flights[entry.key] = asyncio.get_running_loop().create_future()
            self._recovering.add(entry.key)
            flights.append((entry, self.flights[entry.key]))
        try:
            async with asyncio.timeout(bound):
                await asyncio.gather(*(self._recover_one(e, f) for e, f in flights))
        except TimeoutError:
            out = sum(1 for e, _ in flights if (e.key, e.take) in self.journal.open)
            self.events.note(f"{out} task(s) of earlier builds still out after {bound:.0f} s; "
                             "they stay in the journal and the next build collects them")
        finally:
            for _, flight in flights:
                if not flight.done():
                    flight.set_result(None)

    async def _recover_one(self, entry: Entry, flight: asyncio.Future) -> None:
        price = self._entry_price(entry)
        request = entry.request
        params = request.get("params") if isinstance(request.get("params"), dict) else {}
        frame = Frame(name=entry.frame, target=entry.frame, backend=entry.backend,
                      model=str(request.get("model")), prompt=str(request.get("prompt")),
                      params=params, inputs=_inputs_of(request), output="", key=entry.key,
                      cost=price)
        what = f"task {entry.task_id}" if entry.task_id else "a create whose reply was lost"
        if frame.request.key != entry.key:  # the Idempotency-Key would differ: a new payment
            self.events.note(f"{what} of an earlier build of {entry.frame}: its journal record "
                             "does not match its key; left alone")
            return flight.set_result(None)
        take = None
        async with self.slots[entry.backend]:
            if self.stopped or (entry.task_id is None and  # a resend may be a first create
                                not self.budget.reserve(frame)):
                return flight.set_result(None)
            job = Job(take=entry.take, cost=price, resume_task=entry.task_id, body=entry.body,
                      on_task=lambda task_id: self.journal.task(entry.key, entry.take, task_id))
            try:
                take = await self._fetch(frame, [], job)
            except TaskFailed as exc:
                self.journal.failed(entry.key, entry.take)
                self.events.note(f"{what} of an earlier build of {entry.frame} failed: {exc}")
            except ImageLost as exc:
                self._lost(entry.key, entry.take, price, f"{entry.frame}: {exc}")
            except (NbpipeError, OSError) as exc:
                self.events.note(f"{what} of an earlier build of {entry.frame} is still out: "
                                 f"{exc}")
            except asyncio.CancelledError:
                flight.set_result(None)
                raise
        flight.set_result((take, entry.frame, True) if take else None)
        if take is not None:
            self.events.note(f"recovered {entry.frame}: the image of task {take.task_id}, "
                             "paid for by an earlier build, is in the cache")

    def _lost(self, key: str, take: int, price: Decimal, message: str) -> None:
        """A paid task whose image is gone: close it, count it, and render anew next time."""
        self.journal.closed(key, take, "image lost")
        self.summary.lost += 1
        self.summary.lost_usd += price
        self.events.note(f"lost      {message}; the next render is a new task")

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
        step = self.decided.get(frame.name) or decide(frame, known, self._forced(frame))
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
        if step.action == "restore" and step.digest:
            remote = step.digest in self.pulled or not self.cache.has_blob(step.digest)
            source = "the remote cache" if remote else "the cache"
            if await self._fetch_remote(frame, step.digest) and \
                    self._materialize(step.output, step.digest):
                self.summary.restored += 1
                self.summary.saved += frame.cost
                self._pin(frame, step.digest, self._take_cost(frame, step.digest), step.output)
                self.events.frame("restored", step, f"{step.reason} · from {source}, free",
                                  step.output)
                return step.digest
        while (flight := self.flights.get(frame.key)) is not None:
            result = await asyncio.shield(flight)
            if result is not None:
                return self._follow(step, *result)
            if self.flights.get(frame.key) is flight:
                if self.stopped:
                    return self._skip_stopped(step)
                if frame.key not in self._recovering:
                    self.summary.skipped += 1
                    self.events.frame("skipped", step, "the same request, sent by another "
                                      "frame of this build, brought no image")
                    return None
                del self.flights[frame.key]  # a recovery that brought nothing: send it anew
                self._recovering.discard(frame.key)
        flight = self.flights[frame.key] = asyncio.get_running_loop().create_future()
        try:
            digest = await self._send(step)
        finally:
            if not flight.done():
                flight.set_result(self._flown.pop(frame.key, None))
        return digest

    def _follow(self, step: Step, take: Take, leader: str, recovered: bool) -> str:
        """Identical requests in one build are sent once: this frame takes the image another
        frame (or the recovery of an earlier build's task) paid for."""
        frame = step.frame
        output = frame.output_for(take.format)
        if not self._materialize(output, take.digest):
            raise FrameFailed(f"the image of {leader} vanished from the cache while writing")
        self._pin(frame, take.digest, Decimal(take.cost_usd), output)
        if recovered:
            self.summary.rendered += 1  # its earlier build paid: nothing more is spent
        else:
            self.summary.restored += 1
            self.summary.saved += frame.cost
        self.events.frame("rendered" if recovered else "restored", step,
                          f"same request as {leader} · free", output)
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
        inputs = [self._input(image, frame.backend) for image in frame.inputs]
        entry = self.journal.open_for(frame.key, frame.backend)
        if entry is None:  # a new take, under a number never used for this key anywhere
            known = [t for t, _ in self.remote.takes(frame.key)] \
                if self.remote is not None and step.action == "render" and self._forced(frame) \
                else []
            take_no = self.cache.allocate_take(frame.key, known)
            self.journal.intent(frame.key, take_no, frame.name, frame.backend, frame.record())
            entry = self.journal.open[(frame.key, take_no)]
        take_no = entry.take
        job = Job(take=take_no, cost=frame.cost, resume_task=entry.task_id, body=entry.body,
                  on_send=lambda body: self.journal.sent(frame.key, take_no, body),
                  on_task=lambda task_id: self.journal.task(frame.key, take_no, task_id),
                  on_finished=release)
        sync = frame.backend in SYNC_BACKENDS
        if sync:
            self.sync_inflight[frame.name] = frame.cost
        try:
            take = await self._fetch(frame, inputs, job)
        except TaskFailed:
            self.journal.failed(frame.key, take_no)
            raise
        except ImageLost as exc:
            self._lost(frame.key, take_no, frame.cost, f"{frame.name}: {exc}")
            raise FrameFailed(str(exc)) from None
        except (NbpipeError, OSError) as exc:
            self._after_failure(frame, entry, exc)
            raise
        finally:
            self.sync_inflight.pop(frame.name, None)
        self._flown[frame.key] = (take, frame.name, False)
        output = frame.output_for(take.format)
        if not self._materialize(output, take.digest):  # paid, and not to be had: lost
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

    def _after_failure(self, frame: Frame, entry: Entry, exc: Exception) -> None:
        """Close the journal entry of a render that will never bring an image, so no later
        build replays it; keep the ones a later build can still collect for free."""
        if (entry.key, entry.take) not in self.journal.open or entry.task_id is not None:
            return  # done, or a task that exists: resumed (free) by the next build
        unknown = isinstance(exc, FrameFailed) and (exc.retry_later or exc.maybe_billed)
        if frame.backend in SYNC_BACKENDS:
            if unknown and isinstance(exc, FrameFailed) and exc.maybe_billed:
                self.summary.maybe_billed += 1
                self.summary.maybe_billed_usd += frame.cost
            self.journal.closed(entry.key, entry.take, f"no image: {exc}")
        elif entry.body is None or not unknown:
            self.journal.closed(entry.key, entry.take, f"no task: {exc}")
        # else: a create whose reply was lost; the next build resends the same bytes

    async def _fetch(self, frame: Frame, inputs: list[InputData], job: Job) -> Take:
        """Render (or re-attach) into the cache: verified, committed, indexed, journalled."""
        started = time.time()
        with self.cache.writer() as sink:
            rendered = await self._backend(frame.backend).render(frame.request, inputs, sink, job)
            sink.flush()
            fmt = await verify_image_async(sink.path)  # only images enter the cache
            digest = sink.commit()
        take = Take(digest=digest, backend=frame.backend, model=frame.model, format=fmt,
                    cost_usd=str(rendered.cost), created=started, task_id=rendered.task_id,
                    url=rendered.url, url_expires=rendered.url_expires, take=job.take)
        self.cache.add_take(frame.key, frame.record(), take)  # paid for: safe before anything else
        self.journal.done(frame.key, job.take, digest)
        if self.pusher is not None and frame.output:
            self.pusher.push(frame.key, take, frame.record())  # in the background
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

    def _input(self, image: InputImage, backend: str) -> InputData:
        if image.kind == "url":
            return InputData(image, None, url=image.ref)
        if image.kind == "file":
            data = (self.root / image.ref).read_bytes()
            if image.digest and hashlib.sha256(data).hexdigest() != image.digest:
                raise FrameFailed(f"'{image.ref}' changed after this build keyed it (sha256 "
                                  f"{image.digest[:12]}); nothing was sent: build again")
            url, expires = None, None
        else:
            data = self.cache.read_verified(image.digest) if image.digest else None
            if data is None:
                raise FrameFailed(f"the image of '{image.ref}' is not in the cache")
            url, expires = self.cache.served_at(image.digest)
        if backend == "hiapi" and self.remote is not None and \
                (url is None or (expires or 0) < time.time() + 300):
            lifetime = self.project.loaded.manifest.cache.url_lifetime
            try:
                url = self.remote.share(image.digest, data, lifetime)  # presigned, our bucket
            except RemoteUnavailable as exc:
                raise FrameFailed(f"{exc}: HiAPI takes '{image.ref}' as a URL on the remote "
                                  "cache; retry when it is back", retry_later=True) from None
            expires = time.time() + lifetime
        return InputData(image, data, MIME.get(sniff(data[:16]) or "", "image/png"), url, expires)

    def _materialize(self, output: str, digest: str) -> bool:
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

    def _quiet_until(self, frames: list[Frame]) -> dt.date | None:
        """Until when the no-op path may skip planning: a model's shutdown coming near must
        still be said (then refused) though nothing in the project changed."""
        specs = (self.project.catalog.get(f.backend, f.model) for f in frames)
        return min((day for spec in specs if spec and (day := spec.quiet_until())), default=None)

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
        for name in [n for n in self.lock.entries if n not in self.project.frames]:
            entry = self.lock.entries.pop(name)
            self.state.changed = True
            if self.state.written_digest(entry.output) != entry.digest:
                continue  # only a file this machine saw nbpipe write may be removed later
            self.state.orphans[entry.output] = entry.digest
            self.events.note(f"orphan    {entry.output}  (frame {name} is no longer declared; "
                             "`nbpipe clean --orphans` removes it)")
        for frame in self.project.frames.values():  # declared again, and nbpipe's once more
            entry = self.lock.entries.get(frame.name)
            if entry is not None:  # (until then, only the orphan record says the file is ours)
                self.state.orphans.pop(frame.output, None)
                self.state.orphans.pop(entry.output, None)
        self._remember_outcomes(frames)
        try:
            self.lock.save(self.root)
        except OSError as exc:  # atomic: the previous lock is still whole
            raise NbpipeError(f"{disk_message(exc)}; nbpipe.lock was left as it was, and every "
                              "image made is in the cache: the next build pins it for free") from None
        if self.pusher is not None:
            self.pusher.finish(self.events)
        try:
            self.cache.record_pins(self.root, self.lock.pinned())
        except OSError as exc:
            self.events.note(f"{disk_message(exc)}: gc in other projects sharing this cache may "
                             "not see this project's pins until the next build")
        # Complete from each frame's outcome, never from counters: an interrupted frame has
        # none. Open journal entries keep the fast path off until
        # they are collected.
        complete = not self.options.patterns and not self.options.force and \
            not self.interrupted and not self.journal.open and \
            len(frames) == len(self.project.frames) and \
            all(self.outcomes.get(f.name) and f.name in self.lock.entries for f in frames)
        fresh = None
        if complete:  # every frame is pinned: fingerprint the real paths (.jpg too)
            outputs = [self.lock.entries[f.name].output for f in frames]
            fresh = fingerprint(self.root, self.options.fingerprint_options(),
                                self.project.loaded.digest, self.project.reads, self.lock.text(),
                                outputs, len(frames), self.state.data.get("fingerprint"),
                                self._quiet_until(frames))
        self.state.set_fingerprint(fresh)
        try:
            self.state.save()
        except OSError:
            pass  # only a cache of file stats: the next build re-reads the files


def _inputs_of(record: dict) -> tuple[InputImage, ...]:
    """The input images of a journalled request record (untrusted: odd entries are dropped,
    and then the key check refuses the entry)."""
    out = []
    for doc in record.get("inputs") or []:
        if isinstance(doc, dict) and doc.get("kind") in ("frame", "file", "url") and \
                isinstance(doc.get("ref"), str) and isinstance(doc.get("digest"), str):
            out.append(InputImage(doc["kind"], doc["ref"], doc["digest"],
                                  "reference" if doc.get("role") == "reference" else "input"))
    return tuple(out)
