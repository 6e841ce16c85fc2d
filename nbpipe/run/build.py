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
from nbpipe.errors import BuildStopped, FrameFailed, NbpipeError, TaskFailed
from nbpipe.plan.frame import Frame, InputImage
from nbpipe.plan.planner import Project, Step, decide, make_plan
from nbpipe.run.budget import Budget
from nbpipe.run.events import Summary, fmt_usd
from nbpipe.run.known import StoreKnown
from nbpipe.run.noop import fingerprint
from nbpipe.store.cache import Cache, Take
from nbpipe.run.push import Pusher
from nbpipe.store.journal import Journal
from nbpipe.store.remote import Remote
from nbpipe.store.lock import Lock, LockEntry
from nbpipe.store.state import State

DISK_STOPS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


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
    grace: float = 10.0  # seconds to keep collecting in-flight renders after Ctrl-C
    offline: bool = False  # never touch the remote cache

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

    @property
    def root(self) -> Path:
        return self.project.loaded.root

    def run(self) -> Summary:
        frames = self.project.select(self.options.patterns)
        self._sweep(frames)
        self._preflight(frames)
        if self.remote is not None and self.remote.unreachable:
            self.events.note(f"remote: unreachable ({self.remote.unreachable}); building from "
                             "the local cache, new images are pushed next time")
        if self.remote is not None:
            self.pusher = Pusher(self.remote, self.cache, self.state)
        manifest = self.project.loaded.manifest
        cap = self.options.max_cost if self.options.max_cost is not None else (
            Decimal(str(manifest.max_cost)) if manifest.max_cost is not None else None)
        self.budget = Budget(cap)
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
        loop = asyncio.get_running_loop()
        if self.interrupted:
            main.cancel()  # a second Ctrl-C: stop now
            return
        self.interrupted = True
        self.stopped = "interrupted"
        self.events.note(f"interrupted: nothing new is sent; collecting what is in flight for up "
                         f"to {self.options.grace:.0f} s (Ctrl-C again to stop now)")
        loop.call_later(self.options.grace, main.cancel)

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
                           if s.action == "restore" and known.remote_only(s.digest)}
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
        try:
            await asyncio.gather(*(self._one(f, known, done) for f in frames))
            await self._recover()
        finally:
            try:
                loop.remove_signal_handler(signal.SIGINT)
            except (NotImplementedError, RuntimeError, ValueError):
                pass
            for backend in self.backends.values():
                await backend.aclose()

    async def _recover(self) -> None:
        """Fetch every task an earlier build created but never collected (a crash, a changed
        manifest): it is paid for, so its image belongs in the cache."""
        for entry in [e for e in self.journal.open.values() if e.task_id and not self.stopped]:
            request = entry.request
            spec = self.project.catalog.get(entry.backend, str(request.get("model")))
            params = request.get("params") or {}
            frame = Frame(name=entry.frame, target=entry.frame, backend=entry.backend,
                          model=str(request.get("model")), prompt=str(request.get("prompt")),
                          params=params, inputs=(), output="", key=entry.key,
                          cost=spec.price(params.get("resolution")) if spec else Decimal(0))
            job = Job(take=entry.take, cost=frame.cost, resume_task=entry.task_id)
            try:
                await self._fetch(frame, [], job)
            except TaskFailed:
                self.journal.failed(entry.key, entry.take)
            except (NbpipeError, OSError) as exc:
                self.events.note(f"task {entry.task_id} of an earlier build of {entry.frame} "
                                 f"is still out: {exc}")
                continue
            self.events.note(f"recovered {entry.frame}: the image of task {entry.task_id}, "
                             "paid for by an earlier build, is in the cache")

    async def _one(self, frame: Frame, known: StoreKnown, done: dict) -> None:
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
        done[frame.name].set_result(digest)

    async def _act(self, step: Step) -> str | None:
        frame = step.frame
        if step.action == "fresh":
            self.summary.fresh += 1
            self._pin(frame, step.digest, self._locked_cost(frame), step.output)
            self.events.frame("fresh", step, step.reason)
            return step.digest
        if step.action == "blocked":
            self.summary.left += 1
            self.events.frame("left", step, f"{frame.output}: {step.reason}")
            return None
        if step.action == "restore":
            remote = step.digest in self.pulled or not self.cache.has_blob(step.digest)
            source = "the remote cache" if remote else "the cache"
            if await self._fetch_remote(frame, step.digest) and \
                    self._materialize(step.output, step.digest):
                self.summary.restored += 1
                self.summary.saved += frame.cost
                self._pin(frame, step.digest, self._take_cost(frame, step.digest), step.output)
                self.events.frame("restored", step, f"{step.reason} · from {source}, free")
                return step.digest
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
            if not self.budget.reserve(frame.name, frame.cost):
                self.summary.skipped += 1
                self.events.frame("skipped", step, f"over budget (USD {fmt_usd(frame.cost)})")
                return None
            self.events.start(step)
            return await self._render(step, release)
        finally:
            release()

    async def _render(self, step: Step, release: Callable[[], None]) -> str:
        frame = step.frame
        inputs = [self._input(image, frame.backend) for image in frame.inputs]
        take_no = self.cache.next_take(frame.key)
        self.journal.intent(frame.key, take_no, frame.name, frame.backend, frame.record())
        job = Job(take=take_no, cost=frame.cost,
                  resume_task=self.journal.pending_task(frame.key, take_no),
                  on_task=lambda task_id: self.journal.task(frame.key, take_no, task_id),
                  on_finished=release)
        try:
            take = await self._fetch(frame, inputs, job)
        except TaskFailed:
            self.journal.failed(frame.key, take_no)
            self.cache.note_failed_task(frame.key)  # the next try needs a new Idempotency-Key
            raise
        self.summary.rendered += 1
        self.summary.spent += Decimal(take.cost_usd)
        output = frame.output_for(take.format)
        if not self._materialize(output, take.digest):
            raise FrameFailed(f"the image of {frame.name} vanished from the cache while writing")
        self._pin(frame, take.digest, Decimal(take.cost_usd), output)
        where = f" as {output}" if output != frame.output else ""
        self.events.frame("rendered", step, f"{step.reason} · {frame.backend} {frame.model}{where}")
        return take.digest

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
                    url=rendered.url, url_expires=rendered.url_expires)
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
            if hashlib.sha256(data).hexdigest() != image.digest:  # the key names other bytes
                raise FrameFailed(f"'{image.ref}' changed while this build ran; not sent under "
                                  "a key made from its old bytes (build again)")
            url, expires = None, None
        else:
            data = self.cache.read_verified(image.digest) if image.digest else None
            if data is None:
                raise FrameFailed(f"the image of '{image.ref}' is not in the cache")
            url, expires = self.cache.served_at(image.digest)
        if backend == "hiapi" and self.remote is not None and \
                (url is None or (expires or 0) < time.time() + 300):
            lifetime = self.project.loaded.manifest.cache.url_lifetime
            url = self.remote.share(image.digest, data, lifetime)  # presigned, on our bucket
            expires = time.time() + lifetime
        return InputData(image, data, MIME.get(sniff(data[:16]) or "", "image/png"), url, expires)

    def _materialize(self, output: str, digest: str) -> bool:
        if not self.cache.copy_verified(digest, self.root / output):
            return False
        self.state.note_output(output, digest)
        return True

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
            self.state.orphans[entry.output] = entry.digest
            self.state.changed = True
            self.events.note(f"orphan    {entry.output}  (frame {name} is no longer declared; "
                             "`nbpipe clean --orphans` removes it)")
        for frame in self.project.frames.values():
            self.state.orphans.pop(frame.output, None)
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
        complete = not self.options.patterns and not self.options.force and \
            self.summary.failed == self.summary.skipped == self.summary.left == 0 and \
            len(frames) == len(self.project.frames)
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
