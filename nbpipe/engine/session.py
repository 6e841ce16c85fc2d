"""Wiring a build or a check: open the store, run, and turn the outcome into an exit code."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from nbpipe.engine.build import Build, BuildOptions
from nbpipe.errors import EXIT_FAILED, EXIT_OK, NbpipeError
from nbpipe.events import Note, Reporter
from nbpipe.money import fmt_usd
from nbpipe.plan.planner import Project, make_plan
from nbpipe.store.journal import Journal
from nbpipe.store.known import StoreKnown
from nbpipe.store.workspace import open_remote, open_store
from nbpipe.ui.events import JsonEvents, TextEvents


def run_build(project: Project, cache_dir: Path, options: BuildOptions, as_json: bool,
              wait: bool = True) -> int:
    events = _events(as_json, len(project.select(options.patterns)))
    with exclusive(project.loaded.root / ".nbpipe", cache_dir, wait, _say(events)):
        cache, lock, state = open_store(project, cache_dir)
        journal = Journal(cache_dir / "journal.jsonl")
        try:
            build = Build(project, cache, lock, state, journal, events, options,
                          remote=open_remote(project, options.offline))
            summary = build.run()
        finally:
            try:
                journal.close()
            except OSError:
                pass  # compaction only: the uncompacted journal is still valid
            cache.close()
    return summary.exit_code  # frames skipped or left out are missing: CI must not look green


def _events(as_json: bool, total: int) -> Reporter:
    if as_json:
        return JsonEvents()
    if sys.stdout.isatty() and os.environ.get("TERM") != "dumb":
        from nbpipe.ui.progress import LiveEvents

        return LiveEvents(total)
    return TextEvents()


def _say(events: Reporter) -> Callable[[str], None]:
    return lambda text: events.emit(Note(text))


@contextmanager
def exclusive(project_dir: Path, cache_dir: Path, wait: bool,
              say: Callable[[str], None]) -> Iterator[None]:
    """One build at a time per project and per cache: a second one waits (or fails at once),
    and `say`s that it waits."""
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
                        f"another nbpipe build holds {path.parent}; try again when it ends "
                        "(or drop --no-wait to wait)") from None
                say(f"waiting for another nbpipe build to finish ({path.parent}) …")
                stack.enter_context(lock.acquire())
        yield


def run_check(project: Project, cache_dir: Path, patterns: tuple[str, ...], as_json: bool) -> int:
    """The CI gate: plan against the lock and outputs, render nothing, exit 1 if anything is stale.
    It saves the stat cache, so it holds the build lock like every command that writes."""
    with exclusive(project.loaded.root / ".nbpipe", cache_dir, True, _say(_events(as_json, 0))):
        cache, lock, state = open_store(project, cache_dir)
        try:
            plan = make_plan(project.select(patterns), StoreKnown(lock, cache, state))
            state.save()
        finally:
            cache.close()
    stale = [s for s in plan.steps if s.action != "fresh"]
    if as_json:
        import json

        print(json.dumps({"event": "check", "fresh": len(plan.steps) - len(stale),
                          "stale": [{"frame": s.frame.name, "action": s.action,
                                     "reason": s.reason} for s in stale]}))
    elif stale:
        print(f"{len(stale)} of {len(plan.steps)} frames not fresh "
              f"(a build would spend USD {fmt_usd(plan.cost)}):")
        width = max(len(s.frame.name) for s in stale)
        for s in stale:
            print(f"  {s.action:<8} {s.frame.name:<{width}}  {s.reason}")
    else:
        print(f"all {len(plan.steps)} frames fresh")
    return EXIT_FAILED if stale else EXIT_OK
