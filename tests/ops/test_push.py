"""The background pusher (nbpipe/engine/pusher.py) on its own: what an interrupted build leaves;
`push` (nbpipe/ops/push.py): what it holds while it sends."""

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


class KeptRemote:
    """A remote that holds one take already and keeps what it is sent (its prompt's length)."""

    url = URL

    def __init__(self, present: tuple[str, str]):
        self.present = present  # key, digest
        self.sent: dict[str, str] = {}

    def digests(self, key):
        return {self.present[1]} if key == self.present[0] else set()

    def push(self, key, take, request, cache):
        self.sent[key] = request["prompt"]


def test_push_makes_a_frames_request_only_to_send_it(tmp_path):
    """`nbpipe push` made every frame's request (its whole prompt, a bible joined in) before
    sending any: 12,000 frames × a 119k-character bible took 1.4 GiB, however few images there
    were to send. Now each is made when it is sent, and freed after."""
    import json
    import tracemalloc

    from nbpipe.ops.push import push_all
    from nbpipe.plan.planner import open_project
    from nbpipe.store.lock import Lock

    bible = " ".join(f"word{i}" for i in range(20_000))  # ~129,000 characters
    (tmp_path / "nbpipe.yaml").write_text(
        "version: 1\ndefaults: {backend: gemini, model: gemini-3-pro-image}\n"
        f"bibles:\n  mira: {json.dumps(bible[:120_000])}\n"
        "templates:\n  t: '{{ bible }} | Scene: {{ a }} {{ b }}'\n"
        "targets:\n  s:\n    template: t\n    bible: mira\n"
        "    matrix: {a: [a0, a1, a2, a3, a4, a5, a6, a7], b: [b0, b1, b2, b3, b4]}\n")
    project = open_project(tmp_path)
    frames = sorted(project.frames.values(), key=lambda f: f.name)
    cache = Cache(tmp_path / "cache")
    digests = []
    for frame in frames[:3]:  # three takes, their requests not in the index: made from frames
        with cache.writer() as blob:
            blob.write(frame.key.encode())
            digest = blob.commit()
            digests.append(digest)
        cache.add_take(frame.key, {}, Take(digest=digest, backend="gemini", model="m",
                                            format="png", cost_usd="0", created=1.0))
    remote = KeptRemote(present=(frames[0].key, digests[0]))
    tracemalloc.start()
    try:
        sent, present = push_all(project, cache, remote, Lock(profile=None))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        cache.close()
    assert (sent, present) == (2, 1)
    assert remote.sent == {f.key: f.prompt for f in frames[1:3]}  # what is sent is unchanged
    assert peak < 12 * 120_000, f"{peak:,} bytes at peak for 40 frames of a 120k-char prompt"
