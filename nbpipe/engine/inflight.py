"""Gemini requests in flight: sent, not yet answered, and possibly paid already.

A module of its own because these requests follow other rules than HiAPI tasks: Gemini has no
task and no idempotency, so a request sent is a request paid and a lost reply cannot be fetched
again. At Ctrl-C they are waited for (not cancelled with the rest); abandoned at a second
Ctrl-C, they are counted as possibly billed and their journal entries closed, so no later build
announces them again.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal

from nbpipe.money import fmt_usd
from nbpipe.plan.frame import Frame
from nbpipe.store.journal import Journal
from nbpipe.ui.events import Summary

SYNC_BACKENDS = {"gemini"}  # no task, no idempotency: a request sent is a request paid


class InFlight:
    """The Gemini requests of this build awaiting their reply: frame → price."""

    def __init__(self, journal: Journal, summary: Summary) -> None:
        self.journal, self.summary = journal, summary
        self.prices: dict[str, Decimal] = {}

    def __bool__(self) -> bool:
        return bool(self.prices)

    def __contains__(self, name: str) -> bool:
        return name in self.prices

    @contextmanager
    def sending(self, frame: Frame) -> Iterator[None]:
        """Around a render: a Gemini frame is in flight until it returns, however it ends."""
        if frame.backend in SYNC_BACKENDS:
            self.prices[frame.name] = frame.cost
        try:
            yield
        finally:
            self.prices.pop(frame.name, None)

    def text(self) -> str:
        cost = sum(self.prices.values(), Decimal(0))
        return f"{len(self.prices)} Gemini request(s) (USD {fmt_usd(cost)})"

    def abandon(self, why: str) -> None:
        for name in list(self.prices):  # close pops each one
            self.close(name, why)

    def close(self, name: str, why: str) -> None:
        # by name: a frame keyed on an upstream image has no key in the project's frames
        entry = next((e for e in self.journal.open.values()
                      if e.frame == name and e.backend in SYNC_BACKENDS), None)
        if entry is not None:
            self.journal.closed(entry.key, entry.take, why)
        cost = self.prices.pop(name, Decimal(0))
        self.summary.maybe_billed += 1
        self.summary.maybe_billed_usd += cost
