"""The background pusher (nbpipe/engine/pusher.py) on its own: what an interrupted build leaves."""

from __future__ import annotations

import threading

from nbpipe.engine.pusher import Pusher
from nbpipe.store.cache import Cache, Take
from nbpipe.store.state import State
from tests.conftest import wait_for

URL = "s3://team/cache"


class SlowRemote:
    """Each push waits until the test lets the pushes go; counts those started and sent."""

    url = URL

    def __init__(self):
        self.started = 0
        self.sent = 0
        self.go = threading.Event()
        self.cond = threading.Condition()

    def push(self, key, take, request, cache):
        with self.cond:
            self.started += 1
            self.cond.notify_all()
        assert self.go.wait(120), "the test never let the pushes go"
        with self.cond:
            self.sent += 1


class Notes:
    def __init__(self):
        self.lines = []

    def note(self, line):
        self.lines.append(line)


def test_an_interrupted_build_sends_only_the_pushes_already_started(tmp_path):
    """Ctrl-C must not wait for a long queue of uploads (a first catch-up may hold thousands):
    the ones not started stay marked, for the next build."""
    cache, remote, notes = Cache(tmp_path / "cache"), SlowRemote(), Notes()
    pusher = Pusher(remote, cache, State(tmp_path), workers=4)
    keys = [f"{n:064x}" for n in range(12)]
    for key in keys:
        pusher.push(key, Take(digest=key, backend="preview", model="m", format="png",
                              cost_usd="0", created=1.0, task_id=None), {})
    with remote.cond:  # the four workers are each in a push, the other eight queued
        assert remote.cond.wait_for(lambda: remote.started == 4, 120)

    def let_go_once_cancelled() -> None:  # finish() cancels the queue, then waits for the four
        wait_for(lambda: all(job.running() or job.cancelled() for _, _, job in pusher.jobs))
        remote.go.set()

    threading.Thread(target=let_go_once_cancelled, daemon=True).start()
    sent = pusher.finish(notes, interrupted=True)
    assert sent == remote.sent == remote.started == 4  # the workers' first pushes, no more
    assert len(cache.unpushed(URL)) == 12 - sent
    assert notes.lines == [f"remote: {12 - sent} image(s) not pushed (interrupted); the next "
                           "build or `nbpipe push` sends them"]
    cache.close()
