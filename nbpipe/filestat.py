"""What proves a file unchanged without reading it (shared by plan/ and store/; stdlib only).

A file's stat is (size, mtime_ns, ctime_ns, inode). The ctime matters: `cp -p`, `tar x`,
`touch -r` and `os.utime` put an old mtime back on new bytes, but nothing but the kernel sets
the ctime, and it moves on every write. A stat taken within RACY_NS of a change proves nothing
(the file system's clock ticks coarsely, so a second write in the same tick keeps every field):
such a stat is "racy", as git calls it, and a fingerprint holding one is never written.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

Stat = tuple[int, int, int, int]
RACY_NS = 100_000_000  # well above the kernel's coarse timestamp tick (1-10 ms)


def stat_of(path: str | Path) -> Stat | None:
    try:
        st = os.stat(path)
    except (OSError, ValueError):  # ValueError: a NUL in a path read from a damaged file
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def is_racy(stat: Stat, now_ns: int | None = None) -> bool:
    """True if the file changed so recently that a same-tick rewrite would leave `stat` as is."""
    now = time.time_ns() if now_ns is None else now_ns
    return max(stat[1], stat[2]) >= now - RACY_NS
