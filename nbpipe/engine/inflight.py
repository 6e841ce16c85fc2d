"""Requests of the call lane in flight: sent, not yet answered, and possibly paid already.

A module of its own because these requests follow other rules than tasks: a call (Gemini,
OpenAI) has
no task and no idempotency, so a request sent is a request paid and a lost reply cannot be
fetched again. At Ctrl-C they are waited for (not cancelled with the rest); abandoned at a
second Ctrl-C, they are charged to their frames as possibly billed and their journal entries
closed, so no later build announces them again.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal

from nbpipe.backends.registry import counted, unrepeatable
from nbpipe.engine.telling import Charge, Teller
from nbpipe.events import Billing
from nbpipe.money import fmt_usd
from nbpipe.plan.frame import Frame
from nbpipe.store.journal import Journal


@dataclass
class InFlight:
    """The call-lane requests of this build awaiting their reply: frame → price."""

    journal: Journal
    teller: Teller
    prices: dict[str, Decimal] = field(default_factory=dict)
    backends: dict[str, str] = field(default_factory=dict)  # frame → its backend

    def __bool__(self) -> bool:
        return bool(self.prices)

    def __contains__(self, name: str) -> bool:
        return name in self.prices

    @contextmanager
    def sending(self, frame: Frame, price: Decimal) -> Iterator[None]:
        """Around a render: a call is in flight until it returns, however it ends."""
        if unrepeatable(frame.backend):
            self.prices[frame.name] = price
            self.backends[frame.name] = frame.backend
        try:
            yield
        finally:
            self.prices.pop(frame.name, None)
            self.backends.pop(frame.name, None)

    def text(self) -> str:
        cost = sum(self.prices.values(), Decimal(0))
        calls = counted(self.backends[name] for name in self.prices)
        return f"{calls} request(s) (USD {fmt_usd(cost)})"

    def abandon(self, why: str) -> None:
        for name in list(self.prices):  # close pops each one
            self.close(name, why)

    def close(self, name: str, why: str) -> None:
        # by name: a frame keyed on an upstream image has no key in the project's frames
        entry = next((e for e in self.journal.open.values()
                      if e.frame == name and unrepeatable(e.backend)), None)
        if entry is not None:
            self.journal.closed(entry.key, entry.take, why, billed=True)
        cost = self.prices.pop(name, Decimal(0))
        self.teller.charge(name, Charge(cost, billing=Billing.MAYBE))
