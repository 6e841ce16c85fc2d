"""How `nbpipe which` prints what made an image file: lines for people, one JSON document for
tools."""

from __future__ import annotations

import datetime as dt
import json

from nbpipe.money import fmt_usd, usd
from nbpipe.query.which import Provenance


def _when(created: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(created, dt.UTC)


def which_text(file: str, digest: str, found: list[Provenance]) -> str:
    if not found:
        return (f"{file} (sha256:{digest[:12]}): not an image this cache holds; nbpipe did not "
                "make it here, or `nbpipe gc` has removed its take")
    lines = []
    for p in found:
        lines += [f"{file} (sha256:{digest[:12]})",
                  f"  frame    {p.frame or '(unknown)'}",
                  f"  take     {p.take}",
                  f"  key      {p.key}",
                  f"  backend  {p.backend}",
                  f"  model    {p.model}",
                  f"  lane     {p.lane}",
                  f"  built    {_when(p.created):%Y-%m-%d %H:%M:%S} UTC",
                  f"  cost     USD {fmt_usd(p.cost)}"]
        if p.task_id:
            lines.append(f"  task     {p.task_id}")
        lines.append(f"  prompt   {p.prompt if p.prompt is not None else '(not recorded)'}")
    return "\n".join(lines)


def which_json(file: str, digest: str, found: list[Provenance]) -> str:
    return json.dumps({"file": file, "sha256": digest, "takes": [{
        "frame": p.frame, "take": p.take, "key": p.key, "backend": p.backend, "model": p.model,
        "lane": p.lane, "prompt": p.prompt,
        "built": _when(p.created).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "cost_usd": usd(p.cost), "task_id": p.task_id} for p in found]},
        indent=2, ensure_ascii=False)
