"""Which sink tells a build (JSON Lines, the live display on a terminal, plain lines), and
how `build --check` tells what it found: presentation, chosen at the command line."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable

from nbpipe.events import Note, Reporter
from nbpipe.money import fmt_usd
from nbpipe.plan.planner import Plan
from nbpipe.ui.events import JsonEvents, TextEvents


def sink_for(as_json: bool, total: int) -> Reporter:
    """JSON Lines with --json; the live display on a terminal; else one plain line a frame."""
    if as_json:
        return JsonEvents()
    if sys.stdout.isatty() and os.environ.get("TERM") != "dumb":  # a terminal's own word
        from nbpipe.ui.progress import LiveEvents

        return LiveEvents(total)
    return TextEvents()


def noted(sink: Reporter) -> Callable[[str], None]:
    """A note said through `sink` (a build that waits for another says so in its own stream)."""
    return lambda text: sink.emit(Note(text))


def say_check(plan: Plan, as_json: bool) -> bool:
    """Print what `build --check` found; whether anything is stale."""
    stale = [s for s in plan.steps if s.action != "fresh"]
    # under --shard only this shard's frames are checked: say so, and how many it left out
    sharded = f" of shard {plan.shard} ({plan.others} in other shards, not checked here)" \
        if plan.shard else ""
    if as_json:
        print(json.dumps({"event": "check", "fresh": len(plan.steps) - len(stale),
                          "stale": [{"frame": s.frame.name, "action": s.action,
                                     "reason": s.reason} for s in stale],
                          **({"shard": str(plan.shard), "other_shards": plan.others}
                             if plan.shard else {})}))
    elif stale:
        print(f"{len(stale)} of {len(plan.steps)} frames{sharded} not fresh "
              f"(a build would spend USD {fmt_usd(plan.cost)}):")
        width = max(len(s.frame.name) for s in stale)
        for s in stale:
            print(f"  {s.action:<8} {s.frame.name:<{width}}  {s.reason}")
    else:
        print(f"all {len(plan.steps)} frames{sharded} fresh")
    return bool(stale)
