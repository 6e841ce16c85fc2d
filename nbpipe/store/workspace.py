"""The project's store opened as a unit: the cache, the lock, the local state, the journal and
the shared remote, under the build lock when writing, each refused when git tracks it (a
committed store is untrusted input)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from filelock import FileLock, Timeout

from nbpipe.errors import NbpipeError
from nbpipe.store.cache import Cache
from nbpipe.store.gitref import refuse_committed_store
from nbpipe.store.journal import Journal
from nbpipe.store.known import StoreKnown
from nbpipe.store.lock import Lock
from nbpipe.store.remote import Remote, configured
from nbpipe.store.state import State

if TYPE_CHECKING:
    from nbpipe.plan.planner import Project
    from nbpipe.settings import Settings

JOURNAL = "journal.jsonl"  # in the cache directory


@contextmanager
def build_lock(project_dir: Path, cache_dir: Path, wait: bool,
               note: Callable[[str], None]) -> Iterator[None]:
    """One writer at a time per project and per cache: a second one waits (`note` says so) or,
    without `wait`, fails at once."""
    paths = sorted({project_dir / "build.lock", cache_dir / "build.lock"})
    with ExitStack() as stack:
        for path in paths:
            path.parent.mkdir(parents=True, exist_ok=True)
            lock = FileLock(str(path))
            try:
                stack.enter_context(lock.acquire(timeout=0))
            except Timeout:
                if not wait:
                    raise NbpipeError(
                        f"another nbpipe build holds {path.parent}; "
                        "try again when it ends (or drop --no-wait to wait)") from None
                note(f"waiting for another nbpipe build to finish ({path.parent}) …")
                stack.enter_context(lock.acquire())
        yield


def to_stderr(text: str) -> None:
    """The default way a writer says it waits for the build lock."""
    print(text, file=sys.stderr)


@dataclass
class Workspace:
    """Everything a command knows of the past, opened together and closed together.

    With a project, the store is refused when git tracks it and the remote in force is opened
    (none offline); without one (gc, clean need no manifest), the lock is read unsectioned and
    there is no remote. `journal` is opened only for a build, which is the one that appends."""

    root: Path
    cache_dir: Path
    cache: Cache
    lock: Lock
    state: State
    remote: Remote | None
    journal: Journal | None

    def known(self) -> StoreKnown:
        """The planner's view of this workspace."""
        return StoreKnown(self.lock, self.cache, self.state, self.remote)

    @staticmethod
    @contextmanager
    def opened(root: Path, cache_dir: Path, project: Project | None = None, *,
               write: bool = False, wait: bool = True, note: Callable[[str], None] = to_stderr,
               create: bool = True, offline: bool = False, journal: bool = False,
               settings: Settings | None = None) -> Iterator[Workspace]:
        """The workspace of `root`; with `write`, under the build lock for its whole life."""
        with ExitStack() as stack:
            if write:
                stack.enter_context(build_lock(root / ".nbpipe", cache_dir, wait, note))
            if project is not None:
                refuse_committed_store(root, cache_dir)
            section = project.declared.section if project is not None else None
            cache = Cache(cache_dir, create)
            stack.callback(cache.close)
            space = Workspace(root, cache_dir, cache, Lock.load(root, section, _trusted(project)),
                              State(root),
                              None if project is None else open_remote(project, offline, settings),
                              None)
            if journal:
                space.journal = Journal(cache_dir / JOURNAL)
                stack.callback(_close_journal, space.journal)
            yield space


def _trusted(project: Project | None) -> str | None:
    """The digest of the lock the edit path's fingerprint proved (Project.since): nbpipe
    wrote and checked those very bytes, on this checkout (engine/noop.py)."""
    since = project.since if project is not None else None
    digest = since.get("lock") if since is not None else None
    return digest if isinstance(digest, str) else None


def _close_journal(journal: Journal) -> None:
    try:
        journal.close()
    except OSError:
        pass  # compaction only: the uncompacted journal is still valid


def open_store(project: Project, cache_dir: Path, create: bool = True) -> tuple[Cache, Lock, State]:
    """The cache, the lock and the local state; refused when git tracks the cache or state
    (see gitref.refuse_committed_store). The no-op fast path never comes here: it trusts a
    fingerprint only when bound to this checkout (engine/noop.py)."""
    root = project.loaded.root
    refuse_committed_store(root, cache_dir)
    return Cache(cache_dir, create), Lock.load(root, project.declared.section), State(root)


def open_remote(project: Project, offline: bool = False,
                settings: Settings | None = None) -> Remote | None:
    config = project.loaded.manifest.cache
    return configured(project.loaded.root, config.remote, config.endpoint_url, offline, settings)


@contextmanager
def known_store(project: Project, cache_dir: Path, offline: bool = False) -> Iterator[StoreKnown]:
    """What happened before (lock, local cache, outputs, remote cache), opened read-only."""
    with Workspace.opened(project.loaded.root, cache_dir, project, create=False,
                          offline=offline) as space:
        yield space.known()
