"""The live display formats the typed events; its running totals are counted as the tally
counts them (events.count), never by a rule of its own."""

from __future__ import annotations

import io
from decimal import Decimal

from rich.console import Console

from nbpipe.events import BuildEnded, FrameDone, FrameStarted, Status, Tally
from nbpipe.ui.progress import LiveEvents

EVENTS = [
    FrameDone("a", Status.RENDERED, "new frame", "out/a.png", "hiapi", "Nano-Banana",
              Decimal("0.05")),
    FrameDone("b", Status.RENDERED, "collected a task an earlier build left", "out/b.png",
              "hiapi", "Nano-Banana", Decimal("0.05"), earlier=True),
    FrameDone("c", Status.RESTORED, "from the cache", "out/c.png", "hiapi", "Nano-Banana",
              saved=Decimal("0.05")),
    FrameDone("x", Status.FAILED, "a request of a crashed build", "out/x.png", "gemini",
              "gemini-3.1-flash-image", Decimal("0.067"), journal=True),
]


def test_the_live_panel_says_what_the_summary_says():
    out = io.StringIO()
    live = LiveEvents(3, Console(file=out, width=200, force_terminal=False))
    tally = Tally(live)
    tally.emit(FrameStarted("a", "render"))
    for event in EVENTS:
        tally.emit(event)
    panel = live._panel().renderables[0].plain
    summary = tally.summary
    assert (summary.spent, summary.spent_earlier) == (Decimal("0.117"), Decimal("0.05"))
    assert panel.startswith("3/3 frames · 2 rendered · 1 restored · 0 in flight · 0 failed · "
                            "spent USD 0.117"), panel
    live.emit(BuildEnded(summary))
