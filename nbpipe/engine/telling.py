"""How the engine says what became of a frame: one `FrameDone` per frame, with the money this
build reports for it.

A module of its own because a frame's cost is learnt where money moves (the renderer: a reply,
a lost image, a task left out) while its event is said where the frame ends (the scheduler):
the renderer records a `Charge`, and the frame's event takes it, whatever path ended it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from decimal import Decimal

from nbpipe.events import ZERO, Billing, FrameDone, FrameStarted, Status, Tally
from nbpipe.plan.frame import Frame
from nbpipe.plan.planner import Step


@dataclass(frozen=True)
class Charge:
    """Money a frame's request moved in this build, to be said with the frame's event."""

    cost: Decimal
    earlier: bool = False  # an interrupted build sent it and never reported it
    billing: Billing | None = None
    left: bool = False  # a paid task still out: the frame ends `left`
    due: Decimal = Decimal(0)  # a task still out counted only once it lands (FrameDone.due)


@dataclass
class Teller:
    tally: Tally
    charges: dict[str, Charge] = field(default_factory=dict)  # frame → its pending charge

    def charge(self, frame: str, charge: Charge) -> None:
        self.charges[frame] = charge

    def lost(self, frame: str) -> None:
        """The frame's paid image is gone: its charge is shown apart as lost."""
        charge = self.charges.get(frame)
        if charge is not None:
            self.charges[frame] = replace(charge, billing=Billing.LOST)

    def charged(self, frame: str) -> Charge | None:
        return self.charges.get(frame)

    def start(self, step: Step) -> None:
        self.tally.emit(FrameStarted(step.frame.name, step.action))

    def note(self, text: str) -> None:
        self.tally.note(text)

    def frame(self, step: Step, status: Status, detail: str, output: str | None = None,
              saved: Decimal = ZERO) -> None:
        """The frame's one event; a charge recorded for it goes with it (and may make it
        `left`: a paid task still out)."""
        frame = step.frame
        charge = self.charges.pop(frame.name, None)
        if charge is not None and charge.left and status is Status.FAILED:
            status = Status.LEFT
        self.tally.emit(FrameDone(
            frame.name, status, detail, output or frame.output, frame.backend, frame.model,
            charge.cost if charge else ZERO, step.action, step.reason, frame.key, saved,
            charge.billing if charge else None, charge.earlier if charge else False,
            lane=frame.lane, due=charge.due if charge else ZERO))

    def entry(self, frame: Frame, status: Status, detail: str, charge: Charge) -> None:
        """A journal entry no frame of this build stands for (an earlier build's request):
        its money is counted, the frame is not."""
        self.tally.emit(FrameDone(frame.name, status, detail, frame.output, frame.backend,
                                  frame.model, charge.cost, "recover", "", frame.key,
                                  billing=charge.billing, earlier=charge.earlier,
                                  journal=True, lane=frame.lane, due=charge.due))
