"""The batch lane in memory: BatchLane against a scripted provider (jobs, states, lost create
replies), its log on disk in tmp. The rules: one job per model for what the walk can send
together; journalled before created; a lost create found again by its name, never made twice;
an expired or failed job sent again once; not waiting leaves frames pending; a later lane
collects what an earlier one left with no create."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import pytest

from nbpipe.backends.base import InputData, Job
from nbpipe.backends.batch import CreateLost, JobGone, JobState, JobView, LineResult
from nbpipe.engine.batches import BatchLane, display_name
from nbpipe.engine.parking import Parking
from nbpipe.engine.stop import Stop
from nbpipe.errors import BatchPending, FrameFailed
from nbpipe.plan.frame import Frame, Request
from nbpipe.store.batchlog import BatchLog


@dataclass
class Job_:
    view: JobView
    keys: list[str]


@dataclass
class ScriptedBatches:
    """A provider's batch jobs. `create_faults`: "lost" (made, reply lost), "lost-unmade" (not
    made, reply lost), "refused"; `ends`: how each job ends when `finish()` runs (SUCCEEDED by
    default); `line_errors`: keys whose line answers an error."""

    create_faults: list[str] = field(default_factory=list)
    ends: list[JobState] = field(default_factory=list)
    line_errors: set[str] = field(default_factory=set)
    jobs: dict[str, Job_] = field(default_factory=dict)
    creates: int = 0
    gets: int = 0
    finds: int = 0
    finished: asyncio.Event | None = None
    auto_finish: bool = True  # end a job at its first poll

    def line(self, request: Request, inputs: list[InputData]) -> dict[str, object]:
        return {"prompt": request.prompt}

    async def create(self, model: str, display: str,
                     lines: Sequence[tuple[str, dict[str, object]]]) -> JobView:
        fault = self.create_faults.pop(0) if self.create_faults else None
        if fault == "refused":
            raise FrameFailed("Gemini rejected the batch (HTTP 400): bad request")
        if fault == "lost-unmade":
            raise CreateLost("network error after the request was sent")
        self.creates += 1
        name = f"batches/{len(self.jobs) + 1}"
        view = JobView(name, display, model, JobState.PENDING, len(lines))
        self.jobs[name] = Job_(view, [key for key, _ in lines])
        if fault == "lost":
            raise CreateLost("network error after the request was sent")
        return view

    async def find(self, display: str, pages: int | None = None) -> JobView | None:
        self.finds += 1
        found = [j.view for j in self.jobs.values() if j.view.display == display]
        return found[-1] if found else None

    async def get(self, name: str) -> JobView:
        self.gets += 1
        job = self.jobs[name]
        if self.auto_finish and not job.view.state.ended:
            self.end(name)
        return job.view

    def end(self, name: str) -> None:
        job = self.jobs[name]
        state = self.ends.pop(0) if self.ends else JobState.SUCCEEDED
        job.view = JobView(name, job.view.display, job.view.model, state, len(job.keys),
                           error="the batch failed" if state is JobState.FAILED else None)

    async def results(self, job: JobView) -> dict[str, LineResult]:
        if job.state is not JobState.SUCCEEDED:
            return {}
        return {key: LineResult(error="Internal error encountered.") if key in self.line_errors
                else LineResult(image=f"image of {key}".encode())
                for key in self.jobs[job.name].keys}

    async def cancel(self, name: str) -> None:
        self.jobs[name].view = JobView(name, self.jobs[name].view.display, "",
                                       JobState.CANCELLED)


def frame(n: int, model: str = "gemini-3.1-flash-image") -> Frame:
    return Frame(name=f"f{n}", target=f"f{n}", backend="gemini", model=model,
                 parts=(f"prompt {n}",), params={}, inputs=(), output=f"out/f{n}.png",
                 cost=Decimal("0.03"), key=f"{n:064x}", lane="batch")


@dataclass
class Harness:
    log: BatchLog
    client: ScriptedBatches
    stop: Stop = field(default_factory=Stop)
    notes: list[str] = field(default_factory=list)
    tasks: dict[str, str] = field(default_factory=dict)  # key → job name journalled
    created: set[str] = field(default_factory=set)

    def lane(self, wait: bool = True) -> BatchLane:
        return BatchLane(self.log, lambda name: self.client, lambda name: "account-1",
                         self.stop, self.notes.append, Parking(), wait, poll=0.01)

    async def run(self, lane: BatchLane, frames: list[Frame],
                  resume: dict[str, str] | None = None) -> dict[str, object]:
        """Render every frame as the walk would: each a task, parked while it waits."""
        lane.parking.start(len(frames))
        resume = resume or {}

        async def one(f: Frame) -> object:
            sink = io.BytesIO()
            key = f.key or ""
            job = Job(take=1, lane="batch", resume_task=resume.get(key),
                      on_task=lambda name: self.tasks.__setitem__(key, name),
                      on_created=lambda: self.created.add(key))
            try:
                await lane.render(f, key, [], sink, job, f.cost)
                return sink.getvalue()
            except FrameFailed as exc:
                return exc
            finally:
                lane.parking.finished()

        outcomes = await asyncio.gather(*(one(f) for f in frames))
        await asyncio.sleep(0)  # a watcher that settled its members ends its own task
        # A follower never ends in an exception nobody reads (asyncio would print it at exit)
        assert [w.exception() for w in lane.follower.watchers.values()
                if w.done() and not w.cancelled() and w.exception()] == []
        lane.close()
        return {f.name: o for f, o in zip(frames, outcomes, strict=True)}


@pytest.fixture
def harness(tmp_path: Path) -> Harness:
    return Harness(BatchLog(tmp_path / "batches.jsonl"), ScriptedBatches())


def test_six_frames_of_two_models_go_in_two_jobs_and_each_gets_its_own_image(harness):
    frames = [frame(n, "gemini-3.1-flash-image" if n % 2 else "gemini-3-pro-image")
              for n in range(6)]
    got = asyncio.run(harness.run(harness.lane(), frames))
    assert harness.client.creates == 2
    assert sorted(len(j.keys) for j in harness.client.jobs.values()) == [3, 3]
    assert got == {f.name: f"image of {f.key}".encode() for f in frames}
    assert set(harness.tasks.values()) == {"batches/1", "batches/2"}
    assert harness.created == {f.key for f in frames}
    harness.log.close(set())  # no entry of theirs open: compacted away
    assert BatchLog(harness.log.path).jobs == {}


def test_a_job_is_journalled_before_it_is_created(harness, tmp_path):
    seen: list[bool] = []
    create = harness.client.create

    async def watching(model, display, lines):
        seen.append(display in BatchLog(tmp_path / "batches.jsonl").jobs)  # as a crash reads
        return await create(model, display, lines)

    harness.client.create = watching  # type: ignore[method-assign]
    asyncio.run(harness.run(harness.lane(), [frame(1)]))
    assert seen == [True]


def test_a_lost_create_reply_is_found_by_its_name_never_created_again(harness):
    harness.client.create_faults = ["lost"]
    got = asyncio.run(harness.run(harness.lane(), [frame(1), frame(2)]))
    assert harness.client.creates == 1
    assert all(isinstance(v, bytes) for v in got.values())


def test_a_create_never_made_waits_for_the_next_build_which_looks_first(harness, tmp_path):
    harness.client.create_faults = ["lost-unmade"]
    frames = [frame(1), frame(2)]
    got = asyncio.run(harness.run(harness.lane(), frames))
    assert all(isinstance(v, BatchPending) for v in got.values())
    assert harness.client.creates == 0
    journalled = list(BatchLog(tmp_path / "batches.jsonl").jobs.values())
    assert len(journalled) == 1 and journalled[0].name is None
    # the next build, soon after: the log names the job; not listed yet, it waits (a listing
    # may lag behind a create)
    again = Harness(BatchLog(tmp_path / "batches.jsonl"), harness.client)
    got = asyncio.run(again.run(again.lane(), frames))
    assert harness.client.creates == 0 and all(isinstance(v, BatchPending) for v in got.values())
    # long after, still not listed: no job was made; created now, under that name
    again = Harness(BatchLog(tmp_path / "batches.jsonl"), harness.client)
    lane = again.lane()
    lane.settle = 0
    got = asyncio.run(again.run(lane, frames))
    assert harness.client.creates == 1
    assert [j.view.display for j in harness.client.jobs.values()] == [journalled[0].display]
    assert all(isinstance(v, bytes) for v in got.values())


def test_after_a_kill_while_created_the_next_build_finds_the_job_it_made(harness, tmp_path):
    harness.client.create_faults = ["lost"]
    harness.client.find = lambda display, pages=None: _raise()  # type: ignore[method-assign]
    frames = [frame(1)]
    got = asyncio.run(harness.run(harness.lane(), frames))
    assert isinstance(got["f1"], BatchPending) and harness.client.creates == 1
    client = ScriptedBatches(jobs=harness.client.jobs, creates=1)
    again = Harness(BatchLog(tmp_path / "batches.jsonl"), client)
    got = asyncio.run(again.run(again.lane(), frames))
    assert client.creates == 1 and got["f1"] == f"image of {frames[0].key}".encode()


async def _raise() -> None:
    raise FrameFailed("the jobs could not be listed (HTTP 503)", retry_later=True)


def test_an_expired_job_is_sent_again_once_then_its_frames_fail(harness):
    harness.client.ends = [JobState.EXPIRED, JobState.SUCCEEDED]
    got = asyncio.run(harness.run(harness.lane(), [frame(1)]))
    assert harness.client.creates == 2 and isinstance(got["f1"], bytes)
    assert any("expired" in n and "again" in n for n in harness.notes)

    harness.client.ends = [JobState.FAILED, JobState.EXPIRED]
    got = asyncio.run(harness.run(harness.lane(), [frame(2)]))
    assert harness.client.creates == 4
    assert isinstance(got["f2"], FrameFailed) and "expired" in str(got["f2"])


def test_a_cancelled_job_fails_its_frames_with_a_message(harness):
    harness.client.ends = [JobState.CANCELLED]
    got = asyncio.run(harness.run(harness.lane(), [frame(1)]))
    assert isinstance(got["f1"], FrameFailed) and "cancelled" in str(got["f1"])
    assert harness.client.creates == 1


def test_a_line_error_fails_only_its_frame_with_the_servers_message(harness):
    harness.client.line_errors = {frame(2).key or ""}
    got = asyncio.run(harness.run(harness.lane(), [frame(1), frame(2)]))
    assert isinstance(got["f1"], bytes)
    assert isinstance(got["f2"], FrameFailed) and "Internal error" in str(got["f2"])


def test_not_waiting_leaves_frames_pending_and_a_later_build_collects_with_no_create(harness):
    harness.client.auto_finish = False
    frames = [frame(1), frame(2)]
    got = asyncio.run(harness.run(harness.lane(wait=False), frames))
    assert all(isinstance(v, BatchPending) for v in got.values())
    assert harness.client.creates == 1
    harness.client.end("batches/1")
    got = asyncio.run(harness.run(harness.lane(), frames, resume=dict(harness.tasks)))
    assert harness.client.creates == 1
    assert all(isinstance(v, bytes) for v in got.values())


def test_a_stop_while_waiting_leaves_the_job_running(harness):
    harness.client.auto_finish = False

    async def go() -> dict[str, object]:
        lane = harness.lane()
        lane.poll = 5.0
        running = asyncio.ensure_future(harness.run(lane, [frame(1)]))
        while not harness.client.gets:
            await asyncio.sleep(0.01)
        harness.stop.interrupt()
        return await running

    got = asyncio.run(go())
    assert isinstance(got["f1"], BatchPending) and harness.client.creates == 1


def test_the_display_name_is_the_set_of_requests_and_the_attempt():
    assert display_name([("a", 1), ("b", 1)], 1) == display_name([("b", 1), ("a", 1)], 1)
    assert display_name([("a", 1)], 1) != display_name([("a", 1)], 2)
    assert display_name([("a", 1)], 1) != display_name([("a", 2)], 1)


def test_a_job_made_by_a_build_whose_journal_is_lost_is_found_not_made_again(harness, tmp_path):
    frames = [frame(1), frame(2)]
    asyncio.run(harness.run(harness.lane(wait=False), frames))
    assert harness.client.creates == 1
    fresh = Harness(BatchLog(tmp_path / "elsewhere.jsonl"), harness.client)  # a cache since lost
    got = asyncio.run(fresh.run(fresh.lane(), frames))
    assert harness.client.creates == 1 and all(isinstance(v, bytes) for v in got.values())


# --- what an independent review found (each hung a build, or paid twice) --------------------

def test_a_results_download_that_fails_leaves_the_frame_pending_not_hung(harness):
    async def failing(job):
        raise FrameFailed("the batch results file could not be read (HTTP 503)",
                          retry_later=True)
    harness.client.results = failing  # type: ignore[method-assign]

    async def go():
        return await asyncio.wait_for(harness.run(harness.lane(), [frame(1)]), 10)

    assert isinstance(asyncio.run(go())["f1"], BatchPending)


def test_a_reply_about_another_job_is_no_word_on_this_one(harness):
    get = harness.client.get

    async def renamed(name):
        view = await get(name)
        return JobView("batches/other", view.display, view.model, view.state, view.total)
    harness.client.get = renamed  # type: ignore[method-assign]

    async def go():
        return await asyncio.wait_for(harness.run(harness.lane(), [frame(1)]), 10)

    assert isinstance(asyncio.run(go())["f1"], BatchPending)


def test_a_log_write_that_fails_fails_the_frame_unsent(harness):
    def full(job):
        raise OSError(28, "No space left on device")
    harness.log.job = full  # type: ignore[method-assign]

    async def go():
        return await asyncio.wait_for(harness.run(harness.lane(), [frame(1)]), 10)

    got = asyncio.run(go())["f1"]
    assert isinstance(got, FrameFailed) and "No space" in str(got)
    assert harness.client.creates == 0


def test_a_job_the_server_no_longer_knows_fails_its_frames(harness):
    harness.client.auto_finish = False
    asyncio.run(harness.run(harness.lane(wait=False), [frame(1)]))

    async def gone(name):
        raise JobGone(f"the server no longer knows batch job {name}")
    harness.client.get = gone  # type: ignore[method-assign]
    got = asyncio.run(harness.run(harness.lane(), [frame(1)], resume=dict(harness.tasks)))
    assert isinstance(got["f1"], FrameFailed) and "no longer knows" in str(got["f1"])


def test_a_stopped_build_creates_no_job(harness):
    harness.stop.set("f0 failed and --fail-fast is on")
    got = asyncio.run(harness.run(harness.lane(), [frame(1)]))
    assert isinstance(got["f1"], FrameFailed) and harness.client.creates == 0


def test_an_answer_without_its_key_goes_to_the_one_request_left(harness, tmp_path):
    results = harness.client.results

    async def keyless(job):
        found = await results(job)
        key = frame(2).key or ""
        return {**{k: v for k, v in found.items() if k != key}, "#0": found[key]}
    harness.client.results = keyless  # type: ignore[method-assign]
    got = asyncio.run(harness.run(harness.lane(), [frame(1), frame(2)]))
    assert got["f2"] == f"image of {frame(2).key}".encode()


def test_answers_without_keys_that_cannot_be_placed_are_possibly_billed(harness):
    results = harness.client.results

    async def keyless(job):
        found = await results(job)
        return {f"#{i}": r for i, r in enumerate(found.values())}
    harness.client.results = keyless  # type: ignore[method-assign]
    got = asyncio.run(harness.run(harness.lane(), [frame(1), frame(2)]))
    assert all(isinstance(v, FrameFailed) and v.maybe_billed for v in got.values())


def test_a_frame_queued_while_a_create_is_out_goes_in_the_next_round_at_once(harness,
                                                                             monkeypatch):
    import nbpipe.engine.batches as lanes

    monkeypatch.setattr(lanes, "GATHER", 600.0)  # the safety net never fires here
    create = harness.client.create
    creating, go_on = asyncio.Event(), asyncio.Event()

    async def held(model, display, lines):
        creating.set()
        await go_on.wait()
        return await create(model, display, lines)
    harness.client.create = held  # type: ignore[method-assign]

    async def go():
        lane = harness.lane()
        lane.parking.start(1)  # the second frame is not in the walk yet

        async def one(f):
            job = Job(take=1, lane="batch")
            try:
                return await lane.render(f, f.key or "", [], io.BytesIO(), job, f.cost)
            finally:
                lane.parking.finished()
        first = asyncio.ensure_future(one(frame(1)))
        await creating.wait()
        lane.parking.active += 1  # now it is (its upstream ended, say), while the create is out
        second = asyncio.ensure_future(one(frame(2)))
        await asyncio.sleep(0)
        go_on.set()
        return await asyncio.wait_for(asyncio.gather(first, second), 10)

    asyncio.run(go())
    assert harness.client.creates == 2
