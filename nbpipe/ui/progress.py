"""The live display on a terminal: one line per finished frame above a status panel (done/total,
restored, in flight, failed, spent, ETA, and the slowest frames still out). It formats the typed
events; the money it shows is the events' own cost (the Tally's, never recomputed)."""

from __future__ import annotations

import time

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from nbpipe.events import BuildEnded, Event, FrameDone, FrameStarted, Note, Status, Summary, count
from nbpipe.money import fmt_usd
from nbpipe.ui.events import text_status

COLOURS = {Status.RENDERED: "green", Status.RESTORED: "cyan", Status.FAILED: "red"}


class LiveEvents:
    console: Console
    total: int
    started: dict[str, float]
    durations: list[float]
    running: Summary  # so far, counted as the tally counts (events.count)
    live: Live

    def __init__(self, total: int, console: Console | None = None) -> None:
        self.console = console or Console()
        self.total = total
        self.started = {}
        self.durations = []
        self.running = Summary()
        self.live = Live(self._panel(), console=self.console, refresh_per_second=4,
                         transient=True, get_renderable=self._panel)
        self.live.start()

    def emit(self, event: Event) -> None:
        if isinstance(event, FrameStarted):
            self.started[event.frame] = time.monotonic()
        elif isinstance(event, FrameDone):
            self._frame(event)
        elif isinstance(event, Note):
            self.console.print(event.text)
        elif isinstance(event, BuildEnded):
            self.live.stop()
            self.console.print(event.summary.line())

    def _frame(self, event: FrameDone) -> None:
        began = self.started.pop(event.frame, None)
        if began is not None and event.status is Status.RENDERED:
            self.durations.append(time.monotonic() - began)
        count(self.running, event)
        if event.status is not Status.FRESH and not event.journal:
            colour = COLOURS.get(event.status, "yellow")
            self.console.print(Text(f"{text_status(event):<9}", style=colour)
                               + Text(f"{event.frame}  {event.detail}"))

    def _panel(self) -> Group:
        s = self.running
        done = s.rendered + s.restored + s.fresh + s.failed + s.skipped + s.kept + s.left
        now = time.monotonic()
        line = Text(f"{done}/{self.total} frames · {s.rendered} rendered · {s.restored} "
                    f"restored · {len(self.started)} in flight · {s.failed} failed · spent USD "
                    f"{fmt_usd(s.spent)}{self._eta(done)}")
        slow = sorted(self.started.items(), key=lambda item: item[1])[:3]
        table = Table.grid(padding=(0, 2))
        for name, began in slow:
            table.add_row(Text(f"  {now - began:5.0f} s", style="dim"), name)
        return Group(line, table)

    def _eta(self, done: int) -> str:
        if not self.durations or not self.started:
            return ""
        left = self.total - done
        average = sum(self.durations) / len(self.durations)
        parallel = max(1, len(self.started))
        return f" · ETA {average * left / parallel:.0f} s"
