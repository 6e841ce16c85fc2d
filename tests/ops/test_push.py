"""The background pusher (nbpipe/ops/push.py) on its own: what an interrupted build leaves."""

from __future__ import annotations

import threading
import time

from nbpipe.ops.push import Pusher
from nbpipe.store.cache import Cache, Take
from nbpipe.store.state import State

URL = "s3://team/cache"


class SlowRemote:
    """Each push takes a while; counts the pushes that ran."""

    url = URL

    def __init__(self):
        self.sent = 0
        self.lock = threading.Lock()

    def push(self, key, take, request, cache):
        time.sleep(0.2)
        with self.lock:
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
    sent = pusher.finish(notes, interrupted=True)
    assert sent == remote.sent <= 4  # the workers' first pushes at most
    assert len(cache.unpushed(URL)) == 12 - sent
    assert notes.lines == [f"remote: {12 - sent} image(s) not pushed (interrupted); the next "
                           "build or `nbpipe push` sends them"]
    cache.close()
