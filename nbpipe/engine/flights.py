"""Single flight by key: within one build, identical requests (one key) are sent once.

A module of its own because the rule has three parties: the frame that sends the request (the
leader), frames with the same key that wait for its image (followers), and the recovery of an
earlier build's task under that key, which leads like a frame. Its corner cases (a leader that
brings no image, a recovery that brings none, a stop meanwhile) read more clearly apart from
the scheduler, which only asks: follow, skip, or send?
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from nbpipe.plan.frame import Frame
from nbpipe.store.cache import Take

STOPPED = "stopped"  # the flight brought nothing and the build has stopped: send nothing
EMPTY = "empty"  # another frame of this build sent the request and it brought no image


def key_of(frame: Frame) -> str:
    """The key of a frame about to be sent or written: decided, so it has one (a frame whose
    upstream is not built yet is never sent)."""
    if frame.key is None:
        raise ValueError(f"{frame.name}: no key yet")
    return frame.key


@dataclass(frozen=True)
class Landing:
    """The image a flight brought: a follower takes it instead of paying again."""

    take: Take
    leader: str  # the frame that sent it (or the earlier build's frame, for a recovery)
    recovered: bool  # paid by an earlier build
    resent: bool = False  # recovered by resending its create: paid by this build


class Flights:
    _flights: dict[str, asyncio.Future[Landing | None]]  # key → its one request
    _recovering: set[str]  # keys whose flight is a recovery

    def __init__(self) -> None:
        self._flights = {}
        self._recovering = set()

    def busy(self, key: str) -> bool:
        return key in self._flights

    def recovery(self, key: str) -> asyncio.Future[Landing | None]:
        """The flight of an earlier build's task: its result is a Landing, or None."""
        flight = self._flights[key] = asyncio.get_running_loop().create_future()
        self._recovering.add(key)
        return flight

    async def wait(self, key: str, stopped: Callable[[], object]) -> Landing | str | None:
        """Wait for the flight under `key`, if there is one: its Landing, STOPPED, EMPTY, or
        None when this frame is to send the request itself."""
        while (flight := self._flights.get(key)) is not None:
            result = await asyncio.shield(flight)
            if result is not None:
                return result
            if self._flights.get(key) is flight:
                if stopped():
                    return STOPPED
                if key not in self._recovering:
                    return EMPTY
                del self._flights[key]  # a recovery that brought nothing: send it anew
                self._recovering.discard(key)
        return None

    @contextmanager
    def lead(self, key: str) -> Iterator[None]:
        """This frame sends the request for `key`; followers get what `landed` records."""
        flight = self._flights[key] = asyncio.get_running_loop().create_future()
        try:
            yield
        finally:
            if not flight.done():
                flight.set_result(None)  # it brought nothing (`landed` was not called)

    def landed(self, key: str, take: Take, leader: str) -> None:
        flight = self._flights[key]
        if not flight.done():
            flight.set_result(Landing(take, leader, False))
