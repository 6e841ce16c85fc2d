"""What a build of some frames leaves behind it: the frames it did not select that depend on an
image it changed (an edit chain whose upstream `build --force 'catalog/*'` re-rendered), now
stale. Said once after such a build, so nobody ships an edit of the previous image unawares."""

from __future__ import annotations

from collections.abc import Iterable

from nbpipe.plan import graph
from nbpipe.plan.planner import Known, Project, make_plan


def stale_downstream(project: Project, known: Known, changed: Iterable[str],
                     selected: Iterable[str]) -> list[str]:
    """The frames outside `selected` downstream of `changed` that are not fresh now, in build
    order. Decided by the planner, as `nbpipe plan` would: an upstream re-rendered to identical
    bytes leaves its dependants fresh, and they are not named."""
    dependencies = project.dependencies()
    below = graph.dependants(dependencies, changed) - set(selected)
    if not below:
        return []
    wanted = graph.closure(dependencies, below)  # keyed on what their upstreams hold now
    plan = make_plan((f for name, f in project.frames.items() if name in wanted), known)
    return [s.frame.name for s in plan.steps if s.frame.name in below and s.action != "fresh"]
