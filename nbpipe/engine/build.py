"""Doing it: restore or render each selected frame in DAG order, then pin the results.

What is paid for is safe before anything else happens: the image is committed to the cache and
indexed under its key before the output file is written or the lock is touched.

`Build` wires one build and ends it: the preflight plan (which backends it needs, what the
remote serves), then the walk (scheduler.py), then what it leaves on disk (finish.py). Beside
it: renderer.py (the never-pay-twice unit: journal, backend call, settle), materializer.py
(restore, follow, write, pin), recover.py (what earlier builds left in the journal), flights.py
(identical requests sent once), inflight.py (calls awaiting their reply), inputs.py (what a
request carries), telling.py (each frame's event and its money), stop.py (one stop value).
"""

from __future__ import annotations

import asyncio
import functools
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from decimal import Decimal

from nbpipe import interrupts
from nbpipe.backends import default_jobs, open_backend
from nbpipe.backends.base import Backend
from nbpipe.backends.names import NAMES
from nbpipe.engine.batches import BatchLane, batch_client
from nbpipe.engine.claiming import claimant_for
from nbpipe.engine.finish import (
    drop_undeclared,
    end_build,
    fingerprint_for,
    record_pins,
    remember_outcomes,
    save_lock,
    say_stale_downstream,
)
from nbpipe.engine.flights import Flights
from nbpipe.engine.inflight import InFlight
from nbpipe.engine.materializer import Materializer
from nbpipe.engine.parking import Parking
from nbpipe.engine.pusher import Pusher, pusher_for
from nbpipe.engine.recover import Recovery, entry_frame, report_unreported, say_kept
from nbpipe.engine.renderer import Backends, OpenBackend, Renderer
from nbpipe.engine.scheduler import Scheduler, said_at_end
from nbpipe.engine.stop import Stop
from nbpipe.engine.telling import Teller
from nbpipe.events import Reporter, Status, Summary, Tally
from nbpipe.files import SyncBatch
from nbpipe.plan.budget import Budget
from nbpipe.plan.frame import FORMAT_EXTENSIONS, Frame, format_of_path
from nbpipe.plan.planner import Project, Step, make_plan, output_is_ours
from nbpipe.settings import Settings, Shard, current
from nbpipe.store.batchlog import BATCHES, BatchLog
from nbpipe.store.cache import Cache
from nbpipe.store.journal import Journal, project_mark
from nbpipe.store.known import StoreKnown
from nbpipe.store.lock import Lock
from nbpipe.store.pinned import Pins, fetch_pinned
from nbpipe.store.prices import list_prices
from nbpipe.store.remote import Remote, remote_url
from nbpipe.store.state import State


@dataclass
class BuildOptions:
    patterns: tuple[str, ...] = ()
    force: bool = False
    backend: str | None = None
    jobs: int | None = None  # frames in flight per backend; None: the manifest's or the default
    max_cost: Decimal | None = None  # None: the manifest's max_cost, if any
    fail_fast: bool = False
    grace: float | None = None  # seconds to keep collecting tasks after Ctrl-C (calls in
    # flight are waited for); None: the settings' interrupt_grace
    offline: bool = False  # never touch the remote cache
    trust_prices: bool = False  # measure the budget in the manifest's `pricing:` as it stands
    remote_errors: str = "fail"  # "render": pay for a frame even when the remote may hold it
    profile: str | None = None
    wait: bool = True  # wait for batch jobs (False: --no-wait, their frames end pending)
    shard: Shard | None = None  # build only this shard's frames (nbpipe/plan/shards.py)


@dataclass
class Build:
    """One build. `events`: where what it says goes (a Reporter; the Tally in front of it
    makes the summary). `open_backend`: how a backend is opened (name, jobs, rpm), injected
    so the engine runs against a scripted backend in tests; `backends`: ones already open."""

    project: Project
    cache: Cache
    lock: Lock
    state: State
    journal: Journal
    events: Reporter
    options: BuildOptions
    remote: Remote | None = None
    backends: dict[str, Backend] = field(default_factory=dict)
    open_backend: OpenBackend | None = None  # None: the registry's, given `settings`
    settings: Settings = field(default_factory=current)  # the command's, parsed at the edge
    tally: Tally = field(init=False)
    stop: Stop = field(default_factory=Stop)
    walk: Scheduler = field(init=False)
    decided: dict[str, Step] = field(default_factory=dict)  # the preflight's steps to keep
    pulled: frozenset[str] = frozenset()  # digests the remote served this build
    written: SyncBatch = field(default_factory=SyncBatch)  # all made durable before the lock
    carried: list[str] = field(default_factory=list)  # fresh, not planned (engine/carried.py)

    def __post_init__(self) -> None:
        self.tally = Tally(self.events)

    def run(self) -> Summary:
        frames, others = self.project.share(self.options.patterns, self.options.shard)
        self.tally.summary.other_shards = others  # not failed, not fresh: another runner's
        self.tally.summary.fresh += len(self.carried)
        pinned = {name: entry.digest for name, entry in self.lock.entries.items()}
        self._sweep(frames)
        opened = Backends(self.open_backend or self._open, self._jobs, self._rpm,
                          dict(self.backends), self.state.durations)
        self._preflight(frames, opened)
        self._say_remote()
        with ExitStack() as stack:  # every thread pool closes here, however the build ends
            remote_io = stack.enter_context(ThreadPoolExecutor(16,
                                                               thread_name_prefix="nbpipe-pull"))
            self.walk = self._scheduler(opened, remote_io)
            try:
                try:
                    interrupts.take_over()  # a Ctrl-C swallowed while planning stops us here
                    with asyncio.Runner() as runner:
                        runner.run(self._walk(frames, opened))
                except asyncio.CancelledError:
                    self.stop.interrupted = True
                self._report_left()  # only when the summary will be said: it reports them
            except KeyboardInterrupt:  # pressed before the event loop began (the CLI says it)
                self.stop.interrupted = True
                raise
            finally:
                self._finish(frames)
        for said in said_at_end(self.walk.budget, self.stop):
            self.tally.note(said)
        if self.options.patterns and not self.stop.interrupted:  # dependants it did not select
            say_stale_downstream(self.project, StoreKnown(self.lock, self.cache, self.state),
                                 frames, self.lock, pinned, self.tally)
        # only now are the journal's marks and the totals recorded: a build that dies first
        # said nothing, and the next build says its money
        return end_build(self.tally, self.journal, self.state, self.stop.interrupted)

    async def _walk(self, frames: list[Frame], opened: Backends) -> None:
        try:
            await self.walk.walk(frames)
        finally:
            await opened.aclose()

    def _scheduler(self, opened: Backends, remote_io: ThreadPoolExecutor) -> Scheduler:
        options = self.options
        teller = Teller(self.tally)
        flights = Flights()
        budget = Budget(_cap(options, self.project), list_prices(self.cache.root),
                        options.trust_prices)
        inflight = InFlight(self.journal, teller)
        renderer = Renderer(self.project, self.cache, self.journal, self.remote, opened, budget,
                            teller, inflight, options.force)
        renderer.batch = batch_lane(self, opened, teller)
        renderer.pusher = pusher_for(self.remote, self._remote_url(), self.cache, self.state,
                                     self.project.frames.values(), self.lock, self.tally)
        if isinstance(renderer.pusher, Pusher):  # claims are released as takes are pushed
            renderer.claimant = claimant_for(self.remote, self.settings.claim_lease,
                                             self.tally.note, lambda: self.stop.why)
            renderer.pusher.claims = renderer.claimant.leases if renderer.claimant else None
        known = StoreKnown(self.lock, self.cache, self.state, self.remote)
        materializer = Materializer(self.project, self.cache, self.lock, self.state,
                                    self.remote, known, teller, remote_io, options.force,
                                    self.pulled, self.written)
        recovery = Recovery(self.journal, self.project.catalog, budget, flights, renderer,
                            teller, self.stop, self.settings.recover_timeout)
        # first: what this build ends from here on waits for its own summary
        report_unreported(self.journal, renderer, teller, self.project.catalog)
        recovery.announce_unknown()
        say_kept(self.journal, teller)
        slots = {b: asyncio.Semaphore(self._jobs(b)) for b in self._backend_names()}
        grace = self.settings.interrupt_grace if options.grace is None else options.grace
        return Scheduler(renderer, materializer, recovery, teller, self.stop, flights, inflight,
                         budget, slots, known, self.remote, grace, options.force,
                         options.fail_fast, options.remote_errors, self.decided,
                         renderer.batch.parking)

    def _backend_names(self) -> set[str]:
        """Every backend a frame or a journal entry of this build may send to."""
        return set(NAMES) | {f.backend for f in self.project.frames.values()} | \
            {e.backend for e in self.journal.open.values()}

    def _say_remote(self) -> None:
        if self.remote is None or not self.remote.unreachable:
            return
        self.tally.note(f"remote: unreachable ({self.remote.unreachable}); restoring from the "
                        "local cache; " + ("frames to render are paid for even if the remote "
                        "may hold them (--remote-errors=render)"
                        if self.options.remote_errors == "render" else
                        "frames to render wait (retry later, or --remote-errors=render)"))

    def _sweep(self, frames: list[Frame]) -> None:
        """Partial files of a killed build (we hold the build locks: nothing else writes)."""
        self.cache.sweep()
        root = self.project.loaded.root
        # each folder once, made a Path once: a Path a frame was 50 ms of a 10,000-frame build
        for folder in [root / parent for parent in {f.output.rpartition("/")[0] for f in frames}]:
            for partial in folder.glob(".*.part") if folder.is_dir() else ():
                partial.unlink(missing_ok=True)

    def _open(self, name: str, jobs: int, rpm: int | None) -> Backend:
        return open_backend(name, jobs, rpm, self.settings)

    def _jobs(self, backend: str) -> int:
        limits = self.project.loaded.manifest.limits.get(backend)
        declared = limits.jobs if limits and limits.jobs else default_jobs(backend)
        return self.options.jobs or declared  # -j says it outright; the manifest is the default

    def _rpm(self, backend: str) -> int | None:
        limits = self.project.loaded.manifest.limits.get(backend)
        return limits.rpm if limits else None

    def _preflight(self, frames: list[Frame], opened: Backends) -> None:
        """Plan once up front: open the backends it will render on, so a missing one stops the
        build before anything happens; frames with no upstream keep this decision."""
        known = StoreKnown(self.lock, self.cache, self.state, self.remote)
        served = prefetch(self.remote, frames, known, self.written, self.options.force) \
            if self.remote is not None else frozenset()
        plan = make_plan(frames, known, lambda frame: self.options.force)
        if self.remote is not None:
            self.pulled = pull(self.remote, self.cache, known, plan.steps, self.written, served)
        self.decided.update({s.frame.name: s for s in plan.steps if not s.frame.upstreams})
        needed = {s.frame.backend for s in plan.steps
                  if s.action == "render" or (s.action == "blocked" and s.frame.key is None)}
        for name in sorted(needed):
            opened.get(name)

    def _finish(self, frames: list[Frame]) -> None:
        """Pin what was built, drop frames no longer declared, and remember file stats."""
        walk = self.walk
        drop_undeclared(self.lock, self.project.frames, self.state, self.tally, self.carried)
        remember_outcomes(self.state, frames, walk.failed)
        save_lock(self.lock, self.project.loaded.root, self.written)
        close_batches(walk.renderer.batch, self.journal, self.tally)
        pusher = walk.renderer.pusher
        if pusher is not None:
            pusher.finish(self.tally, self.stop.interrupted)
        if walk.renderer.claimant is not None:  # pushed or not, no claim outlives the build
            walk.renderer.claimant.close()
        record_pins(self.cache, self.project.loaded.root, self.lock, self.tally)
        _remember(self, frames, pusher)

    def _report_left(self) -> None:
        """Requests this build sent that are still out and no frame's event said (a frame
        cancelled before it could): reported here, once, so no build reports them twice."""
        renderer = self.walk.renderer
        for slot in sorted(renderer.mine & set(self.journal.open)):
            entry = self.journal.open[slot]
            frame = entry_frame(entry, self.project.catalog)
            if not entry.reported and renderer.left_out(frame, entry):
                charge = self.walk.teller.charges.pop(frame.name)
                self.walk.teller.entry(frame, Status.LEFT, "still out as the build ended",
                                       charge)
        # A frame cancelled after its task was charged and marked reported (Ctrl-C past the
        # grace) says no event of its own: its charge is said here, or no build would say it.
        for name, charge in list(self.walk.teller.charges.items()):
            cancelled = self.project.frames.get(name) or next(
                (entry_frame(e, self.project.catalog) for e in self.journal.open.values()
                 if e.frame == name), None)
            if cancelled is not None:
                del self.walk.teller.charges[name]
                self.walk.teller.entry(cancelled, Status.LEFT, "still out as the build ended",
                                       charge)

    def _remote_url(self) -> str | None:
        return remote_url(self.project.loaded.manifest.cache.remote)


def _remember(build: Build, frames: list[Frame], pusher: object) -> None:
    """What the next build reads of this one (state.json): the task durations it learned and
    the no-op fingerprint."""
    for name, learned in build.walk.renderer.backends.durations().items():
        build.state.set_durations(name, learned)
    build.state.set_fingerprint(fingerprint_for(
        build.project, build.lock, build.state, frames,
        (build.options.backend, build.options.profile), build._remote_url(),
        _complete(build, frames, pusher), build.carried))
    try:
        build.state.save()
    except OSError:
        pass  # only a cache of file stats: the next build re-reads the files


def _complete(build: Build, frames: list[Frame], pusher: object) -> bool:
    """Whether the no-op fast path may trust this build's outcome."""
    # Complete from each frame's outcome, never from counters: an interrupted frame has
    # none. Open journal entries keep the fast path off until they are collected, and so
    # does work left for the remote (a push not done, a catch-up not yet possible).
    settled = getattr(pusher, "settled", None)
    return not build.options.patterns and not build.options.force and \
        not build.stop.interrupted and not build.journal.open and \
        (settled is None or settled()) and len(frames) == len(build.project.frames) and \
        all(build.walk.outcomes.get(f.name) and f.name in build.lock.entries for f in frames)


def batch_lane(build: Build, opened: Backends, teller: Teller) -> BatchLane:
    """This build's batch lane: its jobs' log beside the journal, each backend's batch client
    made once, when first needed, its jobs named for this project."""
    clients = functools.cache(lambda name: batch_client(opened.get(name)))
    return BatchLane(BatchLog(build.journal.path.with_name(BATCHES)), clients, opened.account,
                     build.stop, teller.note, Parking(), build.options.wait,
                     build.settings.batch_poll_interval, build.options.force,
                     project_mark(build.project.loaded.root), build.settings.batch_settle)


def close_batches(lane: BatchLane | None, journal: Journal, tally: Tally) -> None:
    """Say the batch jobs this build leaves running, and compact their log."""
    if lane is not None:
        left = lane.close()
        if left:
            names = ", ".join(left[:4]) + (" …" if len(left) > 4 else "")
            one = len(left) == 1
            tally.note(f"{len(left)} batch job{'' if one else 's'} keep{'s' if one else ''} "
                       f"running ({names}); `nbpipe build` collects {'it' if one else 'them'} "
                       "(`nbpipe batches` lists them)")
        lane.log.close(set(journal.open))


def prefetch(remote: Remote, frames: list[Frame], known: StoreKnown, written: SyncBatch,
             force: bool) -> frozenset[str]:
    """What planning needs of the remote, by key, in concurrent batches: the blob of each pin
    this build restores, its take proven by the blob's own reply (store/pinned.py); the other
    pins' records read by name; the other keys listed. Returns the digests downloaded."""
    keys = [f.key for f in frames if f.key and not known.cache.takes(f.key)]
    pinned = {e.key: e.digest for e in known.lock.entries.values()}
    if force:  # every frame renders: no take is restored
        remote.prefetch_takes(keys, pinned)
        return frozenset()
    served = fetch_pinned(remote, pinned_restores(frames, keys, known), known.cache, written)
    remote.listing.list_keys([k for k in keys if k not in pinned])
    served |= fetch_pinned(remote, listed_restores(remote, frames, keys, pinned, known),
                           known.cache, written)
    remote.prefetch_takes(keys, pinned)  # what is left: records read by name
    return served


def pinned_restores(frames: list[Frame], keys: list[str], known: StoreKnown) -> Pins:
    """key → (pinned digest, the frame's request) of each frame of `keys` (no take of it
    here) pinned to its own key whose output the plan restores that image to if the remote
    proves the pin (planner.decide: the path the lock's format names, not holding it, and
    nbpipe's to replace): never a frame already fresh, nor one blocked."""
    here, wanted, pins = _here(known), set(keys), {}
    for frame in frames:
        entry = known.locked(frame.name)
        if frame.key in wanted and entry is not None and entry.key == frame.key and \
                _replaceable(frame, {frame.output_for(format_of_path(entry.output) or "")},
                             entry.digest, entry.digest, here):
            pins[frame.key] = (entry.digest, frame.record())
    return pins


def listed_restores(remote: Remote, frames: list[Frame], keys: list[str],
                    pinned: dict[str, str], known: StoreKnown) -> Pins:
    """key → (digest, the frame's request) of each frame of `keys` no lock entry names whose
    key the remote holds one take of (listed: a record is under the key): the take the plan
    restores (planner.decide, the key's best take) when its output, under whichever format
    the take turns out to have (Frame.output_for: the format is known only from the reply),
    neither holds it nor is in the way; proven by its blob's metadata, or else its record."""
    here, wanted, pins = _here(known), set(keys) - set(pinned), {}
    for frame in frames:
        entry = known.locked(frame.name)
        if frame.key in wanted and len(found := remote.listing.known(frame.key)) == 1 and \
                _replaceable(frame, {frame.output_for(f) for f in FORMAT_EXTENSIONS},
                             digest := next(iter(found)), entry.digest if entry else None,
                             here):
            pins[frame.key] = (digest, frame.record())
    return pins


def _here(known: StoreKnown) -> StoreKnown:
    """What this machine knows alone: asking the remote a frame at a time is what the
    preflight's batches avoid."""
    return StoreKnown(known.lock, known.cache, known.state)


def _replaceable(frame: Frame, paths: set[str], digest: str, pinned: str | None,
                 here: StoreKnown) -> bool:
    """Whether the plan writes `digest` to the frame's output (at any of `paths`) once the
    remote proves it: none holds it already (fresh), and each is nbpipe's to replace by what
    this machine knows (planner.output_is_ours). A file only the remote could vouch for is
    left to the plan, which restores it afterwards (by name) or blocks it, downloading
    nothing first."""
    key = frame.key or ""
    return all((current := here.output_digest(path)) != digest and
               output_is_ours(path, current, pinned, key, here) for path in paths)


def pull(remote: Remote, cache: Cache, known: StoreKnown, steps: list[Step],
         written: SyncBatch, served: frozenset[str] = frozenset()) -> frozenset[str]:
    """The images of the restores only the remote has, downloaded in one concurrent batch
    (durable at the `written` sync) unless `served` before the plan (store/pinned.py), and
    their takes indexed in one transaction, so later builds know them offline; returns their
    digests."""
    pulled = frozenset(s.digest for s in steps if s.action == "restore" and s.digest and
                       (s.digest in served or known.remote_only(s.digest)))
    remote.fetch_many(sorted(pulled - served), cache, written)
    found = [(key, pair[1], pair[0]) for s in steps
             if (key := s.frame.key) and (digest := s.digest) in pulled and cache.has_blob(digest)
             and (pair := remote.listing.take(key, digest)) is not None]
    if found:
        cache.index.add_takes(found)
    return pulled


def _cap(options: BuildOptions, project: Project) -> Decimal | None:
    """What the build may spend: --max-cost says it outright; else the manifest's max_cost."""
    if options.max_cost is not None:
        return options.max_cost
    declared = project.loaded.manifest.max_cost
    return Decimal(str(declared)) if declared is not None else None
