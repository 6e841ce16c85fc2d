"""Wiring a build or a check: open the store as a unit, under the build lock, and run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from nbpipe.engine.build import Build, BuildOptions
from nbpipe.engine.carried import carried_frames
from nbpipe.events import Reporter, Summary
from nbpipe.plan.planner import Plan, Project, make_plan
from nbpipe.settings import Settings, Shard, current
from nbpipe.store.known import StoreKnown
from nbpipe.store.workspace import Workspace


def run_build(project: Project, cache_dir: Path, options: BuildOptions, events: Reporter,
              note: Callable[[str], None], wait: bool = True,
              settings: Settings | None = None,
              whole: Callable[[], Project] | None = None) -> Summary:
    """Build under the lock, telling `events`; `note` says the build waits for another.
    `whole` plans the whole project, for an edit path's project (Project.carried) whose
    frames cannot be carried after all (engine/carried.py)."""
    settings = settings or current()
    with Workspace.opened(project.loaded.root, cache_dir, project, write=True, wait=wait,
                          note=note, journal=True, offline=options.offline,
                          settings=settings) as space:
        assert space.journal is not None  # opened with journal=True
        carried = carried_frames(project, space.lock)
        if carried is None:
            if whole is None:
                raise ValueError("an edit path's project needs `whole` to fall back to")
            project, carried = whole(), []
        return Build(project, space.cache, space.lock, space.state, space.journal, events,
                     options, remote=space.remote, settings=settings, carried=carried).run()


def run_check(project: Project, cache_dir: Path, patterns: tuple[str, ...],
              note: Callable[[str], None], settings: Settings | None = None,
              shard: Shard | None = None) -> Plan:
    """The CI gate's plan against the lock and outputs, rendering nothing: with `shard`, of
    that shard's frames only (what that shard's build would have made fresh). It saves the
    stat cache, so it holds the build lock like every command that writes."""
    frames, others = project.share(patterns, shard)
    with Workspace.opened(project.loaded.root, cache_dir, project, write=True, note=note,
                          offline=True, settings=settings) as space:
        plan = make_plan(frames, StoreKnown(space.lock, space.cache, space.state))
        space.state.save()
    return replace(plan, shard=shard, others=others)
