"""Looking at what happened: why a frame is stale (explain), its takes, and pinning one."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from decimal import Decimal
from pathlib import Path

from nbpipe.errors import UsageError
from nbpipe.imagefmt import MIME, sniff
from nbpipe.manifest.source import did_you_mean
from nbpipe.money import fmt_usd
from nbpipe.plan.frame import Frame, InputImage
from nbpipe.plan.planner import Plan, Project, Step, output_is_ours
from nbpipe.query.view import plan_project
from nbpipe.store.cache import Cache, Take
from nbpipe.store.lock import LockEntry
from nbpipe.store.outputs import write_output
from nbpipe.store.workspace import Workspace, build_lock, to_stderr


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
    with _read(project, cache_dir) as space:
        locked = space.lock.entries.get(name)
    lines = [f"{name}: {step.action} · {step.reason}"]
    lines += [f"  {line}" for change in step.changes for line in change.lines]
    lines += _upstream_causes(step, plan)
    lines += _tail(step, locked, project.flags)
    return "\n".join(lines)


def shown_frame(project: Project, cache_dir: Path, name: str) -> Frame:
    """FRAME as `show` prints it: an edit keyed as the plan keys it, since its key and body
    hold its upstream's image, known once that is pinned and fresh, or in a cache (else the key
    stays unknown, and says so)."""
    frame = project.frames[_frame_name(project, name)]
    if frame.key is not None:
        return frame
    plan = plan_project(project, cache_dir, (frame.name,))
    return next(s.frame for s in plan.steps if s.frame.name == frame.name)


def input_mimes(project: Project, cache_dir: Path, frame: Frame) -> list[str]:
    """Each input image's media type by its first bytes (a JPEG file is not sent as PNG): a
    file's in the project, a frame's from its image in the cache; image/png when unknown."""
    cache = Cache(cache_dir, create=False)
    try:
        return [MIME.get(sniff(_head(project.loaded.root, cache, i)) or "", "image/png")
                for i in frame.inputs]
    finally:
        cache.close()


def _head(root: Path, cache: Cache, image: InputImage) -> bytes:
    if image.kind == "file":
        path = root / image.ref
    elif image.kind == "frame" and image.digest and cache.has_blob(image.digest):
        path = cache.blob_path(image.digest)
    else:
        return b""
    try:
        with path.open("rb") as handle:
            return handle.read(16)
    except OSError:
        return b""


def _read(project: Project, cache_dir: Path) -> AbstractContextManager[Workspace]:
    """The workspace read-only, without the remote (what is local is what these show)."""
    return Workspace.opened(project.loaded.root, cache_dir, project, create=False, offline=True)


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
        return [f"  key {key} and {frame.output} (sha256 {(step.digest or '')[:12]}) match "
                "nbpipe.lock"]
    out = []
    if locked is not None and locked.key != frame.key:
        out.append(f"  key: {locked.key[:12]} (locked) → {key}")
    elif locked is None:
        out.append(f"  key: {key} (nbpipe.lock has no entry for {frame.name})")
    if step.same_as:
        out.append(f"  the same request as {step.same_as}: sent once, this frame gets its image "
                   "for free")
    elif step.action == "restore":
        out.append(f"  a take of this key is in the cache (sha256 {(step.digest or '')[:12]}): "
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
    key = step.frame.key
    with _read(project, cache_dir) as space:
        takes = space.cache.takes(key) if key else []
        pinned = space.lock.entries.get(name)
    if not takes or not key:
        return f"{name}: no takes of its current request in the cache"
    lines = [f"takes of {name} (key {key[:12]}):"]
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


def pin(project: Project, cache_dir: Path, name: str, which: str, force: bool,
        note: Callable[[str], None] = to_stderr) -> str:
    """Pin an earlier take of FRAME (by number or digest prefix): free, from the cache; under
    the build lock, as every command that writes the cache, the lock or outputs."""
    root = project.loaded.root
    with build_lock(root / ".nbpipe", cache_dir, True, note):
        name = _frame_name(project, name)
        frame = _step(project, cache_dir, name).frame
        with Workspace.opened(root, cache_dir, project, offline=True) as space:
            return _pin(project, space, frame, name, which, force)  # _step: it has a key


def choose_take(takes: list[Take], which: str, name: str, flags: str = "") -> Take:
    """The take `which` names: its number in `takes`, or a digest prefix as `takes` prints it
    (`sha256:2d3b76544487`, the `sha256:` optional) that only one take has. Anything else is a
    usage error naming the candidates."""
    if which.isdigit() and 1 <= int(which) <= len(takes):
        return takes[int(which) - 1]
    prefix = which.strip().lower().removeprefix("sha256:")
    listed = "; ".join(f"{i} sha256:{t.digest[:12]}" for i, t in enumerate(takes, 1))
    hint = f"its takes: {listed}" if takes else f"`nbpipe takes{flags} {name}` lists them"
    if len(prefix) < 6 or any(c not in "0123456789abcdef" for c in prefix):
        raise UsageError(f"'{which}' is neither a take number of {name} (1 to {len(takes)}) "
                         "nor a digest prefix of 6 hex digits or more", hint)
    found = [(i, t) for i, t in enumerate(takes, 1) if t.digest.startswith(prefix)]
    if len(found) == 1:
        return found[0][1]
    if not found:
        raise UsageError(f"no take of {name} has a digest starting with '{which}'", hint)
    matching = ", ".join(f"{i} sha256:{t.digest[:16]}" for i, t in found)
    raise UsageError(f"'{which}' matches {len(found)} takes of {name}: {matching}",
                     "give more digits, or the take's number")


def _pin(project: Project, space: Workspace, frame: Frame, name: str, which: str,
         force: bool) -> str:
    cache, lock, state, key = space.cache, space.lock, space.state, frame.key or ""
    take = choose_take(cache.takes(key), which, name, project.flags)
    output = frame.output_for(take.format)  # a JPEG take is never written as .png
    current = state.output_digest(output)
    entry = lock.entries.get(name)
    if not output_is_ours(output, current, entry.digest if entry else None, key,
                          space.known()) and not force:
        raise UsageError(f"{output} was modified outside nbpipe",
                         "pass --force to overwrite it")
    if not write_output(cache, state, project.loaded.root, output, take.digest):
        raise UsageError(f"take {which} of {name} is missing or corrupt in the cache")
    cache.index.choose(key, take.digest)
    lock.entries[name] = LockEntry(key, output, take.digest, frame.backend,
                                   frame.model, float(Decimal(take.cost_usd)))
    lock.save(project.loaded.root)
    cache.record_pins(project.loaded.root, lock.pinned())
    state.set_fingerprint(None)
    state.save()
    return f"pinned {name} to sha256:{take.digest[:12]} and wrote {output}"
