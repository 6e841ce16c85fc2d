"""The summary a build says of tasks it leaves out: counted (a provider that bills a failed task)
or due (one that bills only a task that lands: not in spent, counted by the collector)."""

from __future__ import annotations

from decimal import Decimal

from nbpipe.events import FrameDone, Status, Tally
from nbpipe.ui.events import frame_json


class Quiet:
    def emit(self, event: object) -> None:
        pass


def left(name: str, cost: str = "0", due: str = "0", status: Status = Status.LEFT) -> FrameDone:
    return FrameDone(name, status, "stopped mid-render", f"out/{name}.png", "fal",
                     "fal-ai/flux/dev", Decimal(cost), due=Decimal(due))


def summary_of(*events: FrameDone):
    tally = Tally(Quiet())
    for event in events:
        tally.emit(event)
    return tally.summary


def test_due_tasks_are_said_as_still_out_and_not_counted():
    summary = summary_of(left("a", due="0.025"), left("b", due="0.04"))
    assert (summary.spent, summary.left, summary.left_usd, summary.due_usd) == \
        (0, 2, Decimal("0.065"), Decimal("0.065"))
    assert "spent USD 0.00 · USD 0.065 in 2 task(s) still out, not counted until they land; " \
        "the next build collects them · saved" in summary.line()
    assert summary.as_json()["due_usd"] == summary.as_json()["left_usd"] == 0.065
    assert frame_json(left("a", due="0.025"))["due_usd"] == 0.025
    assert not summary.noop and summary.exit_code == 1


def test_counted_and_due_tasks_together_say_which_part_is_not_counted():
    summary = summary_of(left("a", cost="0.05"), left("b", due="0.025"),
                         left("c", due="0.04", status=Status.FAILED))  # a failed frame's task
    assert (summary.spent, summary.left_usd, summary.due_usd) == \
        (Decimal("0.05"), Decimal("0.075"), Decimal("0.065"))
    line = summary.line()
    assert "USD 0.075 in 2 task(s) still out; the next build collects them · USD 0.065 in " \
        "task(s) still out not counted until they land" in line, line
    assert "due_usd" not in frame_json(left("a", cost="0.05"))
