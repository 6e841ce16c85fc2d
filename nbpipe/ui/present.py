"""How plans and frames are printed: human tables and the JSON documents other tools read."""

from __future__ import annotations

import json
from decimal import Decimal

from nbpipe.catalog import STANDARD
from nbpipe.money import fmt_usd, usd
from nbpipe.plan.frame import Frame
from nbpipe.plan.planner import ACTIONS, Plan, Step

PLAN_JSON_VERSION = 1  # of `plan --json`'s shape: raised when a field changes or goes


def plan_table(plan: Plan) -> str:
    """One row per frame; a LANE column where any frame is sent on a lane other than standard
    (COST is that lane's price)."""
    lanes = any(s.frame.lane != STANDARD for s in plan.steps)
    header = ("FRAME", "ACTION", "REASON", "BACKEND", "MODEL", *(("LANE",) * lanes), "COST")
    rows = [header] + [(s.frame.name, s.action, s.reason, s.frame.backend, _model(s.frame),
                        *((s.frame.lane,) * lanes), fmt_usd(s.cost)) for s in plan.steps]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    last = len(header) - 1
    lines = ["  ".join(cell.ljust(w) if i < last else cell.rjust(w)
                       for i, (cell, w) in enumerate(zip(row, widths, strict=True))).rstrip()
             for row in rows]
    return "\n".join(lines + [plan_totals(plan)])


def plan_totals(plan: Plan) -> str:
    counts = " · ".join(f"{plan.count(a)} {a}" for a in ACTIONS if plan.count(a))
    frames = len(plan.steps)
    sharded = f" · {plan.others} in other shards (this is shard {plan.shard})" \
        if plan.shard else ""
    return (f"{frames} frame{'s' if frames != 1 else ''}"
            f"{': ' + counts if counts else ''} · USD {fmt_usd(plan.cost)} to spend{sharded}")


def _model(frame: Frame) -> str:
    resolution = frame.params.get("resolution")
    return f"{frame.model} {resolution}" if resolution else frame.model


def plan_json(plan: Plan) -> str:
    frames = [_step_json(s) for s in plan.steps]
    return json.dumps({"version": PLAN_JSON_VERSION, "frames": frames, "summary": plan.summary()},
                      indent=2, ensure_ascii=False)


def _step_json(step: Step) -> dict:
    f = step.frame
    return {"frame": f.name, "target": f.target, "action": step.action, "reason": step.reason,
            "backend": f.backend, "model": f.model, "lane": f.lane, "cost_usd": usd(step.cost),
            "key": f.key,
            "output": f.output}


def show_json(frame: Frame, endpoint: str, request: dict) -> str:
    return json.dumps({
        "frame": frame.name, "target": frame.target, "key": frame.key, "backend": frame.backend,
        "endpoint": endpoint, "model": frame.model, "params": frame.params, "lane": frame.lane,
        "cost_usd": usd(frame.cost), "output": frame.output,
        "inputs": [{"kind": i.kind, "ref": i.ref, "role": i.role, "sha256": i.digest,
                    "sha256_of": "url" if i.kind == "url" else "image"} for i in frame.inputs],
        "request": request}, indent=2, ensure_ascii=False)


def show_text(frame: Frame, endpoint: str, request: dict) -> str:
    key = frame.key or "(not yet known: an input has not been rendered)"
    target = f"  (target {frame.target})" if frame.target != frame.name else ""
    lines = [f"frame    {frame.name}{target}",
             f"key      {key}",
             f"backend  {frame.backend}: {endpoint}",
             f"model    {_model(frame)}  · USD {fmt_usd(frame.cost)} per image"
             + (f" on the {frame.lane} lane" if frame.lane != STANDARD else ""),
             f"output   {frame.output}"]
    for image in frame.inputs:
        if image.kind == "url":  # its bytes are never fetched: the key follows the URL's text
            lines.append(f"{image.role:<8} url {image.ref}  (contents not tracked; "
                         f"the key hashes the URL: sha256:{(image.digest or '')[:12]})")
            continue
        digest = image.digest or "not rendered yet"
        lines.append(f"{image.role:<8} {image.kind} {image.ref}  image sha256:{digest}")
    lines.append("request body:")
    lines.append(json.dumps(request, indent=2, ensure_ascii=False))
    return "\n".join(lines)


def compare_table(plans: dict[str, Plan]) -> str:
    """Per-frame cost under each profile, and the totals: `plan --compare draft,production`."""
    names = list(plans)
    frames = [s.frame.name for s in next(iter(plans.values())).steps]
    cost = {n: {s.frame.name: s.cost for s in p.steps} for n, p in plans.items()}
    rows = [("FRAME", *names)]
    rows += [(f, *(fmt_usd(cost[n].get(f, Decimal(0))) for n in names)) for f in frames]
    rows.append(("TOTAL", *(fmt_usd(plans[n].cost) for n in names)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                               for i, (c, w) in enumerate(zip(row, widths, strict=True)))
                     for row in rows)


def compare_json(plans: dict[str, Plan]) -> str:
    return json.dumps({name: {"frames": [_step_json(s) for s in p.steps], "summary": p.summary()}
                       for name, p in plans.items()}, indent=2, ensure_ascii=False)


def price_hints(catalog, plan: Plan) -> list[str]:
    """Where the same model costs less at an equal or higher tier (HiAPI prices some 2K below
    1K)."""
    hints = []
    paying: dict[tuple[str, str, str, str], int] = {}
    for step in plan.steps:
        resolution = step.frame.params.get("resolution")
        if resolution and step.cost > 0:
            slot = (step.frame.backend, step.frame.model, resolution, step.frame.lane)
            paying[slot] = paying.get(slot, 0) + 1
    for (backend, model, resolution, lane), count in paying.items():
        spec = catalog.get(backend, model)
        price = {r: spec.price(r, lane) for r in spec.resolutions}  # on the frames' own lane
        now = price[resolution]
        higher = spec.resolutions[spec.resolutions.index(resolution) + 1:]
        cheaper = [r for r in higher if price[r] < now]
        if cheaper:
            best = min(cheaper, key=price.__getitem__)
            saving = (now - price[best]) * count
            hints.append(f"{model} at {best} costs USD {fmt_usd(price[best])}, less than at "
                         f"{resolution} (USD {fmt_usd(now)}): `resolution: {best}` would save "
                         f"USD {fmt_usd(saving)} on {count} frame{'s' * (count != 1)}")
    return hints
