"""How `nbpipe batches` says the open jobs: a table, or JSON Lines."""

from __future__ import annotations

import json
from collections.abc import Sequence

from nbpipe.money import fmt_usd
from nbpipe.ops.batches import JobRow


def jobs_text(rows: Sequence[JobRow]) -> str:
    if not rows:
        return "no batch jobs open"
    table = [("JOB", "MODEL", "FRAMES", "STATE", "AGE", "COST")] + [
        (r.name, r.model, str(r.frames), r.state, _age(r.age), f"USD {fmt_usd(r.usd)}")
        for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))
                     .rstrip() for row in table)


def jobs_json(rows: Sequence[JobRow]) -> str:
    return "\n".join(json.dumps(r.as_json()) for r in rows)


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
