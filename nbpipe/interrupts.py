"""Ctrl-C before a build's event loop takes it over is never lost.

Python's default SIGINT handler raises KeyboardInterrupt wherever the main thread is, and when
that is inside a weakref callback or a __del__ (garbage collection runs them at any moment),
Python prints "Exception ignored" and goes on: the press is swallowed, and planning goes on to
send paid requests. So the entry point installs a handler that also remembers the press, and
the build asks before its event loop starts (asyncio then handles Ctrl-C itself: it takes over
SIGINT only from the default handler, which `take_over` puts back).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

_pressed = False


def _remember(signum: int, frame: FrameType | None) -> None:
    global _pressed
    _pressed = True
    raise KeyboardInterrupt


def install() -> None:
    """From the process start: every Ctrl-C is remembered as well as raised."""
    signal.signal(signal.SIGINT, _remember)


def take_over() -> None:
    """Hand SIGINT back to Python's default (for asyncio); raise KeyboardInterrupt if a press
    was swallowed on the way here."""
    if signal.getsignal(signal.SIGINT) is _remember:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if _pressed:
        raise KeyboardInterrupt


@contextmanager
def held() -> Iterator[None]:
    """Ctrl-C waits until the block is over (then it is raised): for a few steps that must
    happen together, such as saying a build's money and recording that it was said. The
    Python-level handler is swapped, not the signal mask: a signal sent to the process may be
    taken by any thread, and Python runs its handler in the main thread whichever did."""
    if threading.current_thread() is not threading.main_thread():
        yield  # Python handlers run in the main thread only: nothing to hold here
        return
    presses: list[int] = []
    before = signal.signal(signal.SIGINT, lambda signum, frame: presses.append(signum)) \
        or signal.default_int_handler  # None: a handler not set from Python
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)
    if presses:
        raise KeyboardInterrupt
