"""Checks across frames, once each frame is resolved: the input graph (no cycle, no URL fetch
across backends) and unique frame names and output paths."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from nbpipe.manifest.declared import Declared
from nbpipe.manifest.source import Path
from nbpipe.plan import graph
from nbpipe.plan.findings import Findings
from nbpipe.plan.frame import Frame
from nbpipe.plan.targets import PlanKey, TargetPlan
from nbpipe.relpath import fold_path


def check_graph(all_plans: Mapping[PlanKey, TargetPlan | None], findings: Findings,
                uploads: bool, frames: Iterable[tuple[str, TargetPlan]]) -> None:
    """Backends that cannot fetch each other's images, and cycles between frames (`frames`:
    each frame's name and plan)."""
    plans: dict[str, TargetPlan] = {}  # per target: the first of its frames' plans
    for (name, _), plan in all_plans.items():
        if plan is not None:
            plans.setdefault(name, plan)
    needs: dict[tuple[str, str], Path] = {}  # (dependant, upstream) → where it is declared
    edges: dict[tuple[str, str], Path] = {}  # the same between frames
    for frame, plan in frames:  # every frame's inputs: they may follow a matrix value
        for image, path in plan.inputs:
            if image.kind == "frame":
                needs.setdefault((frame.split("/")[0], image.ref.split("/")[0]), path)
                edges.setdefault((frame, image.ref), path)
    for (name, upstream), path in needs.items():
        mine, theirs = plans.get(name), plans.get(upstream)
        if mine and theirs and mine.spec.transport == "url" and \
                theirs.backend != mine.backend and not uploads:
            findings.error(path, f"'{name}' renders on {mine.backend}, which fetches its input "
                           f"'{upstream}' by URL, but '{upstream}' renders on {theirs.backend}",
                           "render both on the same backend")
    needs = {pair: path for pair, path in needs.items() if pair[0] != pair[1]}
    cycle = graph.find_cycle(list(edges))
    if cycle:
        findings.error(edges[(cycle[0], cycle[1])], f"input cycle: {' -> '.join(cycle)}",
                       "an edit cannot depend on its own output")


def check_unique(declared: Declared, frames: list[Frame], findings: Findings) -> None:
    names: set[str] = set()
    for spec in declared.frames:
        if spec.target.broken:
            continue  # its names were checked with its own errors
        if spec.name in names:
            findings.error(spec.target.path, f"two frames are named '{spec.name}'",
                           "matrix values joined with '-' collide; make them distinct",
                           at_key=True)
            return
        names.add(spec.name)
    seen: dict[str, Frame] = {}
    for frame in frames:
        other = seen.setdefault(fold_path(frame.output), frame)  # as NTFS or APFS sees it
        if other is frame:
            continue
        setting = declared.targets[frame.target].params["output"]
        written = setting.path != ("defaults", "output") or declared.loaded.manifest.defaults.output
        if other.output == frame.output:
            findings.error(setting.path, f"frames '{other.name}' and '{frame.name}' both write "
                           f"'{frame.output}'", "put {frame} (or a matrix variable) in `output`")
        else:
            findings.error(setting.path if written else ("targets", frame.target),
                           f"frames '{other.name}' and '{frame.name}' write "
                           f"'{other.output}' and '{frame.output}', one file on macOS and "
                           "Windows", "their names differ only by case or Unicode form: make "
                           "the names differ in letters, not only in capitals or accents' form",
                           at_key=not written)
        return

