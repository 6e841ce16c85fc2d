"""The one output writer shared by build, pin and pull: a verified copy from the cache, atomic
and durable before a lock names it (so a lock never names a file that a power cut can leave
empty), under the extension of the image's real format, remembered in the stat cache as
nbpipe's own bytes. A build writes its outputs into a SyncBatch, made durable by one sync
before it saves the lock; pin and pull fsync each one."""

from __future__ import annotations

from pathlib import Path

from nbpipe.errors import FrameFailed
from nbpipe.files import SyncBatch
from nbpipe.relpath import PathRefused, output_path
from nbpipe.store.cache import Cache
from nbpipe.store.state import State


class OutputRefused(FrameFailed):
    """An output path that may not be written: it leaves the project, or names nbpipe's or
    git's own files. The manifest's outputs are checked as it is planned; this is the last
    check, of the path actually written (a take's format picks its extension)."""


def write_output(cache: Cache, state: State, root: Path, output: str, digest: str,
                 batch: SyncBatch | None = None) -> bool:
    """Write the image `digest` to `output` (project-relative); False if the cache lacks it,
    OutputRefused if `output` is no path an image may be written to (relpath.output_path).
    With a `batch`, the output is durable only once the batch is synced."""
    try:
        output_path(output)
    except PathRefused as exc:
        raise OutputRefused(f"refused to write an image to {output[:120]!r}: {exc}") from None
    if not cache.blobs.copy_verified(digest, root / output, batch):
        return False
    state.note_output(output, digest)
    return True


def disk_message(exc: OSError) -> str:
    """A failed write as one line: what could not be written, and why."""
    where = f" ({exc.filename})" if exc.filename else ""
    return f"cannot write{where}: {exc.strerror or exc}"
