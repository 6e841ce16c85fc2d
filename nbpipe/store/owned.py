"""The takes a project owns: every local take of its frames' keys and of every key its lock
pins, in any profile. What `nbpipe push`, the remote's catch-up and `pull` walk alike."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from nbpipe.plan.frame import Frame
from nbpipe.store.cache import Cache, Take
from nbpipe.store.lock import Lock

Request = Callable[[], dict[str, Any]]  # the request behind a key, made when it is sent


def project_takes(frames: Iterable[Frame], lock: Lock,
                  cache: Cache) -> Iterator[tuple[str, Take, Request]]:
    """(key, take, request) of every local take of the project's frames and of every key its
    lock pins (every profile's). The request is made only when called: a frame's holds its
    whole prompt (a bible joined in), so making every frame's up front held frames × prompt
    length (12,000 frames × a 119k-character bible: 1.4 GiB) to send a few."""
    keys: dict[str, Frame | None] = {frame.key: frame for frame in frames if frame.key}
    for entries in (lock.entries, *lock.others.values()):
        for entry in entries.values():
            keys.setdefault(entry.key, None)
    for key, frame in keys.items():
        for take in cache.takes(key):
            yield key, take, _request(cache, key, frame)


def _request(cache: Cache, key: str, frame: Frame | None) -> Request:
    return lambda: cache.index.request(key) or (frame.record() if frame is not None else {})
