"""How nbpipe writes the files it keeps, and which names of them it trusts.

- `atomic_write` and `AtomicFile`: readers see the old file or the new one, never a part, and
  what a lock or a journal names is on disk before they name it (temp file in the same folder,
  fsync, `os.replace`, fsync of the folder). The one writer of every cache file, lock, state,
  journal compaction, output and page.
- `SyncBatch`: many outputs written in one build, made durable by one sync of their file
  systems before the lock names them (an fsync per output costs more than the copy).
- `is_sha256`: the one check of a key or digest read from an untrusted place (a lock, an index
  record, a journal line, a remote listing, a mark's name); only such a text ever becomes part
  of a path, so `/etc/x` or `../../x` never does.

Standard library only: the no-op fast path (engine/noop.py) imports this and nothing heavy.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import BinaryIO

_SHA256 = re.compile(r"[0-9a-f]{64}")


def is_sha256(value: object) -> bool:
    """A key or digest as nbpipe writes them: 64 lowercase hex digits, nothing else."""
    return isinstance(value, str) and _SHA256.fullmatch(value) is not None


def umask() -> int:
    """The process's umask. Linux tells it in /proc without changing it (another thread may be
    creating a file that instant); elsewhere the only way to read it is to set it and put it
    back."""
    try:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_MASK: list[int] = []  # read once a process: a warm server's child takes its caller's
os.register_at_fork(after_in_child=_MASK.clear)


def shareable_mode() -> int:
    """The mode a plain open() would give a new file. mkstemp creates 0600 files; outputs, the
    lock and pages get this one, so a web server or a teammate on a shared disk can read what
    the report links to."""
    if not _MASK:
        _MASK.append(umask())
    return 0o666 & ~_MASK[0]


class AtomicFile:
    """A temp file in `folder` that becomes a named file only by `publish` (durable first);
    `discard` removes it if it was not published (an error, a crash, a Ctrl-C)."""

    handle: BinaryIO
    path: Path

    def __init__(self, folder: Path, prefix: str, shareable: bool = True):
        folder.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=folder, prefix=prefix, suffix=".part")
        if shareable:
            os.fchmod(fd, shareable_mode())
        self.handle = os.fdopen(fd, "wb")
        self.path = Path(name)

    @classmethod
    def of(cls, path: Path) -> AtomicFile:
        """A temp file written by someone else (a download), to publish like one of ours."""
        temp = cls.__new__(cls)
        temp.handle = open(path, "ab")
        temp.path = path
        return temp

    def publish(self, target: Path, batch: SyncBatch | None = None) -> None:
        """Make the bytes durable, then put them at `target` in one step. With a `batch`, they
        become durable only at its `sync`: whatever names `target` durably must wait for it."""
        self.handle.flush()
        if batch is None:
            os.fsync(self.handle.fileno())
        self.handle.close()
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.path, target)
        if batch is None:
            fsync_dir(target.parent)
        else:
            batch.add(target.parent)

    def discard(self) -> None:
        if not self.handle.closed:
            self.handle.close()
        self.path.unlink(missing_ok=True)


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old file or the new one, never a part."""
    temp = AtomicFile(path.parent, f".{path.name}.")
    try:
        temp.handle.write(data)
        temp.publish(path)
    finally:
        temp.discard()


def fsync_dir(path: Path) -> None:
    """Make a rename in `path` durable (where the platform allows opening a folder)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SyncBatch:
    """Files published without an fsync each, made durable together by `sync` (one syncfs of
    each file system they are on: their bytes and their names). Whatever records them durably
    (the lock) is written only after `sync`: so it never names a file a power cut can leave
    empty, as with an fsync per file."""

    folders: set[Path]

    def __init__(self) -> None:
        self.folders = set()

    def add(self, folder: Path) -> None:
        self.folders.add(folder)

    def sync(self) -> None:
        """Make every file published into the batch durable; raises OSError if it cannot."""
        devices: dict[int, Path] = {}
        for folder in self.folders:
            devices.setdefault(os.stat(folder).st_dev, folder)
        for folder in devices.values():
            _syncfs(folder)
        self.folders.clear()


def _syncfs(folder: Path) -> None:
    """Flush the file system holding `folder`: syncfs(2) where there is one (Linux), else a
    sync of everything (POSIX sync(2) returns only once done on the platforms nbpipe runs on)."""
    import ctypes  # only a build that wrote outputs pays for the import

    try:
        syncfs = ctypes.CDLL(None, use_errno=True).syncfs  # the C library nbpipe runs on
    except (OSError, AttributeError, TypeError):
        os.sync()
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        if syncfs(fd) != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code), str(folder))
    finally:
        os.close(fd)
