"""Looking at what happened: why a frame is stale (explain), its takes, and pinning one."""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path

from nbpipe.errors import UsageError
from nbpipe.manifest.source import did_you_mean
from nbpipe.money import fmt_usd
from nbpipe.plan.planner import Plan, Project, Step, output_is_ours
from nbpipe.query.view import open_store, plan_project
from nbpipe.store.known import StoreKnown
from nbpipe.store.lock import LockEntry
from nbpipe.store.outputs import write_output


def _frame_name(project: Project, name: str) -> str:
    if name in project.frames:
        return name
    raise UsageError(f"no frame named '{name}'", did_you_mean(name, project.frames)
                     or "`nbpipe plan` lists the frames")


def explain(project: Project, cache_dir: Path, name: str) -> str:
    """Why FRAME will be fresh, restored, rendered or blocked, field by field."""
    name = _frame_name(project, name)
    plan = plan_project(project, cache_dir, (name,))
    step = next(s for s in plan.steps if s.frame.name == name)
    cache, lock, _ = open_store(project, cache_dir, create=False)
    try:
        locked = lock.entries.get(name)
        lines = [f"{name}: {step.action} · {step.reason}"]
        lines += [f"  {line}" for change in step.changes for line in change.lines]
        lines += _upstream_causes(step, plan)
        lines += _tail(step, locked, project.flags)
    finally:
        cache.close()
    return "\n".join(lines)


def _upstream_causes(step: Step, plan: Plan) -> list[str]:
    by_name = {s.frame.name: s for s in plan.steps}
    out = []
    for upstream in step.frame.upstreams:
        up = by_name.get(upstream)
        if up is not None and up.action != "fresh":
            out.append(f"  because upstream {upstream}: {up.action} · {up.reason}")
    return out


def _tail(step: Step, locked: LockEntry | None, flags: str) -> list[str]:
    frame = step.frame
    key = frame.key[:12] if frame.key else "unknown until its inputs render"
    if step.action == "fresh":
        return [f"  key {key} and {frame.output} (sha256 {step.digest[:12]}) match nbpipe.lock"]
    out = []
    if locked is not None and locked.key != frame.key:
        out.append(f"  key: {locked.key[:12]} (locked) → {key}")
    elif locked is None:
        out.append(f"  key: {key} (nbpipe.lock has no entry for {frame.name})")
    if step.same_as:
        out.append(f"  the same request as {step.same_as}: sent once, this frame gets its image "
                   "for free")
    elif step.action == "restore":
        out.append(f"  a take of this key is in the cache (sha256 {step.digest[:12]}): "
                   f"restored for free, saving USD {fmt_usd(frame.cost)}")
    elif step.action == "render":
        out.append(f"  no take of this key in the cache: renders on {frame.backend} "
                   f"{frame.model} for USD {fmt_usd(frame.cost)}")
    elif frame.key is not None:
        out.append(f"  `nbpipe build{flags} --force {frame.name}` overwrites {frame.output}")
    return out


def list_takes(project: Project, cache_dir: Path, name: str) -> str:
    name = _frame_name(project, name)
    step = _step(project, cache_dir, name)
    cache, lock, _ = open_store(project, cache_dir, create=False)
    try:
        takes = cache.takes(step.frame.key) if step.frame.key else []
        pinned = lock.entries.get(name)
    finally:
        cache.close()
    if not takes:
        return f"{name}: no takes of its current request in the cache"
    lines = [f"takes of {name} (key {step.frame.key[:12]}):"]
    for i, take in enumerate(takes, 1):
        mark = "*" if pinned and pinned.digest == take.digest else " "
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(take.created))
        task = f"  task {take.task_id}" if take.task_id else ""
        lines.append(f"{mark} {i}  sha256:{take.digest[:12]}  {when}  {take.backend} "
                     f"{take.model}  USD {fmt_usd(Decimal(take.cost_usd))}{task}")
    return "\n".join(lines + ["(* pinned in nbpipe.lock)"])


def _step(project: Project, cache_dir: Path, name: str) -> Step:
    plan = plan_project(project, cache_dir, (name,))
    step = next(s for s in plan.steps if s.frame.name == name)
    if step.frame.key is None:
        raise UsageError(f"{name} waits on an upstream that has not rendered",
                         f"build it first: nbpipe build{project.flags} {name}")
    return step


def pin(project: Project, cache_dir: Path, name: str, which: str, force: bool) -> str:
    """Pin an earlier take of FRAME (by number or digest prefix): free, from the cache."""
    name = _frame_name(project, name)
    frame = _step(project, cache_dir, name).frame
    cache, lock, state = open_store(project, cache_dir)
    try:
        takes = cache.takes(frame.key)
        chosen = [t for i, t in enumerate(takes, 1) if which == str(i)] or \
            [t for t in takes if len(which) >= 6 and t.digest.startswith(which)]
        if len(chosen) != 1:
            raise UsageError(f"no single take '{which}' of {name}",
                             f"`nbpipe takes{project.flags} {name}` lists them by number")
        take = chosen[0]
        output = frame.output_for(take.format)  # a JPEG take is never written as .png
        current = state.output_digest(output)
        entry = lock.entries.get(name)
        if not output_is_ours(output, current, entry.digest if entry else None, frame.key,
                              StoreKnown(lock, cache, state)) and not force:
            raise UsageError(f"{output} was modified outside nbpipe",
                             "pass --force to overwrite it")
        if not write_output(cache, state, project.loaded.root, output, take.digest):
            raise UsageError(f"take {which} of {name} is missing or corrupt in the cache")
        cache.choose(frame.key, take.digest)
        lock.entries[name] = LockEntry(frame.key, output, take.digest, frame.backend,
                                       frame.model, float(Decimal(take.cost_usd)))
        lock.save(project.loaded.root)
        cache.record_pins(project.loaded.root, lock.pinned())
        state.set_fingerprint(None)
        state.save()
    finally:
        cache.close()
    return f"pinned {name} to sha256:{take.digest[:12]} and wrote {output}"
