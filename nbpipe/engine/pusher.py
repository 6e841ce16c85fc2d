"""Sending a build's images to the shared remote while it runs: each new image is marked in
the cache first (a build killed before the upload leaves it to the next build), then sent in
the background; once per remote, the takes the project had before it used that remote."""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol

from nbpipe.plan.frame import Frame
from nbpipe.store.cache import Cache, Take
from nbpipe.store.claims import Leases
from nbpipe.store.lock import Lock
from nbpipe.store.owned import project_takes
from nbpipe.store.remote import Remote, RemoteUnavailable
from nbpipe.store.state import State


class Notes(Protocol):
    """Where a pusher says what it does (the build's tally, or a command's stderr)."""

    def note(self, text: str) -> None: ...

class Pusher:
    """Sends a build's new images to the remote in the background, and what earlier builds
    left: pushes marked in the cache, and once per remote, the takes the project had before it
    used this remote (`catch_up`)."""

    remote: Remote
    cache: Cache
    state: State
    pool: ThreadPoolExecutor
    jobs: list[tuple[str, str, Future[None]]]  # key, digest, the upload
    caught_up: int | None  # takes catch_up found missing; None: not known
    left_over: int | None  # pushes not done, once finished
    claims: Leases | None  # this build's claims: a key's is released once its take is pushed

    def __init__(self, remote: Remote, cache: Cache, state: State, workers: int = 4):
        self.remote, self.cache, self.state = remote, cache, state
        self.claims = None
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="nbpipe-push")
        self.jobs = []
        self.caught_up = None
        self.left_over = None
        # The marks in the cache say what is left to push; older nbpipe kept a list in the
        # state instead: its entries become marks here (push), and the list goes.
        left = [tuple(p) for p in state.data.pop("unpushed", [])]
        state.changed = state.changed or bool(left)
        for key, digest in dict.fromkeys([*left, *cache.unpushed(remote.url)]):
            take = next((t for t in cache.takes(key) if t.digest == digest), None)
            if take is None:  # removed from the cache since (gc): nothing left to send
                cache.mark_pushed(key, digest, remote.url)
            else:
                self.push(key, take, cache.index.request(key) or {})

    def catch_up(self, frames: Iterable[Frame], lock: Lock, events: Notes) -> None:
        """Send the takes the remote lacks of `frames` and of every key `lock` pins (an edit is
        keyed only once its upstream is built; another profile's frames are not in `frames`),
        once per remote (state.json says when it was done): takes made before the project had
        this remote, or by another project on a shared cache, are in no mark, and a clone
        without them would pay for them again."""
        if self.state.data.get("synced") == self.remote.url:
            self.caught_up = 0
            return
        queued = {job[:2] for job in self.jobs}
        holds = self.remote.listing.holds
        unknown = [(key, take, request) for key, take, request in
                   project_takes(frames, lock, self.cache)
                   if (key, take.digest) not in queued and not holds(key, take.digest)]
        if unknown:  # takes not known to be there (a clone with nothing yet asks nothing)
            self.remote.index()  # one listing of the remote's takes
            if self.remote.unreachable:
                return  # it cannot say what it lacks: the next build tries again
        self.caught_up = 0
        for key, take, request in unknown:
            if not holds(key, take.digest):
                self.push(key, take, request())
                self.caught_up += 1
        if self.caught_up:  # the end of the build waits for them: say why up front
            events.note(f"remote: sending {self.caught_up} image(s) it lacks (made before this "
                        "project used it, or by another project)")

    def abandon(self) -> None:
        """Interrupted before the build began: the pushes not yet started stay marked, for
        the next build (a pool left to itself would send them all before the process ends)."""
        self.pool.shutdown(wait=False, cancel_futures=True)

    def push(self, key: str, take: Take, request: dict[str, Any]) -> None:
        """Remember the push durably, then send it in the background: a build killed before it
        is sent leaves it to the next build."""
        self.cache.mark_unpushed(key, take.digest, self.remote.url)
        self.jobs.append((key, take.digest, self.pool.submit(self._send, key, take, request)))

    def _send(self, key: str, take: Take, request: dict[str, Any]) -> None:
        self.remote.push(key, take, request, self.cache)
        if self.claims is not None:  # the take is there for a runner waiting on the claim
            self.claims.release(key)

    def finish(self, events: Notes, interrupted: bool = False) -> int:
        """Wait for the pushes (interrupted: only for those already started); report the ones
        not done (their marks stay, for the next build or `nbpipe push`)."""
        self.pool.shutdown(wait=True, cancel_futures=interrupted)
        failed: list[BaseException] = []
        left = 0
        for key, digest, job in self.jobs:
            if job.cancelled():
                left += 1
            elif (error := job.exception()) is not None:
                failed.append(error)
            else:
                self.cache.mark_pushed(key, digest, self.remote.url)
        self.left_over = len(failed) + left
        if self.left_over:
            events.note(f"remote: {self.left_over} image(s) not pushed "
                        f"({_reason(failed[0]) if failed else 'interrupted'}); the next build "
                        "or `nbpipe push` sends them")
        elif self.caught_up is not None and self.state.data.get("synced") != self.remote.url:
            self.state.data["synced"] = self.remote.url  # every take of the project is there
            self.state.changed = True
        return len(self.jobs) - self.left_over

    def settled(self) -> bool:
        """Whether the remote was left nothing to receive (after `finish`)."""
        return self.caught_up is not None and self.left_over == 0


def _reason(exc: BaseException) -> str:
    return exc.why.partition(":")[0] if isinstance(exc, RemoteUnavailable) \
        else type(exc).__name__


class Deferred:
    """The pusher of an --offline build of a project that has a remote: each new image is
    marked for that remote, not sent (offline touches no network). The next build with the
    remote, or `nbpipe push`, sends it: an image paid for offline still reaches the team."""

    url: str
    cache: Cache
    state: State
    marked: int  # images marked for the remote by this build

    def __init__(self, url: str, cache: Cache, state: State):
        self.url, self.cache, self.state, self.marked = url, cache, state, 0

    def push(self, key: str, take: Take, request: dict[str, Any]) -> None:
        self.cache.mark_unpushed(key, take.digest, self.url)
        self.marked += 1

    def finish(self, events: Notes, interrupted: bool = False) -> int:
        if self.marked:
            events.note(f"remote: offline; {self.marked} new image(s) to push: the next build "
                        "with the remote, or `nbpipe push`, sends them")
        return 0

    def settled(self) -> bool:
        return self.state.data.get("synced") == self.url and not self.cache.unpushed(self.url)


def pusher_for(remote: Remote | None, url: str | None, cache: Cache, state: State,
               frames: Iterable[Frame], lock: Lock, events: Notes) -> Pusher | Deferred | None:
    """What sends a build's new images to the project's remote at `url` (None: it has none);
    `remote` is that remote opened, or None offline; `frames` are all the project's, `lock`
    its pins (every profile's)."""
    if remote is not None:
        pusher = Pusher(remote, cache, state)
        try:
            pusher.catch_up(frames, lock, events)
        except KeyboardInterrupt:
            pusher.abandon()
            raise
        return pusher
    if url is None and state.data.pop("synced", None) is not None:
        state.changed = True  # nothing marks what it renders now: the remote, once back, is
        # caught up again
    return Deferred(url, cache, state) if url else None
