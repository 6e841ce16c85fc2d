"""`nbpipe report`: a static HTML contact sheet of the project (out/index.html + thumbnails).

One section per target in manifest order: a matrix as a grid with its axes as row and column
headers, variants side by side, an edit chain as a strip (base → edit → edit), each frame with
its model, resolution, cost, state and prompt, its takes side by side (the pinned one marked),
and the bible's text and identity markers beside its frames as a checklist. Thumbnails are made
with Pillow and kept by image digest, so a rebuilt report only makes the new ones. Links are
relative: the folder works from a checkout, a CI artifact or GitHub Pages.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from nbpipe.manifest.expand import name_part
from nbpipe.money import fmt_usd
from nbpipe.plan.planner import Project, Step
from nbpipe.projectfile import inside
from nbpipe.query.view import plan_project
from nbpipe.store.cache import Cache
from nbpipe.store.workspace import Workspace
from nbpipe.ui.page import Thumbs, asset, csp, environment, project_thumbs, write_page


@dataclass
class Card:
    name: str
    model: str
    cost: str
    state: str  # fresh | stale | missing | failed | blocked
    detail: str
    prompt: str
    bible: str
    thumb: str | None = None
    full: str | None = None
    takes: list[dict] = field(default_factory=list)


@dataclass
class Section:
    name: str
    kind: str  # single | matrix | variants | chain
    cards: list[Card]
    bible: dict | None = None
    rows: list[str] = field(default_factory=list)  # matrix: row headers
    columns: list[str] = field(default_factory=list)  # matrix: column headers
    grid: dict = field(default_factory=dict)  # (row, column) → Card
    corner: str = ""  # matrix: "row axis \ column axes"
    strip: list[Card] = field(default_factory=list)  # chain: upstreams, then this target


def write_report(project: Project, cache_dir: Path, out: Path) -> Path:
    """Write the report to `out` (an .html file) and its thumbnails beside it."""
    root = project.loaded.root
    page = out if out.is_absolute() else root / out
    plan = plan_project(project, cache_dir, ())
    with Workspace.opened(root, cache_dir, project, create=False, offline=True) as space:
        cache, lock, state = space.cache, space.lock, space.state
        thumbs = project_thumbs(root, page.parent / "report-thumbs", page.parent)
        failed = state.data.get("failed", {})
        cards = {s.frame.name: _card(s, project, cache, lock, failed, thumbs, page.parent)
                 for s in plan.steps}
        sections = [_section(name, project, cards) for name in project.targets()]
        seen: set[str] = set()
        for section in sections:  # the full paragraph once; later, its markers as a checklist
            if section.bible:
                section.bible["first"] = section.bible["name"] not in seen
                seen.add(section.bible["name"])
        totals = state.data.get("totals", {})
        pinned = sum((Decimal(str(e.cost_usd)) for e in lock.entries.values()), Decimal(0))
    css, css_source = asset("report.css")
    js, js_source = asset("report.js")
    html = environment().get_template("report.html.j2").render(
        css=css, js=js, policy=csp([css_source], [js_source], "'self'"),
        name=project.loaded.manifest.name or root.resolve().name, sections=sections,
        frames=len(cards), states=sorted({c.state for c in cards.values()}),
        bibles=sorted({c.bible for c in cards.values() if c.bible}),
        spent=fmt_usd(Decimal(totals.get("spent_usd", "0"))),
        saved=fmt_usd(Decimal(totals.get("saved_usd", "0"))), pinned=fmt_usd(pinned),
        lane=lane(project))
    return write_page(page, html)


def report_path(project: Project) -> Path:
    """Where the report goes by default: beside the outputs it shows, so a profile's or a
    backend override's report (`--backend preview`) never replaces the committed one."""
    section = project.declared.section
    return Path("out/index.html") if section is None else Path("out", section, "index.html")


def lane(project: Project) -> str | None:
    """What the page shows, when not the committed default: the profile, the backend forced."""
    declared = project.declared
    if declared.section is None:
        return None
    if declared.backend is None:
        return f"profile {declared.profile}"
    on = f"profile {declared.profile} on " if declared.profile else ""
    return f"{on}backend {declared.backend} (lock section {declared.section}, not the committed " \
        "images)"


def _card(step: Step, project: Project, cache: Cache, lock, failed: dict, thumbs: Thumbs,
          page_dir: Path) -> Card:
    frame = step.frame
    entry = lock.entries.get(frame.name)
    output = project.loaded.root / (entry.output if entry else frame.output)
    # an output committed as a link out of the project is neither read nor linked to
    on_disk = entry is not None and output.is_file() and inside(project.loaded.root, output)
    state, detail = _state(step, failed, on_disk)
    resolution = frame.params.get("resolution", "")
    card = Card(frame.name, f"{frame.model} {resolution}".strip(), fmt_usd(frame.cost), state,
                detail, frame.prompt, frame.bible or "")
    if on_disk:
        card.thumb = thumbs.of(entry.digest, output)
        card.full = _link(os.path.relpath(output, page_dir))
    for i, take in enumerate(cache.takes(frame.key) if frame.key else [], 1):
        thumb = thumbs.of(take.digest, cache.blob_path(take.digest))
        if thumb:
            card.takes.append({"n": i, "thumb": thumb, "digest": take.digest[:12],
                               "pinned": bool(entry and entry.digest == take.digest)})
    return card


def _state(step: Step, failed: dict, on_disk: bool) -> tuple[str, str]:
    if step.action == "fresh":
        return "fresh", "up to date"
    if step.frame.name in failed:
        return "failed", failed[step.frame.name]
    if step.action == "blocked":
        return "blocked", step.reason
    return ("stale" if on_disk else "missing"), step.reason


def _section(target: str, project: Project, cards: dict[str, Card]) -> Section:
    declared = project.declared.targets[target]
    mine = [c for name, c in cards.items() if project.frames[name].target == target]
    bible = project.declared.bibles.get(declared.bible) if declared.bible else None
    info = {"name": declared.bible, "text": bible.text, "markers": bible.markers} if bible else None
    if declared.matrix and not declared.variants:  # a cross product is listed, not a grid
        return _grid(target, declared.matrix, cards, mine, info)
    if declared.variants:
        return Section(target, "variants", mine, info)
    upstreams = _chain(mine[0].name, project) if mine else []
    if upstreams:
        return Section(target, "chain", mine, info, strip=[cards[u] for u in upstreams] + mine)
    return Section(target, "single", mine, info)


def _grid(target: str, matrix: dict, cards: dict, mine: list, info) -> Section:
    axes = list(matrix)
    rows = [name_part(v) for v in matrix[axes[0]]] if len(axes) > 1 else [axes[0]]
    rest = list(itertools.product(*(matrix[a] for a in axes[1:]))) if len(axes) > 1 \
        else [(v,) for v in matrix[axes[0]]]
    columns = ["-".join(name_part(v) for v in combo) for combo in rest]
    grid = {}
    for r, row_value in enumerate(matrix[axes[0]] if len(axes) > 1 else [None]):
        for c, combo in enumerate(rest):
            values = ([row_value] if row_value is not None else []) + list(combo)
            name = f"{target}/{'-'.join(name_part(v) for v in values)}"
            if name in cards:
                grid[(rows[r], columns[c])] = cards[name]
    corner = f"{axes[0]} \\ {' × '.join(axes[1:])}" if len(axes) > 1 else ""
    return Section(target, "matrix", mine, info, rows, columns, grid, corner)


def _chain(name: str, project: Project) -> list[str]:
    """Upstream frames of an edit, first the base: [base, edit 1] for edit 2."""
    chain: list[str] = []
    frame = project.frames[name]
    while frame.upstreams and frame.upstreams[0] not in chain:
        chain.insert(0, frame.upstreams[0])
        frame = project.frames[frame.upstreams[0]]
    return chain


def _link(path: str) -> str:
    """A relative link that can only be a path: `javascript:x.png` becomes `./javascript:x.png`."""
    return path if path.startswith(("./", "../")) else f"./{path}"
