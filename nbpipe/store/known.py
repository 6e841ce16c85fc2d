"""The planner's view of what happened before (plan.planner.Known), over the store: the lock,
the local cache and stat cache, and the shared remote cache when one is configured."""

from __future__ import annotations

from typing import Any

from nbpipe.store.cache import Cache, Take
from nbpipe.store.lock import Lock, LockEntry
from nbpipe.store.remote import Remote
from nbpipe.store.state import State


class StoreKnown:
    """What happened before, as the planner asks it: the lock, the local cache and state, the
    remote cache (None without one)."""

    lock: Lock
    cache: Cache
    state: State
    remote: Remote | None

    def __init__(self, lock: Lock, cache: Cache, state: State, remote: Remote | None = None):
        self.lock, self.cache, self.state, self.remote = lock, cache, state, remote

    def locked(self, frame: str) -> LockEntry | None:
        return self.lock.entries.get(frame)

    def output_digest(self, output: str) -> str | None:
        return self.state.output_digest(output)

    def has_blob(self, digest: str) -> bool:
        return self.cache.has_blob(digest) or bool(self.remote and self.remote.has(digest))

    def best_take(self, key: str) -> Take | None:
        takes = self.cache.takes(key)
        if takes:
            return self.cache.index.chosen(key) or takes[-1]  # a hand-pinned take outlives a revert
        remote = self.remote.takes(key) if self.remote and self.remote.digests(key) else []
        return remote[-1][0] if remote else None

    def take_digests(self, key: str) -> set[str]:
        """The digests of the key's takes here, and on the remote: asked of it only for a key
        this cache has no take of (the preflight asked those in one batch). Every image a
        build here wrote came through this cache, its take indexed: a key's takes here say
        which files of it are nbpipe's, and a LIST a frame was a request per frame."""
        local = {t.digest for t in self.cache.takes(key)}
        if self.remote is None:
            return local
        return local | (self.remote.listing.known(key) if local else self.remote.digests(key))

    def kept(self, digest: str) -> bool:
        return self.cache.has_blob(digest)

    def orphan(self, output: str) -> str | None:
        return self.state.orphans.get(output)

    def previous_request(self, key: str) -> dict[str, Any] | None:
        request = self.cache.index.request(key)
        if request is None and self.remote and self.remote.digests(key):
            remote = self.remote.takes(key)
            request = remote[-1][1] if remote else None
        return request

    def remote_only(self, digest: str) -> bool:
        return not self.cache.has_blob(digest) and bool(self.remote and self.remote.has(digest))
