"""Claims, as a build uses them: before a paid request goes out, its frame key is claimed on
the team remote; a key another runner holds is waited for, its take restored when that runner
pushes it, instead of paid for again.

Never forever: a claim whose holder stops renewing it (its runner died) is taken over once its
lease lapses, and a claim released with no take (its request failed) is claimed anew. Never an
image lost: a claim only decides who sends; every take still goes to the cache and the remote
as before. The worst case, a runner killed with a request out, costs that request twice: the
runner taking over cannot know whether it was sent. A remote that fails while claims are in
use turns them off for the rest of the build (said once): the frames are sent unclaimed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TypeVar

from nbpipe.errors import BuildStopped
from nbpipe.store.cache import Cache, Take
from nbpipe.store.claims import ClaimStore, Leases
from nbpipe.store.remote import Remote

T = TypeVar("T")
MIN_LEASE = 0.5  # seconds: a lease of 0 would renew without pause and lapse at once
Found = Callable[[str], Awaitable[T | None]]  # a digest on the remote → its take, restored

POLL_MIN_MS = 50  # a waiter's shortest pause between two looks at the remote


@dataclass
class Claimant:
    """This runner's claims on one remote (`claim` before sending, `failed` when a request
    brought nothing; the pusher releases a claim once its take is on the remote)."""

    store: ClaimStore
    leases: Leases
    note: Callable[[str], None]  # says a warning, once
    stopped: Callable[[], str | None] = lambda: None  # why the build sends nothing new now
    off: str | None = None  # why claims are off for this build (None: on, or not yet probed)
    probed: bool = False
    _probing: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def poll(self) -> float:
        """Seconds between looks at a key another runner holds."""
        return max(POLL_MIN_MS / 1000, min(self.store.lease / 10, 2.0))

    async def claim(self, key: str, found: Found[T]) -> T | None:
        """None: this runner holds the key's claim now (send the request). Else the take of
        `key` another runner made, as `found` restored it: nothing to send."""
        if not await self._on():
            return None
        try:
            return await self._claim(key, found)
        except BuildStopped:
            raise
        except Exception as exc:  # the remote is away: send unclaimed rather than wait
            self._turn_off(f"the remote failed ({type(exc).__name__}: {str(exc)[:80]})")
            return None

    async def _claim(self, key: str, found: Found[T]) -> T | None:
        seen: tuple[str, float] | None = None  # the claim's ETag, and since when we see it
        free = True  # worth a create-only write: no claim seen yet, or the one seen went
        while True:
            if why := self.stopped():  # stopped while waiting: nothing new is sent
                raise BuildStopped(why)
            etag = await _io(self.store.create, key) if free else None
            if etag is None and seen is not None and \
                    time.monotonic() - seen[1] >= self.store.lease:
                etag = await _io(self.store.renew, key, seen[0])  # lapsed: take it over
                seen = None
            if etag is not None:
                await _io(self.leases.hold, key, etag)
                take = await self._landed(key, found)  # pushed between our plan and our claim
                if take is not None:
                    await _io(self.leases.release, key)
                return take
            take = await self._landed(key, found)
            if take is not None:
                return take
            current = await _io(self.store.look, key)
            free = current is None
            if current is None:
                continue  # released with no take (its request failed): claim it
            if seen is None or seen[0] != current:
                seen = (current, time.monotonic())  # renewed: its runner lives
            await asyncio.sleep(self.poll)

    async def _landed(self, key: str, found: Found[T]) -> T | None:
        for digest in await _io(self.store.takes, key):
            take = await found(digest)
            if take is not None:
                return take
        return None

    def failed(self, key: str) -> None:
        """The request of `key` brought no image: a runner waiting for it claims it now
        (released off the event loop: a remote that does not answer takes seconds)."""
        try:
            asyncio.get_running_loop().run_in_executor(None, self.leases.release, key)
        except RuntimeError:  # no loop running: release here
            self.leases.release(key)

    def close(self) -> None:
        self.leases.close()

    async def _on(self) -> bool:
        async with self._probing:
            if not self.probed:
                self.probed = True
                try:
                    why = await _io(self.store.probe)
                except Exception as exc:
                    why = f"the probe failed ({type(exc).__name__}: {str(exc)[:80]})"
                if why:
                    self._turn_off(why)
        return self.off is None

    def _turn_off(self, why: str) -> None:
        if self.off is None:
            self.off = why
            self.leases.abandon()
            self.note(f"warning: remote: claims are off ({why}); another runner building the "
                      "same frames now may pay for them too")


@contextmanager
def freed_on_failure(claimant: Claimant | None, key: str) -> Iterator[None]:
    """Release the key's claim if the request in this block brings no image (else the pusher
    releases it once the take is on the remote)."""
    try:
        yield
    except BaseException:
        if claimant is not None:
            claimant.failed(key)
        raise


async def peer_take(remote: Remote | None, cache: Cache, key: str, digest: str) -> Take | None:
    """A take of `key` another runner pushed, into the cache (verified) with its record; None
    if it cannot be had (its blob is missing or corrupt: then it is no take to wait for)."""
    if remote is None:
        return None
    if not await _io(remote.fetch, digest, cache):
        return None
    remote.listing.added(key, digest)  # its records are read again: this one is new
    for take, request in await _io(remote.takes, key):
        if take.digest == digest:
            cache.add_take(key, request, take)
            return take
    return None


async def _io(call: Callable[..., T], *args: object) -> T:
    return await asyncio.get_running_loop().run_in_executor(None, call, *args)


def claimant_for(remote: Remote | None, lease: float, note: Callable[[str], None],
                 stopped: Callable[[], str | None] = lambda: None) -> Claimant | None:
    """The claims of a build on `remote` (None: no remote, no claims); probed, and said if they
    are off, when the build first sends."""
    if remote is None:
        return None
    store = ClaimStore(remote, max(lease, MIN_LEASE))
    return Claimant(store, Leases(store), note, stopped)
