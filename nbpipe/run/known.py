"""The planner's view of what happened before (plan.planner.Known), over the store."""

from __future__ import annotations

from nbpipe.store.cache import Cache, Take
from nbpipe.store.lock import Lock, LockEntry
from nbpipe.store.state import State


class StoreKnown:
    """The planner's view of what happened before, over the lock, cache and stat cache."""

    def __init__(self, lock: Lock, cache: Cache, state: State):
        self.lock, self.cache, self.state = lock, cache, state

    def locked(self, frame: str) -> LockEntry | None:
        return self.lock.entries.get(frame)

    def output_digest(self, output: str) -> str | None:
        return self.state.output_digest(output)

    def has_blob(self, digest: str) -> bool:
        return self.cache.has_blob(digest)

    def best_take(self, key: str) -> Take | None:
        takes = self.cache.takes(key)
        return takes[-1] if takes else None

    def take_digests(self, key: str) -> set[str]:
        return {t.digest for t in self.cache.takes(key)}

    def previous_request(self, key: str) -> dict | None:
        return self.cache.request(key)
