"""The edit path's frames left as they are: those of the targets an edit of the manifest cannot
reach (plan/reach.py), proven fresh by the last complete build's fingerprint.

They are trusted only as that build left them: the lock read under the build lock must be the
very one the fingerprint names (another build may have run since the check), and no frame
planned now may write where a carried one does (the whole plan would refuse that). Otherwise
the whole project is planned, as if the edit path did not exist.
"""

from __future__ import annotations

from nbpipe.plan.planner import Project
from nbpipe.plan.reach import stem
from nbpipe.relpath import fold_path
from nbpipe.store.lock import Lock


def target_of(frame: str) -> str:
    """The target a frame name belongs to (`shoe/red` → `shoe`)."""
    return frame.partition("/")[0]


def carried_frames(project: Project, lock: Lock) -> list[str] | None:
    """The lock's frames the build keeps unplanned, in name order; None when the project must
    be planned whole instead."""
    if project.since is None:
        return []
    if lock.digest is None or lock.digest != project.since.get("lock"):
        return None
    carried = [name for name in lock.entries if target_of(name) in project.carried]
    # The last complete plan found no two outputs one file; only a path that is new since
    # (a new frame, an edited `output`) can meet a carried frame's.
    moved = [frame.output for frame in project.frames.values()
             if (pinned := lock.entries.get(frame.name)) is None or
             stem(pinned.output) != stem(frame.output)]
    if moved:
        theirs = {stem(fold_path(lock.entries[name].output)) for name in carried}
        if any(stem(fold_path(output)) in theirs for output in moved):
            return None
    return carried
