"""Pushing new images to the remote cache in the background: never delays a frame, never
fails a build. What could not be pushed is remembered and retried by the next build or by
`nbpipe push`."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from nbpipe.errors import UsageError
from nbpipe.plan.frame import Frame, format_of_path
from nbpipe.settings import Settings
from nbpipe.store.cache import Cache, Take
from nbpipe.store.lock import Lock
from nbpipe.store.outputs import write_output
from nbpipe.store.remote import Remote, RemoteUnavailable, remote_url
from nbpipe.store.state import State
from nbpipe.store.workspace import Workspace

if TYPE_CHECKING:
    from nbpipe.plan.planner import Project



def no_remote() -> UsageError:
    return UsageError("no remote cache is configured",
                      "set `cache: {remote: s3://bucket/prefix}` or NBPIPE_REMOTE")



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

    def __init__(self, remote: Remote, cache: Cache, state: State, workers: int = 4):
        self.remote, self.cache, self.state = remote, cache, state
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
        self.remote.index()  # one listing of the remote's takes
        if self.remote.unreachable:
            return  # it cannot say what it lacks: the next build tries again
        self.caught_up = 0
        queued = {job[:2] for job in self.jobs}
        for key, take, request in _project_takes(frames, lock, self.cache):
            if take.digest not in self.remote.digests(key) and (key, take.digest) not in queued:
                self.push(key, take, request)
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
        self.jobs.append((key, take.digest,
                          self.pool.submit(self.remote.push, key, take, request, self.cache)))

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


def _project_takes(frames: Iterable[Frame], lock: Lock,
                   cache: Cache) -> Iterator[tuple[str, Take, dict[str, Any]]]:
    """(key, take, request) of every local take of the project's frames and of every key its
    lock pins (every profile's)."""
    keys = {frame.key: frame.record() for frame in frames if frame.key}
    for entries in (lock.entries, *lock.others.values()):
        for entry in entries.values():
            keys.setdefault(entry.key, {})
    for key, declared in keys.items():
        request = cache.index.request(key) or declared
        for take in cache.takes(key):
            yield key, take, request


def push_project(project: Project, cache_dir: Path, note: Callable[[str], None],
                 settings: Settings) -> str:
    """`push`: every image of the project the remote lacks, under the build lock; what was
    done, in a line. A committed store is refused (forged takes are never pushed)."""
    if not remote_url(project.loaded.manifest.cache.remote, settings):
        raise no_remote()
    with Workspace.opened(project.loaded.root, cache_dir, project, write=True, note=note,
                          create=False, settings=settings) as space:
        if space.remote is None:
            raise no_remote()
        sent, present = push_all(project, space.cache, space.remote, space.lock)
    return f"pushed {sent} image(s) to {space.remote.url}; {present} were there already"


def pull_project(project: Project, cache_dir: Path, patterns: tuple[str, ...],
                 note: Callable[[str], None], settings: Settings) -> list[str]:
    """`pull`: the pinned image of every selected frame, under the build lock."""
    with Workspace.opened(project.loaded.root, cache_dir, project, write=True, note=note,
                          settings=settings) as space:
        lines = pull(project, space.cache, space.remote, space.lock, space.state,
                     project.select(patterns))
        space.state.save()
    return lines


def push_all(project: Project, cache: Cache, remote: Remote, lock: Lock) -> tuple[int, int]:
    """Send every local take of the project's frames and pins (`lock`, every profile's) that
    the remote lacks: (sent, present).
    Marks of pushes still to do to this remote are cleared; another remote's are not."""
    waiting = set(cache.unpushed(remote.url))
    sent = present = 0
    for key, take, request in _project_takes(project.frames.values(), lock, cache):
        if take.digest in remote.digests(key):
            present += 1
        else:
            remote.push(key, take, request, cache)
            sent += 1
        if (key, take.digest) in waiting:
            cache.mark_pushed(key, take.digest, remote.url)
    return sent, present


def pull(project: Project, cache: Cache, remote: Remote | None, lock: Lock, state: State,
         frames: Iterable[Frame]) -> list[str]:
    """Write every selected frame's pinned image, from the local cache or the remote."""
    lines = []
    for frame in frames:
        entry = lock.entries.get(frame.name)
        if entry is None:
            lines.append(f"skipped  {frame.name}  (not in nbpipe.lock: build it)")
            continue
        # Written where the manifest puts this frame (the lock only says which format), like
        # build: a lock from a pull request does not choose where files go.
        output = frame.output_for(format_of_path(entry.output) or "")
        if state.output_digest(output) == entry.digest:
            continue
        takes = {t.digest for t in cache.takes(entry.key)} | \
            (remote.digests(entry.key) if remote else set())
        if entry.digest not in takes:
            why = _unknown(remote) or f"sha256 {entry.digest[:12]} is no take of its key"
            lines.append(f"missing  {frame.name}  ({why})")
            continue
        if not cache.has_blob(entry.digest) and not (remote and remote.fetch(entry.digest, cache)):
            why = _unknown(remote) or f"sha256 {entry.digest[:12]} is in no cache"
            lines.append(f"missing  {frame.name}  ({why})")
            continue
        if write_output(cache, state, project.loaded.root, output, entry.digest):
            lines.append(f"pulled   {frame.name}  → {output}")
    return lines


def _unknown(remote: Remote | None) -> str | None:
    """Why the remote could not say whether it holds an image (never "absent" when unknown)."""
    if remote is not None and remote.unreachable:
        return f"remote unavailable ({remote.unreachable}): retry"
    return None
