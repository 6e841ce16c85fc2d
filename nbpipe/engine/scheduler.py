"""The DAG walk: each selected frame in dependency order, within each backend's -j slots, one
request per key (flights), and one `Stop` for fail-fast, a refused key and Ctrl-C.

Every frame goes through `plan.planner.decide` — the same function `nbpipe plan` uses — at the
moment its upstreams are done, so an edit is keyed on the bytes its upstream actually holds
(early cutoff: an upstream that re-renders to identical bytes leaves its dependants fresh).
What happens to a frame is the materializer's (restore, follow, write) and the renderer's
(send, never twice); the scheduler decides which, and says how each frame ended.
"""

from __future__ import annotations

import asyncio
import errno
import signal
from dataclasses import dataclass, field
from decimal import Decimal

from nbpipe.engine.batches import adopt
from nbpipe.engine.flights import EMPTY, STOPPED, Flights
from nbpipe.engine.inflight import InFlight
from nbpipe.engine.materializer import Materializer
from nbpipe.engine.parking import Parking
from nbpipe.engine.recover import Recovery
from nbpipe.engine.renderer import Renderer
from nbpipe.engine.stop import Stop
from nbpipe.engine.telling import Teller
from nbpipe.errors import BatchPending, BuildStopped, FrameFailed, NbpipeError
from nbpipe.events import Status
from nbpipe.money import fmt_usd
from nbpipe.plan.budget import Budget
from nbpipe.plan.frame import Frame
from nbpipe.plan.planner import Step, decide
from nbpipe.store.known import StoreKnown
from nbpipe.store.outputs import disk_message
from nbpipe.store.remote import Remote

DISK_STOPS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO}
Done = dict[str, "asyncio.Future[str | None]"]


@dataclass
class Scheduler:
    renderer: Renderer
    materializer: Materializer
    recovery: Recovery
    teller: Teller
    stop: Stop
    flights: Flights
    inflight: InFlight
    budget: Budget
    slots: dict[str, asyncio.Semaphore]
    known: StoreKnown
    remote: Remote | None
    grace: float
    force: bool = False
    fail_fast: bool = False
    remote_errors: str = "fail"
    decided: dict[str, Step] = field(default_factory=dict)  # the preflight's steps to keep
    parking: Parking = field(default_factory=Parking)  # when the walk waits on batch jobs only
    tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    outcomes: dict[str, str | None] = field(default_factory=dict)  # frame → digest it holds
    failed: dict[str, str] = field(default_factory=dict)  # frame → why, for the report

    async def walk(self, frames: list[Frame]) -> None:
        loop = asyncio.get_running_loop()
        done: Done = {f.name: loop.create_future() for f in frames}
        main = asyncio.current_task()
        try:
            loop.add_signal_handler(signal.SIGINT, self._interrupt, main)
        except (NotImplementedError, RuntimeError, ValueError):
            pass  # not the main thread, or no signals here: Ctrl-C then stops at once
        self.parking.start(len(frames))
        loop_tasks = [asyncio.ensure_future(self.recovery.collect(self.slots))]
        self.tasks.update({f.name: asyncio.ensure_future(self._one(f, done)) for f in frames})
        try:
            # return_exceptions: a frame stopped after the grace period must not end the wait
            # for the call-lane requests still in flight
            for outcome in await asyncio.gather(*loop_tasks, *self.tasks.values(),
                                                return_exceptions=True):
                if isinstance(outcome, Exception):
                    raise outcome
            await adopt(self.renderer.batch, self.renderer.journal, self.renderer.sent_keys)
            await self.recovery.collect(self.slots, after=True)  # tasks this build's frames left
        finally:
            try:
                loop.remove_signal_handler(signal.SIGINT)
            except (NotImplementedError, RuntimeError, ValueError):
                pass

    def _interrupt(self, main: asyncio.Task[None] | None) -> None:
        """First Ctrl-C: send nothing new; collect tasks for the grace period (they are
        journalled: the next build resumes them for free) and wait for calls already sent
        (they are paid, and a lost reply cannot be fetched again). Second: stop now."""
        loop = asyncio.get_running_loop()
        if self.stop.interrupted:
            if self.inflight:
                self.teller.note(f"warning: abandoning {self.inflight.text()}: they may have "
                                 "been billed; the next build sends them again")
                self.inflight.abandon("abandoned at a second Ctrl-C")
            if main is not None:
                main.cancel()
            return
        self.stop.interrupt()
        self.teller.note(f"interrupted: nothing new is sent; collecting what is in flight for up "
                         f"to {self.grace:g} s (Ctrl-C again to stop now)")
        if self.inflight:
            self.teller.note(f"waiting for {self.inflight.text()} already sent: they are paid "
                             "for, so their images are kept (Ctrl-C again abandons them)")
        loop.call_later(self.grace, self._cancel_resumable)

    def _cancel_resumable(self) -> None:
        """The grace period is over: stop every frame but a call in flight."""
        for name, task in self.tasks.items():
            if name not in self.inflight and not task.done():
                task.cancel()

    async def _one(self, frame: Frame, done: Done) -> None:
        try:
            await self._one_frame(frame, done)
        except asyncio.CancelledError:  # the money of a frame stopped mid-render is said
            if charge := self.teller.charged(frame.name):
                self._fail(Step(frame, "render", "stopped"), "stopped mid-render: "
                           + ("its task is still out; the next build collects it and counts "
                              "it once it lands (a failed one costs nothing)" if charge.due else
                              "its task is still out; the next build collects it for free"
                              if self._left(frame) else "its request may have been billed"))
            raise
        finally:  # dependants never wait on a frame that was cancelled
            self.parking.finished()
            if not done[frame.name].done():
                done[frame.name].set_result(None)
            self.outcomes.setdefault(frame.name, None)

    def _left(self, frame: Frame) -> bool:
        charge = self.teller.charged(frame.name)
        return charge is not None and charge.left

    async def _one_frame(self, frame: Frame, done: Done) -> None:
        digests = {}
        for upstream in frame.upstreams:
            with self.parking.parked():
                held = await done[upstream]
            if held is None:
                self.teller.frame(Step(frame, "blocked", f"upstream {upstream} not built"),
                                  Status.SKIPPED, f"upstream {upstream} was not built")
                done[frame.name].set_result(None)
                return
            digests[upstream] = held
        if digests:
            frame = frame.keyed(digests)
        step = self.decided.get(frame.name) or decide(frame, self.known, self.force)
        digest: str | None = None
        try:
            digest = await self._act(step)
        except BatchPending as exc:
            self.teller.frame(step, Status.PENDING, str(exc))
        except BuildStopped as exc:
            first = self.stop.set(str(exc))  # frames in flight meet the same stop: say it once
            self._fail(step, str(exc) if first or self.stop.why != str(exc)
                                else self.stop.see_end())
        except NbpipeError as exc:
            self._fail(step, exc.render().removeprefix("error: "))
        except OSError as exc:
            if exc.errno in DISK_STOPS:  # every later write would fail the same way
                self.stop.set(disk_message(exc))
            self._fail(step, disk_message(exc))
        self.outcomes[frame.name] = digest
        done[frame.name].set_result(digest)

    async def _act(self, step: Step) -> str | None:
        frame = step.frame
        if step.action == "fresh":
            return self.materializer.fresh(step)
        if step.action == "blocked":
            self.teller.frame(step, Status.KEPT, f"{frame.output}: {step.reason}")
            return None
        if step.action == "restore" and step.digest and await self.materializer.restore(step):
            return step.digest
        with self.parking.parked():  # the frame sending it may be waiting for a batch job
            landing = await self.flights.wait(frame.key or "", lambda: self.stop.why)
        if landing is STOPPED:
            self._skip_stopped(step)
            return None
        if landing is EMPTY:
            self.teller.frame(step, Status.SKIPPED, "the same request, sent by another frame "
                              "of this build, brought no image")
            return None
        if landing is not None and not isinstance(landing, str):
            return self.materializer.follow(step, landing)
        with self.flights.lead(frame.key or ""):
            return await self._send(step)

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
            if self.stop:
                self._skip_stopped(step)
                return None
            if self.remote is not None and self.remote.unreachable and \
                    self.remote_errors != "render":
                raise FrameFailed(f"remote unavailable ({self.remote.unreachable}): not rendered, "
                                  "since the team's cache may hold it; retry, or pass "
                                  "--remote-errors=render to pay for it anyway", retry_later=True)
            if not self.budget.reserve(frame):
                self.teller.frame(step, Status.SKIPPED,
                                  f"over budget (USD {fmt_usd(self.budget.measure(frame))})")
                return None
            self.teller.start(step)
            take = await self.renderer.render(step, release)
            self.flights.landed(frame.key or "", take, frame.name)
            if frame.key in self.renderer.peers:  # another runner's, restored: nothing paid
                return self.materializer.claimed(step, take)
            return self.materializer.rendered(step, take)
        finally:
            release()

    def _fail(self, step: Step, message: str) -> None:
        self.failed[step.frame.name] = message
        self.teller.frame(step, Status.FAILED, message)
        if self.fail_fast:
            self.stop.set(f"{step.frame.name} failed and --fail-fast is on")

    def _skip_stopped(self, step: Step) -> None:
        self.teller.frame(step, Status.SKIPPED, f"not sent: {self.stop.skipped_why()}")


def said_at_end(budget: Budget, stop: Stop) -> list[str]:
    """What the frames' lines could not say, once, before the summary."""
    said = []
    refused = budget.refused
    if refused:
        names = ", ".join(refused[:8]) + (" …" if len(refused) > 8 else "")
        said.append(f"over budget: {len(refused)} frame(s) not rendered to stay within "
                    f"USD {fmt_usd(budget.cap or Decimal(0))}: {names}")
    stopped = stop.said_at_end()
    return said + ([stopped] if stopped else [])
