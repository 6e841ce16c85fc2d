"""Pushing new images to the remote cache in the background: never delays a frame, never
fails a build. What could not be pushed is remembered and retried by the next build or by
`nbpipe push`."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from nbpipe.errors import UsageError
from nbpipe.plan.frame import Frame, format_of_path
from nbpipe.settings import Settings
from nbpipe.store.cache import Cache
from nbpipe.store.lock import Lock
from nbpipe.store.outputs import write_output
from nbpipe.store.owned import project_takes
from nbpipe.store.remote import Remote, remote_url
from nbpipe.store.state import State
from nbpipe.store.workspace import Workspace

if TYPE_CHECKING:
    from nbpipe.plan.planner import Project



def no_remote() -> UsageError:
    return UsageError("no remote cache is configured",
                      "set `cache: {remote: s3://bucket/prefix}` or NBPIPE_REMOTE")



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
    for key, take, request in project_takes(project.frames.values(), lock, cache):
        if take.digest in remote.digests(key):
            present += 1
        else:
            remote.push(key, take, request(), cache)
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
