"""The cache's image bytes: `blobs/ab/abcdef…`, named by their SHA-256 (content-addressed,
immutable), written through `tmp/` and renamed into place only when complete and verified.
A blob whose bytes no longer match its name, or a missing one, is a miss, never a crash."""

from __future__ import annotations

import hashlib
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from nbpipe.files import AtomicFile, SyncBatch, is_sha256
from nbpipe.projectfile import FileRefused, open_regular, read_capped

CHUNK = 1 << 20

BLOB_CAP = 1 << 30  # a blob read whole; images are far smaller (HiAPI's are capped at 64 MiB)


class BlobWriter:
    """Streams bytes into a temp file in the cache while hashing them; `commit` names it."""

    path: Path
    size: int
    _blobs: Blobs
    _temp: AtomicFile
    _hash: hashlib._Hash

    def __init__(self, blobs: Blobs):
        self._blobs = blobs
        # a blob keeps mkstemp's private mode, as before: the cache's owner reads it
        self._temp = AtomicFile(blobs.tmp_dir, "blob-", shareable=False)
        self.path = self._temp.path
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, chunk: bytes) -> None:
        self._temp.handle.write(chunk)
        self._hash.update(chunk)
        self.size += len(chunk)

    def truncate(self) -> None:
        """Start again from the first byte (a retried download)."""
        self._temp.handle.seek(0)
        self._temp.handle.truncate()
        self._hash = hashlib.sha256()
        self.size = 0

    def flush(self) -> None:
        self._temp.handle.flush()

    @property
    def digest(self) -> str:
        """The SHA-256 of what was written so far (check it before committing)."""
        return self._hash.hexdigest()

    def commit(self) -> str:
        """Make the blob durable under its digest; returns the digest."""
        digest = self._hash.hexdigest()
        self._temp.publish(self._blobs.path(digest))
        return digest

    def discard(self) -> None:
        self._temp.discard()


class Blobs:
    """The content-addressed bytes of a cache directory."""

    root: Path
    tmp_dir: Path

    def __init__(self, root: Path):
        self.root = root
        self.tmp_dir = root / "tmp"

    def path(self, digest: str) -> Path:
        if not is_sha256(digest):
            raise ValueError(f"not a sha256 digest: {str(digest)[:80]!r}")
        return self.root / "blobs" / digest[:2] / digest

    def has(self, digest: str) -> bool:
        return is_sha256(digest) and self.path(digest).is_file()

    @contextmanager
    def writer(self) -> Iterator[BlobWriter]:
        """A BlobWriter whose temp file is removed unless committed (crash, error, Ctrl-C)."""
        writer = BlobWriter(self)
        try:
            yield writer
        finally:
            writer.discard()

    def put(self, data: bytes) -> str:
        with self.writer() as writer:
            writer.write(data)
            return writer.commit()

    def read_verified(self, digest: str) -> bytes | None:
        """The blob's bytes if present and intact; a corrupt blob is removed and is a miss."""
        if not is_sha256(digest):
            return None
        try:
            data = read_capped(self.path(digest), BLOB_CAP)  # a shared cache: no FIFO
        except (OSError, FileRefused):
            return None
        if hashlib.sha256(data).hexdigest() != digest:
            self.path(digest).unlink(missing_ok=True)
            return None
        return data

    def copy_verified(self, digest: str, dest: Path, batch: SyncBatch | None = None) -> bool:
        """Atomically write the blob to `dest`, checking its digest on the way; False on a miss.
        Durable on return, or with a `batch`, at its sync."""
        if not is_sha256(digest):
            return False
        try:
            source = open_regular(self.path(digest))  # not /dev/zero: a copy must end
        except (OSError, FileRefused):
            return False
        temp = AtomicFile(dest.parent, f".{dest.name}.")
        try:
            hasher = hashlib.sha256()
            with source:
                while chunk := source.read(CHUNK):
                    hasher.update(chunk)
                    temp.handle.write(chunk)
            if hasher.hexdigest() != digest:
                self.path(digest).unlink(missing_ok=True)
                return False
            temp.publish(dest, batch)  # durable before a lock names it
            return True
        finally:
            temp.discard()

    def adopt(self, temp: Path, digest: str, batch: SyncBatch | None = None) -> bool:
        """Move a downloaded temp file into the store if it hashes to `digest`; else drop it.
        Durable on return, or with a `batch`, at its sync."""
        if not is_sha256(digest):
            temp.unlink(missing_ok=True)
            return False
        try:
            with open(temp, "rb") as handle:
                actual = hashlib.file_digest(handle, "sha256").hexdigest()
            if actual != digest:
                return False
            AtomicFile.of(temp).publish(self.path(digest), batch)
            return True
        except OSError:
            return False
        finally:
            temp.unlink(missing_ok=True)

    def sweep(self) -> int:
        """Remove partial writes left by a killed build. Call only while holding the cache's
        build lock: then no temp file can belong to a live writer."""
        return sum(remove_temp(temp) for temp in self.temps())

    def temps(self, older_than: float = 0) -> list[Path]:
        """What is in tmp/ (modified more than `older_than` seconds ago)."""
        try:
            found = list(self.tmp_dir.iterdir())
        except OSError:
            return []
        now = time.time()
        return [t for t in found if not older_than or now - _mtime(t) > older_than]


def remove_temp(path: Path) -> int:
    """Remove a leftover of tmp/, whatever it is (a file, a link, or a directory someone put
    there); 1 if it went, 0 if it could not."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    except OSError:
        return 0
    return 1


def _mtime(path: Path) -> float:
    try:
        return path.lstat().st_mtime
    except OSError:
        return time.time()
