"""A reply a fake holds back until the test lets it go: the moment between a request arriving
(and being billed) and its reply, made as long as a test needs, with no clock involved.

    fake.pause_create.arm(); start a build; assert fake.pause_create.wait_arrived(60);
    kill it; fake.pause_create.release()

It holds the next request that reaches it only (`arm` again for another).
"""

from __future__ import annotations

import threading

LIMIT = 120.0  # a test that never releases must not hang a server thread for ever


class Pause:
    def __init__(self) -> None:
        self._armed = False
        self._arrived = threading.Event()
        self._released = threading.Event()
        self._lock = threading.Lock()

    def arm(self) -> None:
        """Hold the next request that reaches this pause."""
        with self._lock:
            self._armed = True
            self._arrived.clear()
            self._released.clear()

    def hold(self) -> bool:
        """Called by a fake's handler after the request took effect: True if it was held (the
        reply is then lost: the client it was for has been killed or has given up)."""
        with self._lock:
            if not self._armed:
                return False
            self._armed = False
        self._arrived.set()
        self._released.wait(LIMIT)
        return True

    def wait_arrived(self, timeout: float = 60.0) -> bool:
        return self._arrived.wait(timeout)

    def release(self) -> None:
        with self._lock:
            self._armed = False
        self._released.set()
