"""When the walk can do nothing more on its own: every frame left is waiting on another.

Frames on the batch lane are sent together, in as few jobs as can be: a job is created once no
frame of the walk can still join it, that is, when each frame not yet ended is parked (waiting
for its upstream, for another frame's identical request, or for a batch job). Counting instead
of waiting a while makes the grouping the same on a loaded machine as on an idle one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass
class Parking:
    """`active`: the walk's frames that may still make progress by themselves; `on_idle` is
    called each time that falls to 0 while some frame is parked."""

    on_idle: Callable[[], None] = lambda: None
    active: int = 0
    parked_now: int = 0

    def start(self, frames: int) -> None:
        self.active = frames

    @contextmanager
    def parked(self) -> Iterator[None]:
        self.active -= 1
        self.parked_now += 1
        if self.active == 0:
            self.on_idle()
        try:
            yield
        finally:
            self.active += 1
            self.parked_now -= 1

    def finished(self) -> None:
        """A frame of the walk has ended."""
        self.active -= 1
        if self.active == 0 and self.parked_now:
            self.on_idle()
