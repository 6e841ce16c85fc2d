"""Wiring a build or a check: open the store, run, and turn the outcome into an exit code."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

from nbpipe.engine.build import Build, BuildOptions
from nbpipe.errors import EXIT_FAILED, EXIT_OK
from nbpipe.events import Note, Reporter
from nbpipe.money import fmt_usd
from nbpipe.plan.planner import Project, make_plan
from nbpipe.settings import Settings, current
from nbpipe.store.known import StoreKnown
from nbpipe.store.workspace import Workspace
from nbpipe.ui.events import JsonEvents, TextEvents


def run_build(project: Project, cache_dir: Path, options: BuildOptions, as_json: bool,
              wait: bool = True, settings: Settings | None = None) -> int:
    settings = settings or current()
    events = _events(as_json, len(project.select(options.patterns)))
    with Workspace.opened(project.loaded.root, cache_dir, project, write=True, wait=wait,
                          note=_say(events), journal=True, offline=options.offline,
                          settings=settings) as space:
        assert space.journal is not None  # opened with journal=True
        summary = Build(project, space.cache, space.lock, space.state, space.journal, events,
                        options, remote=space.remote, settings=settings).run()
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


def run_check(project: Project, cache_dir: Path, patterns: tuple[str, ...], as_json: bool,
              settings: Settings | None = None) -> int:
    """The CI gate: plan against the lock and outputs, render nothing, exit 1 if anything is stale.
    It saves the stat cache, so it holds the build lock like every command that writes."""
    with Workspace.opened(project.loaded.root, cache_dir, project, write=True,
                          note=_say(_events(as_json, 0)), offline=True,
                          settings=settings) as space:
        plan = make_plan(project.select(patterns), StoreKnown(space.lock, space.cache, space.state))
        space.state.save()
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
