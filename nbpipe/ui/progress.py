"""The live display on a terminal: one line per finished frame above a status panel (done/total,
restored, in flight, failed, spent, ETA, and the slowest frames still out)."""

from __future__ import annotations

import time
from decimal import Decimal

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from nbpipe.money import fmt_usd
from nbpipe.plan.planner import Step
from nbpipe.ui.events import Summary


class LiveEvents:
    def __init__(self, total: int, console: Console | None = None):
        self.console = console or Console()
        self.total = total
        self.started: dict[str, float] = {}
        self.durations: list[float] = []
        self.counts = {"rendered": 0, "restored": 0, "fresh": 0, "failed": 0, "skipped": 0,
                       "left": 0}
        self.spent = Decimal(0)
        self.live = Live(self._panel(), console=self.console, refresh_per_second=4,
                         transient=True, get_renderable=self._panel)
        self.live.start()

    def start(self, step: Step) -> None:
        self.started[step.frame.name] = time.monotonic()

    def frame(self, status: str, step: Step, detail: str, output: str | None = None) -> None:
        began = self.started.pop(step.frame.name, None)
        if began is not None and status == "rendered":
            self.durations.append(time.monotonic() - began)
            self.spent += step.frame.cost
        self.counts[status] = self.counts.get(status, 0) + 1
        if status != "fresh":
            colour = {"rendered": "green", "restored": "cyan", "failed": "red"}.get(status, "yellow")
            self.console.print(Text(f"{status:<9}", style=colour) + Text(f"{step.frame.name}  {detail}"))

    def note(self, text: str) -> None:
        self.console.print(text)

    def summary(self, summary: Summary) -> None:
        self.live.stop()
        self.console.print(summary.line())

    def _panel(self) -> Group:
        done = sum(self.counts.values())
        now = time.monotonic()
        line = Text(f"{done}/{self.total} frames · {self.counts['rendered']} rendered · "
                    f"{self.counts['restored']} restored · {len(self.started)} in flight · "
                    f"{self.counts['failed']} failed · spent USD {fmt_usd(self.spent)}"
                    f"{self._eta(done)}")
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
