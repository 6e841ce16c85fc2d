"""The cache: every image ever paid for, by content, and an index from frame key to its takes.

Layout of the cache directory (`<project>/.nbpipe/` or $NBPIPE_CACHE_DIR), one part a module:

    blobs/ab/abcdef…   image bytes, named by their SHA-256 (store/blobs.py)
    tmp/               partial writes; renamed into blobs/ only when complete and verified
    index/             frame key → its takes, in diskcache (store/takes.py)
    unpushed/          marks of takes still to send to a remote cache (store/marks.py)
    pins/<project>.json  digests each project's lock pins, so gc on a shared cache keeps them
                       (store/pins.py)

Writes are atomic (nbpipe.files). A blob whose bytes no longer match its name, a missing blob,
or an unreadable index entry is a miss, never a crash: the build renders again.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from nbpipe.store.blobs import Blobs, BlobWriter, remove_temp
from nbpipe.store.marks import Marks
from nbpipe.store.pins import Pins
from nbpipe.store.takes import Take, TakeIndex

__all__ = ["Cache", "Take", "remove_temp"]


class Cache:
    """Blob store, take index, push marks and pins of one cache directory; safe to share
    between projects and processes. The parts are `blobs`, `index`, `marks` and `pins`; the
    calls a build makes most are kept here as one-line delegations."""

    root: Path
    tmp_dir: Path
    readable: bool
    blobs: Blobs
    index: TakeIndex
    marks: Marks
    pins: Pins

    def __init__(self, root: Path, create: bool = True):
        self.root = root
        self.blobs = Blobs(root)
        self.tmp_dir = self.blobs.tmp_dir
        if create:
            self.tmp_dir.mkdir(parents=True, exist_ok=True)
        # A read-only look (plan, explain) at a cache that does not exist must not create it.
        self.readable = create or (root / "index").is_dir()
        self.index = TakeIndex(root / "index", self.blobs, self.readable)
        self.marks = Marks(root / "unpushed")
        self.pins = Pins(root / "pins")

    def blob_path(self, digest: str) -> Path:
        return self.blobs.path(digest)

    def has_blob(self, digest: str) -> bool:
        return self.blobs.has(digest)

    def writer(self) -> AbstractContextManager[BlobWriter]:
        return self.blobs.writer()

    def read_verified(self, digest: str) -> bytes | None:
        return self.blobs.read_verified(digest)

    def sweep(self) -> int:
        return self.blobs.sweep()

    def takes(self, key: str) -> list[Take]:
        return self.index.takes(key)

    def add_take(self, key: str, request: dict[str, Any], take: Take) -> None:
        self.index.add_takes([(key, request, take)])

    def allocate_take(self, key: str, known: Sequence[Take] = ()) -> int:
        return self.index.allocate_take(key, known)

    def served_at(self, digest: str) -> tuple[str | None, float | None]:
        return self.index.served_at(digest)

    def record_pins(self, project: Path, digests: set[str]) -> None:
        self.pins.record(project, digests)

    def unpushed(self, remote: str | None = None) -> list[tuple[str, str]]:
        return self.marks.unpushed(remote)

    def mark_unpushed(self, key: str, digest: str, remote: str) -> None:
        self.marks.add(key, digest, remote)

    def mark_pushed(self, key: str, digest: str, remote: str) -> None:
        self.marks.pushed(key, digest, remote)

    def close(self) -> None:
        self.index.close()
