"""The project's store opened as a unit: the cache, the lock, the local state and the shared
remote, each refused when git tracks it (a committed store is untrusted input)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from nbpipe.store.cache import Cache
from nbpipe.store.gitref import refuse_committed_store
from nbpipe.store.known import StoreKnown
from nbpipe.store.lock import Lock
from nbpipe.store.remote import Remote, configured
from nbpipe.store.state import State

if TYPE_CHECKING:
    from nbpipe.plan.planner import Project


def open_store(project: Project, cache_dir: Path, create: bool = True) -> tuple[Cache, Lock, State]:
    """The cache, the lock and the local state; refused when git tracks the cache or state
    (see gitref.refuse_committed_store). The no-op fast path never comes here: it trusts a
    fingerprint only when bound to this checkout (engine/noop.py)."""
    root = project.loaded.root
    refuse_committed_store(root, cache_dir)
    return Cache(cache_dir, create), Lock.load(root, project.declared.section), State(root)


def open_remote(project: Project, offline: bool = False) -> Remote | None:
    config = project.loaded.manifest.cache
    return configured(project.loaded.root, config.remote, config.endpoint_url, offline)


@contextmanager
def known_store(project: Project, cache_dir: Path, offline: bool = False) -> Iterator[StoreKnown]:
    """What happened before (lock, local cache, outputs, remote cache), opened read-only."""
    cache, lock, state = open_store(project, cache_dir, create=False)
    try:
        yield StoreKnown(lock, cache, state, open_remote(project, offline))
    finally:
        cache.close()
