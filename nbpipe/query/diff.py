"""`nbpipe diff`: what changed between the lock committed at a git ref (BASE) and the working
tree, frame by frame, with the field-level reason, its root cause and what is still to pay.

A frame is *added* when BASE's lock has no entry for it, *removed* when BASE pinned it and the
manifest no longer declares it, *changed* when its key differs from the one BASE pinned (or the
same key now pins another take). Where it stands now comes from the plan against the working
tree: `rendered` (the working tree already holds its image), `restore` (a cache has it: free),
`render` (to pay), `blocked` (waits on an upstream, or an output modified outside nbpipe).
An added frame that takes the place of a removed one of the same target (a matrix value
renamed) is compared with it: its `before` is that frame's pin, its causes what changed.
The previous request behind BASE's key is read from the local, then the remote cache.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from decimal import Decimal
from functools import partial
from pathlib import Path

from nbpipe.plan.frame import Frame
from nbpipe.plan.planner import Project, Step
from nbpipe.plan.reasons import Change, changes, short_reason
from nbpipe.query.view import known_store, plan_with
from nbpipe.store import gitref, jsontext
from nbpipe.store.known import StoreKnown
from nbpipe.store.lock import LockEntry

STATES = {"fresh": "rendered", "restore": "restore", "render": "render", "blocked": "blocked"}


@dataclass(frozen=True)
class FrameDiff:
    """One frame that differs from BASE. `before` is BASE's pin; `after` the current frame
    (None when removed); `digest` the image it holds now or will be restored to."""

    name: str
    status: str  # added | removed | changed
    state: str  # rendered | restore | render | blocked | removed
    reason: str
    causes: tuple[str, ...] = ()
    details: tuple[str, ...] = ()
    before: LockEntry | None = None
    after: Frame | None = None
    digest: str | None = None
    output: str | None = None
    cost: Decimal = Decimal(0)  # what it still costs to render
    previous: dict | None = field(default=None, compare=False)  # BASE's request, when known
    replaces: str | None = None  # an added frame: the removed one it takes the place of


@dataclass(frozen=True)
class Diff:
    ref: str
    commit: str
    frames: list[FrameDiff]

    def count(self, status: str) -> int:
        return sum(1 for f in self.frames if f.status == status)

    @property
    def to_render(self) -> int:
        return sum(1 for f in self.frames if f.state == "render" or
                   (f.state == "blocked" and f.cost > 0))

    @property
    def cost(self) -> Decimal:
        return sum((f.cost for f in self.frames), Decimal(0))


def diff_project(project: Project, cache_dir: Path, base: str | None,
                 offline: bool = False) -> Diff:
    """The diff of the working tree against the lock committed at `base` (see the module)."""
    root = project.loaded.root
    ref = base or gitref.default_base(root)
    commit = gitref.resolve(root, ref)
    before = gitref.lock_at(root, commit, project.declared.section).entries
    with known_store(project, cache_dir, offline) as known:
        plan = plan_with(known, list(project.frames.values()),
                         prefetch=tuple(e.key for e in before.values()))
        found = [d for step in plan.steps if (d := _frame_diff(step, before, known))]
        removed = [FrameDiff(name, "removed", "removed", "no longer declared", before=entry,
                             previous=_usable(known.previous_request(entry.key)))
                   for name, entry in sorted(before.items()) if name not in project.frames]
    return Diff(ref, commit, [_successor(f, removed) for f in found] + removed)


def _successor(added: FrameDiff, removed: list[FrameDiff]) -> FrameDiff:
    """An added frame that takes the place of a removed one of its target (a matrix value or
    a variant renamed: shoe/blue → shoe/teal) says what changed against the closest of them."""
    frame = added.after
    if added.status != "added" or frame is None:
        return added
    candidates = [g for g in removed
                  if g.name.partition("/")[0] == frame.target and g.previous is not None]
    if not candidates:
        return added
    gone = min(candidates,
               key=lambda g: _distance(frame.vars, (g.previous or {}).get("vars") or {}))
    found = changes(frame, gone.previous or {})  # never empty: candidates have one
    causes = tuple(c.short for c in found if c.cause) or (short_reason(found),)
    return replace(added, reason=f"replaces {gone.name}", causes=causes,
                   details=(f"replaces {gone.name}", *(line for c in found for line in c.lines)),
                   before=gone.before, previous=gone.previous, replaces=gone.name)


def _frame_diff(step: Step, before: dict[str, LockEntry], known: StoreKnown) -> FrameDiff | None:
    frame = step.frame
    state = STATES[step.action]
    common = partial(FrameDiff, after=frame, digest=step.digest,
                     output=step.output or frame.output, cost=step.cost)
    old = before.get(frame.name)
    if old is None:
        return common(frame.name, "added", state, "new frame", ("new frame",))
    if old.key == frame.key:
        if step.digest is None or step.digest == old.digest:
            return None  # the same request pinned to the same image (or not on disk here)
        return common(frame.name, "changed", state, "another take pinned",
                      ("another take pinned",),
                      (f"take: sha256 {old.digest[:12]} → {step.digest[:12]}",), old)
    previous = _usable(known.previous_request(old.key))
    found = changes(frame, previous) if previous is not None else [Change(
        "request changed", ("the request BASE pinned is in neither cache: "
                            "the frame key differs from BASE's lock",), True)]
    causes = tuple(c.short for c in found if c.cause) or (short_reason(found),)
    details = tuple(line for c in found for line in c.lines)
    return common(frame.name, "changed", state, short_reason(found), causes, details, old,
                  previous=previous)


def _distance(now: dict, then: dict) -> int:
    """How many vars differ: cheap enough for every added × removed pair of a target."""
    return sum(1 for name in now.keys() | then.keys() if now.get(name) != then.get(name))


def _usable(request: object) -> dict | None:
    """A recorded request (a remote record is untrusted) in the shape `changes` reads, or None:
    a malformed one is a miss, like any corrupt cache entry."""
    if not isinstance(request, dict) or not jsontext.encodable(request):
        return None
    shapes = {"params": dict, "vars": dict, "sources": dict, "inputs": list, "prompt": str}
    if any(request.get(name) is not None and not isinstance(request[name], kind)
           for name, kind in shapes.items()):
        return None
    return request
