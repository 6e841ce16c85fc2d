"""Looking at the project's past without building: the store opened read-only, and the plan
against it. Kept apart from session.py so `plan`, `explain` and `report` never import the
build machinery (httpx, the backends)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from nbpipe.plan.planner import Plan, Project, make_plan
from nbpipe.run.known import StoreKnown
from nbpipe.store.cache import Cache
from nbpipe.store.lock import Lock
from nbpipe.store.remote import Remote, configured
from nbpipe.store.state import State


def open_store(project: Project, cache_dir: Path, create: bool = True) -> tuple[Cache, Lock, State]:
    root = project.loaded.root
    return Cache(cache_dir, create), Lock.load(root, project.declared.profile), State(root)


def open_remote(project: Project, offline: bool = False) -> Remote | None:
    config = project.loaded.manifest.cache
    return configured(project.loaded.root, config.remote, config.endpoint_url, offline)


def plan_project(project: Project, cache_dir: Path, patterns: tuple[str, ...],
                 offline: bool = False) -> Plan:
    """The plan against what happened before (the lock, the caches, the outputs); writes
    nothing. Restores the shared remote cache would serve say so."""
    cache, lock, state = open_store(project, cache_dir, create=False)
    try:
        known = StoreKnown(lock, cache, state, open_remote(project, offline))
        frames = project.select(patterns)
        if known.remote is not None:
            known.remote.prefetch_takes([f.key for f in frames if f.key and not cache.takes(f.key)])
        plan = make_plan(frames, known)
        return Plan([replace(s, reason=f"{s.reason} (from the remote cache)")
                      if s.action == "restore" and known.remote_only(s.digest) else s
                      for s in plan.steps])
    finally:
        cache.close()
