"""How plans and frames are printed: human tables and the JSON documents other tools read."""

from __future__ import annotations

import json

from nbpipe.plan.frame import Frame
from nbpipe.plan.planner import ACTIONS, Plan, Step, usd
from nbpipe.run.events import fmt_usd


def plan_table(plan: Plan) -> str:
    header = ("FRAME", "ACTION", "REASON", "BACKEND", "MODEL", "COST")
    rows = [header] + [(s.frame.name, s.action, s.reason, s.frame.backend, _model(s.frame),
                        fmt_usd(s.cost)) for s in plan.steps]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) if i < 5 else cell.rjust(w)
                       for i, (cell, w) in enumerate(zip(row, widths))).rstrip()
             for row in rows]
    return "\n".join(lines + [plan_totals(plan)])


def plan_totals(plan: Plan) -> str:
    counts = " · ".join(f"{plan.count(a)} {a}" for a in ACTIONS if plan.count(a))
    frames = len(plan.steps)
    return (f"{frames} frame{'s' if frames != 1 else ''}"
            f"{': ' + counts if counts else ''} · USD {fmt_usd(plan.cost)} to spend")


def _model(frame: Frame) -> str:
    resolution = frame.params.get("resolution")
    return f"{frame.model} {resolution}" if resolution else frame.model


def plan_json(plan: Plan) -> str:
    frames = [_step_json(s) for s in plan.steps]
    return json.dumps({"frames": frames, "summary": plan.summary()}, indent=2, ensure_ascii=False)


def _step_json(step: Step) -> dict:
    f = step.frame
    return {"frame": f.name, "target": f.target, "action": step.action, "reason": step.reason,
            "backend": f.backend, "model": f.model, "cost_usd": usd(step.cost), "key": f.key,
            "output": f.output}


def show_json(frame: Frame, endpoint: str, request: dict) -> str:
    return json.dumps({
        "frame": frame.name, "target": frame.target, "key": frame.key, "backend": frame.backend,
        "endpoint": endpoint, "model": frame.model, "params": frame.params,
        "cost_usd": usd(frame.cost), "output": frame.output,
        "inputs": [{"kind": i.kind, "ref": i.ref, "role": i.role, "sha256": i.digest}
                   for i in frame.inputs],
        "request": request}, indent=2, ensure_ascii=False)


def show_text(frame: Frame, endpoint: str, request: dict) -> str:
    key = frame.key or "(not yet known: an input has not been rendered)"
    lines = [f"frame    {frame.name}" + (f"  (target {frame.target})" if frame.target != frame.name else ""),
             f"key      {key}",
             f"backend  {frame.backend}: {endpoint}",
             f"model    {_model(frame)}  · USD {fmt_usd(frame.cost)} per image",
             f"output   {frame.output}"]
    for image in frame.inputs:
        digest = image.digest or "not rendered yet"
        lines.append(f"{image.role:<8} {image.kind} {image.ref}  sha256:{digest}")
    lines.append("request body:")
    lines.append(json.dumps(request, indent=2, ensure_ascii=False))
    return "\n".join(lines)
