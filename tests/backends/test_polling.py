"""Polling around how long a model's tasks take: a task is collected moments after it ends, in
few polls, and what one build learns the next starts from. Timed by a virtual clock (the
pauses advance it; nothing sleeps), so the counts do not depend on the machine's speed."""

from __future__ import annotations

import asyncio
import json

import pytest

from nbpipe.backends import hiapi
from nbpipe.backends.hiapi import HiApiBackend, HiApiSettings, poll_pauses
from nbpipe.backends.replies import HiTask
from nbpipe.engine.renderer import Backends
from tests.samples import THREE


class Clocked(HiApiBackend):
    """HiAPI with one task that ends `ends_at` seconds after it was created, on a clock only
    the backend's pauses move."""

    now: float
    ends_at: float
    polls: int

    def __init__(self, ends_at: float):
        super().__init__(HiApiSettings(api_key="sk-test", poll_delay=5.0, poll_interval=3.0),
                         client=None)
        self.now, self.ends_at, self.polls = 0.0, ends_at, 0

    async def _task(self, task_id: str) -> HiTask:
        self.polls += 1
        done = self.now >= self.ends_at
        return HiTask(status="success" if done else "handling", created=1000,
                      completed=1000 + self.ends_at if done else 0)


def collect(backend: Clocked, monkeypatch, model: str = "Nano-Banana") -> float:
    """Wait for the task as a render does; the virtual seconds it took to be collected."""
    async def pause(seconds: float, deadline: float) -> None:
        backend.now += seconds
    monkeypatch.setattr(hiapi, "pause_until", pause)
    pauses = poll_pauses(backend.settings.poll_delay, backend.expected(model),
                         backend.settings.poll_interval)
    asyncio.run(backend._wait("tk-1", pauses))
    return backend.now


def learnt(backend: Clocked, *seconds: float) -> Clocked:
    for took in seconds:
        backend._learn("Nano-Banana", HiTask(status="success", created=1000,
                                             completed=1000 + took))
    return backend


def test_with_nothing_learnt_it_polls_at_the_configured_delay_then_interval(monkeypatch):
    backend = Clocked(ends_at=10.0)
    assert collect(backend, monkeypatch) == 11.0 and backend.polls == 3  # at 5, 8 and 11 s


def test_a_task_of_the_known_duration_is_collected_at_its_end_in_one_poll(monkeypatch):
    backend = learnt(Clocked(ends_at=10.0), 10, 10, 10)
    assert collect(backend, monkeypatch) == 10.0 and backend.polls == 1


@pytest.mark.parametrize("ends_at", [10.6, 12.0, 14.9])
def test_a_slower_task_is_collected_within_a_close_poll_of_its_end(ends_at, monkeypatch):
    backend = learnt(Clocked(ends_at=ends_at), 9, 10, 11)
    took = collect(backend, monkeypatch)
    assert ends_at <= took <= ends_at + 0.5  # not up to the 3 s interval late
    assert backend.polls <= 2 + (ends_at - 10) / 0.5


def test_a_task_far_slower_than_typical_falls_back_to_the_interval(monkeypatch):
    backend = learnt(Clocked(ends_at=40.0), 10, 10, 10)
    collect(backend, monkeypatch)
    assert backend.polls <= 1 + 10 + (40 - 15) / 3 + 1  # close polls end at 1.5x the typical


def test_recalled_durations_are_used_from_the_first_task_and_stay_bounded():
    backend = Clocked(ends_at=10.0)
    backend.recall({"Nano-Banana": [10.0, 10.0, 11.0], "Huge": [1e300] * 3})
    assert backend.expected("Nano-Banana") == 10.0
    assert backend.expected("Huge") == hiapi.MAX_FIRST_POLL  # state.json is not trusted
    assert backend.expected("Other") is None


def test_backends_hand_what_the_state_kept_to_a_backend_that_learns():
    backend = Clocked(ends_at=1.0)
    opened = Backends(lambda name, jobs, rpm: backend, lambda name: 1, lambda name: None,
                      learned={"hiapi": {"Nano-Banana": [7.0, 7.0, 7.0]}})
    assert opened.get("hiapi") is backend and backend.expected("Nano-Banana") == 7.0
    assert opened.durations() == {"hiapi": {"Nano-Banana": [7.0, 7.0, 7.0]}}


def test_a_build_keeps_the_durations_it_learnt_in_the_state(fake_hiapi, build, make_project):
    root = make_project(THREE)
    assert build(root)["rendered"] == 3
    state = json.loads((root / ".nbpipe" / "state.json").read_text())
    assert list(state["durations"]["hiapi"]) == ["Nano-Banana"]
    assert len(state["durations"]["hiapi"]["Nano-Banana"]) == 3
