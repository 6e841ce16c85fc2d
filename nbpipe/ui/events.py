"""What a build tells the user: one line per event as text, or JSON Lines with --json."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from decimal import Decimal
from typing import TextIO

from nbpipe.money import fmt_usd, usd
from nbpipe.plan.planner import Step


@dataclass
class Summary:
    """Counts of a build; `saved` is what cache hits would have cost to render."""

    rendered: int = 0
    restored: int = 0
    fresh: int = 0
    failed: int = 0
    skipped: int = 0
    left: int = 0  # outputs modified outside nbpipe, left alone
    spent: Decimal = Decimal(0)
    saved: Decimal = Decimal(0)
    interrupted: bool = False
    lost: int = 0  # tasks paid for whose image could not be fetched (counted apart from spent)
    lost_usd: Decimal = Decimal(0)
    maybe_billed: int = 0  # requests sent without idempotency whose outcome is unknown
    maybe_billed_usd: Decimal = Decimal(0)

    @property
    def noop(self) -> bool:
        return not (self.rendered or self.restored or self.failed or self.skipped or self.left
                    or self.lost or self.maybe_billed)

    def as_json(self) -> dict:
        return {"event": "summary", "rendered": self.rendered, "restored": self.restored,
                "fresh": self.fresh, "failed": self.failed, "skipped": self.skipped,
                "left": self.left, "spent_usd": usd(self.spent), "saved_usd": usd(self.saved),
                **({"lost": self.lost, "lost_usd": usd(self.lost_usd)} if self.lost else {}),
                **({"maybe_billed": self.maybe_billed,
                    "maybe_billed_usd": usd(self.maybe_billed_usd)} if self.maybe_billed else {})}

    def line(self) -> str:
        if self.noop:
            return f"nothing to do: {self.fresh} frame{'s' * (self.fresh != 1)} fresh"
        counts = [f"{self.rendered} rendered", f"{self.restored} restored", f"{self.fresh} fresh"]
        counts += [f"{n} {what}" for n, what in ((self.failed, "failed"), (self.skipped, "skipped"),
                                                 (self.left, "left alone")) if n]
        money = [f"spent USD {fmt_usd(self.spent)}"]
        if self.lost:
            money.append(f"lost USD {fmt_usd(self.lost_usd)} ({self.lost} paid image(s) gone)")
        if self.maybe_billed:
            money.append(f"possibly billed USD {fmt_usd(self.maybe_billed_usd)} "
                         f"({self.maybe_billed} request(s) with no reply)")
        return " · ".join(counts + money) + f" · saved USD {fmt_usd(self.saved)}"


class TextEvents:
    """Plain lines, one per frame that changed: good for CI logs and pipes."""

    def __init__(self, out: TextIO | None = None):
        self.out = out or sys.stdout

    def start(self, step: Step) -> None:
        pass

    def frame(self, status: str, step: Step, detail: str, output: str | None = None) -> None:
        if status != "fresh":
            print(f"{status:<9}{step.frame.name}  {detail}", file=self.out, flush=True)

    def note(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def summary(self, summary: Summary) -> None:
        print(summary.line(), file=self.out, flush=True)


class JsonEvents:
    """JSON Lines: one object per event, the last one the summary."""

    def __init__(self, out: TextIO | None = None):
        self.out = out or sys.stdout

    def _emit(self, doc: dict) -> None:
        print(json.dumps(doc, ensure_ascii=False), file=self.out, flush=True)

    def start(self, step: Step) -> None:
        self._emit({"event": "start", "frame": step.frame.name, "action": step.action})

    def frame(self, status: str, step: Step, detail: str, output: str | None = None) -> None:
        """`output`: the file written, when it is not the declared path (Gemini picks the
        format: a JPEG reply is written as .jpg)."""
        self._emit({"event": "frame", "frame": step.frame.name, "status": status,
                    "action": step.action, "reason": step.reason, "detail": detail,
                    "key": step.frame.key, "output": output or step.frame.output,
                    "cost_usd": usd(step.frame.cost if status == "rendered" else Decimal(0))})

    def note(self, text: str) -> None:
        self._emit({"event": "note", "message": text})

    def summary(self, summary: Summary) -> None:
        self._emit(summary.as_json())
