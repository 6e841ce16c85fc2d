"""Reading a file the project names (the manifest, the lock): only inside the project, only a
regular file, never more than a cap (stdlib only, shared by manifest/, store/ and the fast path).

A pull request chooses these files, and a symlink is a file like any other to git: committed
as `nbpipe.yaml -> ~/.git-credentials` it would have the loader quote secrets into a CI log,
and as `nbpipe.lock -> /dev/zero` it would read forever. So the path is resolved first and
refused when it leads out of the project; the file is opened without blocking (a FIFO would
wait for a writer), checked to be regular, and read to at most `cap` bytes (SECURITY.md).
"""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

__all__ = ["LOCK_CAP", "MANIFEST_CAP", "FileRefused", "inside", "open_regular", "read_capped",
           "read_inside"]

MANIFEST_CAP = 16 << 20  # 16 MiB: real manifests are kilobytes; the loader's own budgets follow
LOCK_CAP = 512 << 20  # 512 MiB: a lock holds ~300 bytes a frame, so a million frames fit
_OPEN = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) \
    | getattr(os, "O_NOFOLLOW", 0)


class FileRefused(Exception):
    """A project file nbpipe will not read: it leads out of the project, is not a regular
    file, or is larger than the cap. The message completes "<file> ..."."""


def inside(root: Path | str, path: Path | str) -> bool:
    """Whether `path`, with every symbolic link resolved, lies inside the project `root`."""
    base = os.path.realpath(root)
    real = os.path.realpath(path)
    return real == base or real.startswith(base.rstrip(os.sep) + os.sep)


def read_inside(root: Path | str, path: Path | str, cap: int) -> bytes:
    """The bytes of `path`, a file inside the project `root`; FileRefused when it leads out
    of the project (a symbolic link), is not a regular file or holds more than `cap` bytes.
    FileNotFoundError and other OSErrors pass through to the caller's wording."""
    if not inside(root, path):
        raise FileRefused("is a symbolic link that leads outside the project")
    return read_capped(os.path.realpath(path), cap)


def read_capped(path: Path | str, cap: int) -> bytes:
    """The bytes of regular file `path` (not followed if it is a symbolic link), at most `cap`
    of them; FileRefused otherwise. Opening does not block on a FIFO or a device."""
    fd = os.open(path, _OPEN)
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise FileRefused("is not a regular file (a device, a pipe or a folder)")
        if info.st_size > cap:
            raise FileRefused(f"is larger than {_size(cap)} ({_size(info.st_size)})")
        data = handle.read(cap + 1)
    if len(data) > cap:  # grew while it was read
        raise FileRefused(f"is larger than {_size(cap)}")
    return data


def open_regular(path: Path | str, follow: bool = False) -> io.BufferedReader:
    """`path` opened for reading when it is a regular file (not followed if it is a symbolic
    link, unless `follow`; without blocking on a FIFO); FileRefused otherwise. For a stream
    copy of a file too large to cap (a blob), whose end a regular file guarantees."""
    fd = os.open(path, _OPEN & ~getattr(os, "O_NOFOLLOW", 0) if follow else _OPEN)
    handle = os.fdopen(fd, "rb")
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        handle.close()
        raise FileRefused("is not a regular file (a device, a pipe or a folder)")
    return handle


def _size(count: int) -> str:
    return f"{count / (1 << 20):,.0f} MiB" if count >= 1 << 20 else f"{count:,} bytes"
