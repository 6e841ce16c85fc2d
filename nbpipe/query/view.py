"""Looking at the project's past without building: the store opened read-only, and the plan
against it. Kept apart from session.py so `plan`, `explain` and `report` never import the
build machinery (httpx, the backends)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from nbpipe.plan.frame import Frame
from nbpipe.plan.planner import Plan, Project, Step, make_plan
from nbpipe.settings import Shard
from nbpipe.store.known import StoreKnown
from nbpipe.store.workspace import known_store


def plan_with(known: StoreKnown, frames: list[Frame], prefetch: tuple[str, ...] = ()) -> Plan:
    """The plan of `frames` against `known`. Restores the shared remote cache would serve say
    so. `prefetch` names more keys whose remote take records are read in the same batch."""
    if known.remote is not None:
        keys = [*(f.key for f in frames if f.key), *prefetch]
        known.remote.prefetch_takes([k for k in keys if not known.cache.takes(k)])
    plan = make_plan(frames, known)
    unknown = known.remote is not None and bool(known.remote.unreachable)
    return Plan([_remote_said(s, known, unknown) for s in plan.steps])


def _remote_said(step: Step, known: StoreKnown, unknown: bool) -> Step:
    """The step, its reason saying what the remote has to do with it."""
    if step.action == "restore" and step.digest and known.remote_only(step.digest):
        return replace(step, reason=f"{step.reason} (from the remote cache)")
    if step.action == "render" and unknown:
        return replace(step, reason=f"{step.reason} (remote unavailable: the team's cache may "
                                    "hold it)")
    return step


def plan_project(project: Project, cache_dir: Path, patterns: tuple[str, ...],
                 offline: bool = False, shard: Shard | None = None) -> Plan:
    """The plan against what happened before (the lock, the caches, the outputs); writes
    nothing. With `shard`, of that shard's frames only."""
    frames, others = project.share(patterns, shard)
    with known_store(project, cache_dir, offline) as known:
        return replace(plan_with(known, frames), shard=shard, others=others)
