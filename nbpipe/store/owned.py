"""The takes a project owns: every local take of its frames' keys and of every key its lock
pins, in any profile. What `nbpipe push`, the remote's catch-up and `pull` walk alike."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from nbpipe.plan.frame import Frame
from nbpipe.store.cache import Cache, Take
from nbpipe.store.lock import Lock


def project_takes(frames: Iterable[Frame], lock: Lock,
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
