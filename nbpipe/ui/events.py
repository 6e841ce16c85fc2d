"""The build's event sinks: one line per event as text, or JSON Lines with --json.

They only format: the engine emits typed events (nbpipe/events.py) and the `Tally` there makes
the summary. `Summary` is re-exported here for the pages that show one.
"""

from __future__ import annotations

import json
import sys
from typing import TextIO

from nbpipe.events import BuildEnded, Event, FrameDone, FrameStarted, Note, Status, Summary
from nbpipe.money import usd

__all__ = ["JsonEvents", "Summary", "TextEvents", "frame_json"]


class TextEvents:
    """Plain lines, one per frame that changed: good for CI logs and pipes."""

    out: TextIO

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout

    def emit(self, event: Event) -> None:
        if isinstance(event, FrameDone):  # a journal entry's own event: its note said it
            if event.status is not Status.FRESH and not event.journal:
                self._print(f"{text_status(event):<9}{event.frame}  {event.detail}")
        elif isinstance(event, Note):
            self._print(event.text)
        elif isinstance(event, BuildEnded):
            self._print(event.summary.line())

    def _print(self, line: str) -> None:
        print(line, file=self.out, flush=True)


def text_status(event: FrameDone) -> str:
    """The word a line starts with: `kept` reads "left" in text, as it always did, and a task
    left out reads "out"."""
    return {Status.KEPT: "left", Status.LEFT: "out"}.get(event.status, str(event.status))


def frame_json(event: FrameDone) -> dict[str, object]:
    """A frame event as JSON: `cost_usd` is what this build reports for the frame; `due_usd`
    what a task it left out will cost if it lands (counted by the build that collects it)."""
    return {"event": "frame", "frame": event.frame, "status": str(event.status),
            "action": event.action, "reason": event.reason, "detail": event.detail,
            "key": event.key, "output": event.output, "backend": event.backend,
            "model": event.model, "lane": event.lane, "cost_usd": usd(event.cost),
            **({"billing": str(event.billing)} if event.billing else {}),
            **({"earlier": True} if event.earlier else {}),
            **({"journal": True} if event.journal else {}),
            **({"due_usd": usd(event.due)} if event.due else {})}


class JsonEvents:
    """JSON Lines: one object per event, the last one the summary."""

    out: TextIO

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout

    def emit(self, event: Event) -> None:
        if isinstance(event, FrameStarted):
            self._emit({"event": "start", "frame": event.frame, "action": event.action})
        elif isinstance(event, FrameDone):
            self._emit(frame_json(event))
        elif isinstance(event, Note):
            self._emit({"event": "note", "message": event.text})
        else:
            self._emit(event.summary.as_json())

    def _emit(self, doc: dict[str, object]) -> None:
        print(json.dumps(doc, ensure_ascii=False), file=self.out, flush=True)
