"""What a frame ends up holding: restore from the cache or the remote cache, follow another
frame's request, write the output, pin it in the lock, and the cost the lock records.

A module of its own because writing is where a paid image meets the user's files: an output
nbpipe did not make is never replaced without --force (the image stays in the cache), and the
image is committed to the cache before anything here runs.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal

from nbpipe.catalog import STANDARD
from nbpipe.engine.flights import Landing, key_of
from nbpipe.engine.telling import Teller
from nbpipe.errors import FrameFailed
from nbpipe.events import Status
from nbpipe.files import SyncBatch
from nbpipe.plan.frame import Frame
from nbpipe.plan.planner import Project, Step, output_is_ours
from nbpipe.store.cache import Cache, Take
from nbpipe.store.known import StoreKnown
from nbpipe.store.lock import Lock, LockEntry
from nbpipe.store.outputs import write_output
from nbpipe.store.remote import Remote
from nbpipe.store.state import State


@dataclass
class Materializer:
    project: Project
    cache: Cache
    lock: Lock
    state: State
    remote: Remote | None
    known: StoreKnown
    teller: Teller
    remote_io: ThreadPoolExecutor  # parallel downloads from the remote cache
    force: bool = False
    pulled: frozenset[str] = frozenset()  # digests the remote served this build
    # outputs written this build: made durable by one sync before the lock names them
    batch: SyncBatch = field(default_factory=SyncBatch)

    def fresh(self, step: Step) -> str | None:
        frame = step.frame
        self.pin(frame, step.digest or "", self._locked_cost(frame), step.output)
        self.teller.frame(step, Status.FRESH, step.reason, step.output)
        return step.digest

    async def restore(self, step: Step) -> bool:
        """Restore from the cache (or the remote cache); False: not to be had, render it."""
        frame, digest = step.frame, step.digest or ""
        remote = digest in self.pulled or not self.cache.has_blob(digest)
        source = "the remote cache" if remote else "the cache"
        output = step.output or frame.output
        written = await self._fetch_remote(frame, digest) and self.write(frame, output, digest)
        if not written and self.remote is not None and not self.cache.has_blob(digest):
            # The copy found the blob damaged and removed it (a power cut before the sync that
            # makes pulled blobs durable, or a bad disk): the remote may hold it intact.
            source = "the remote cache"
            written = await self._fetch_remote(frame, digest) and \
                self.write(frame, output, digest)
        if not written:
            return False
        self.pin(frame, digest, self._take_cost(frame, digest), step.output)
        self.teller.frame(step, Status.RESTORED, f"{step.reason} · from {source}, free",
                          step.output, saved=frame.cost)
        return True

    def follow(self, step: Step, landing: Landing) -> str:
        """Identical requests in one build are sent once: this frame takes the image another
        frame (or the recovery of an earlier build's task) paid for; the money was said with
        that frame (or the recovery's entry)."""
        frame, take, leader = step.frame, landing.take, landing.leader
        output = frame.output_for(take.format)
        if not self.write(frame, output, take.digest):
            raise FrameFailed(f"the image of {leader} vanished from the cache while writing")
        self.pin(frame, take.digest, Decimal(take.cost_usd), output)
        if landing.recovered:
            self.teller.frame(step, Status.RENDERED,
                              f"the task an earlier build sent for {leader} · "
                              f"{'resent (paid by this build)' if landing.resent else 'free'}",
                              output)
        else:
            self.teller.frame(step, Status.RESTORED, f"same request as {leader} · free", output,
                              saved=frame.cost)
        return take.digest

    def rendered(self, step: Step, take: Take) -> str:
        """A paid image in the cache: write it to the frame's output and pin it."""
        frame = step.frame
        output = frame.output_for(take.format)
        if not self.write(frame, output, take.digest):  # paid, and not to be had
            self.teller.lost(frame.name)
            raise FrameFailed(f"the image of {frame.name} vanished from the cache while writing")
        self.pin(frame, take.digest, Decimal(take.cost_usd), output)
        where = f" as {output}" if output != frame.output else ""
        self.teller.frame(step, Status.RENDERED,
                          f"{step.reason} · {frame.backend} {frame.model}{where}", output)
        return take.digest

    def claimed(self, step: Step, take: Take) -> str:
        """The take another runner made of this frame's request while this build waited on
        its claim (engine/claiming.py): in the cache already; written and pinned, free."""
        frame = step.frame
        output = frame.output_for(take.format)
        if not self.write(frame, output, take.digest):
            raise FrameFailed(f"the image of {frame.name} vanished from the cache while writing")
        self.pin(frame, take.digest, Decimal(take.cost_usd), output)
        self.teller.frame(step, Status.RESTORED, f"{step.reason} · made by another runner "
                          "meanwhile · from the remote cache, free", output, saved=frame.cost)
        return take.digest

    async def _fetch_remote(self, frame: Frame, digest: str) -> bool:
        """A restore whose image came from the remote: download it if the batch before the build
        did not (verified), and index its take here so later builds know it even offline."""
        if self.remote is None:
            return self.cache.has_blob(digest)
        loop = asyncio.get_running_loop()
        if not self.cache.has_blob(digest) and not await loop.run_in_executor(
                self.remote_io, self.remote.fetch, digest, self.cache):
            return False
        key = key_of(frame)
        if digest not in {t.digest for t in self.cache.takes(key)}:
            found = await loop.run_in_executor(self.remote_io, self.remote.listing.take, key,
                                               digest)
            if found is not None:
                self.cache.add_take(key, found[1], found[0])
        return True

    def write(self, frame: Frame, output: str, digest: str) -> bool:
        """Write the image to `output`; False if the cache lacks it. `output` may not be the
        path `decide` checked (Gemini picks the format: a JPEG reply is written as .jpg), so
        it is checked here too: a file nbpipe did not make is never replaced without --force
        (the image stays in the cache, and the next build says what is in the way)."""
        if not self.force:
            pinned = self.lock.entries.get(frame.name)
            if not output_is_ours(output, self.state.output_digest(output),
                                  pinned.digest if pinned else None, key_of(frame), self.known):
                raise FrameFailed(f"a file not made by nbpipe is in the way: {output} (--force "
                                  "overwrites; the image is in the cache)")
        return write_output(self.cache, self.state, self.project.loaded.root, output, digest,
                            self.batch)

    def pin(self, frame: Frame, digest: str, cost: Decimal, output: str | None) -> None:
        self.lock.entries[frame.name] = LockEntry(
            key=key_of(frame), output=output or frame.output, digest=digest, backend=frame.backend,
            model=frame.model, cost_usd=float(cost), lane=self._lane_of(frame, digest))

    def _lane_of(self, frame: Frame, digest: str) -> str | None:
        """The lane the pinned take was sent on (None: standard), which its cost follows: the
        lock's word for a take it pins already, else the take's own, else the frame's."""
        key = key_of(frame)
        entry = self.lock.entries.get(frame.name)
        if entry and entry.key == key and entry.digest == digest:
            return entry.lane
        lane = next((t.lane for t in self.cache.takes(key) if t.digest == digest), frame.lane)
        return None if lane == STANDARD else lane

    def _locked_cost(self, frame: Frame) -> Decimal:
        entry = self.lock.entries.get(frame.name)
        return Decimal(str(entry.cost_usd)) if entry and entry.key == frame.key else frame.cost

    def _take_cost(self, frame: Frame, digest: str) -> Decimal:
        for take in self.cache.takes(key_of(frame)):
            if take.digest == digest:
                return Decimal(take.cost_usd)
        return self._locked_cost(frame)
