"""What earlier builds left in the journal: paid tasks to collect, lost requests to own.

A build killed, interrupted or rebuilt with a changed manifest may leave requests it paid for
and never collected. This module is the one place that turns those journal entries back into
work: each HiAPI task (or create whose reply was lost) is collected into the cache, for free,
concurrently within the build's -j and within one time bound for all of them
(NBPIPE_RECOVER_TIMEOUT); each Gemini request whose reply never came (and each fal submit
that no request id came back for) is announced, counted as possibly billed and reserved against
the budget before anything is sent again. The scheduler
only starts it and lets frames with the same key follow its flights. It sends through the
renderer, the one never-pay-twice unit, and says the money of each entry once: an entry no
earlier build reported (it died) is "paid by an interrupted build", one it reported costs 0.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from decimal import Decimal

from nbpipe.backends.base import Job
from nbpipe.backends.registry import resumable, spec, unfindable, unrepeatable
from nbpipe.catalog import Catalog
from nbpipe.engine.entries import entry_frame as entry_frame  # build.py reads it here
from nbpipe.engine.entries import on_its_lane
from nbpipe.engine.flights import Flights, Landing
from nbpipe.engine.renderer import Renderer, left_charge
from nbpipe.engine.stop import Stop
from nbpipe.engine.telling import Teller
from nbpipe.errors import ImageLost, NbpipeError, TaskFailed
from nbpipe.events import Billing, Status
from nbpipe.money import fmt_usd
from nbpipe.plan.budget import Budget
from nbpipe.plan.frame import Frame
from nbpipe.store.cache import Take
from nbpipe.store.journal import Entry, Journal, project_mark

RECOVER_TIMEOUT = 300.0  # seconds for collecting what earlier builds left, all tasks together


@dataclass
class Recovery:
    journal: Journal
    catalog: Catalog  # the project's: prices as the manifest states them
    budget: Budget
    flights: Flights
    renderer: Renderer
    teller: Teller
    stop: Stop
    bound: float = RECOVER_TIMEOUT  # seconds for all of them (Settings.recover_timeout)
    _tried: set[tuple[str, int]] = field(default_factory=set)  # entries already tried
    _foreign: set[tuple[str, int]] = field(default_factory=set)  # another key's creates, said
    _aside: set[tuple[str, int]] = field(default_factory=set)  # entries set aside, said

    def announce_unknown(self) -> None:
        """Calls an earlier build sent and never heard back from (kill -9, a crash), and
        creates it sent without an idempotency key and no id came back for: they may have been
        billed and can never be found. Say so, count them, and only then send again."""
        unknown = [e for e in self.journal.open.values()  # this account's: another's is left
                   if maybe_sent(e) and e.belongs_to(self.renderer.backends.account(e.backend))]
        for backend in sorted({e.backend for e in unknown}):
            self._announce([e for e in unknown if e.backend == backend])

    def _announce(self, unknown: list[Entry]) -> None:
        frames = [entry_frame(e, self.catalog) for e in unknown]
        cost = sum((self.renderer.budget.measure(f) for f in frames), Decimal(0))
        names = ", ".join(sorted({e.frame for e in unknown})[:8])
        self.teller.note(f"{len(unknown)} {spec(unknown[0].backend).shown} request(s) were "
                         f"in flight when an earlier build stopped ({names}): they may have been "
                         f"billed (USD {fmt_usd(cost)}); frames still needed are sent again")
        for entry, frame in zip(unknown, frames, strict=True):
            charge = self.renderer.owed(entry, frame, Billing.MAYBE)
            self.journal.closed(entry.key, entry.take, "outcome unknown after a crash", True)
            self.teller.entry(frame, Status.FAILED, "in flight when an earlier build stopped: "
                              "it may have been billed", charge)
            self.budget.owe(frame)  # the cap covers what may be spent

    async def collect(self, slots: dict[str, asyncio.Semaphore], after: bool = False) -> None:
        """Collect every task an earlier build created but never collected (a crash, Ctrl-C, a
        changed manifest): it is paid for, so its image belongs in the cache. Concurrently,
        within the build's -j, and within a total time bound: what is still out then stays in
        the journal for the next build. `after`: once the frames are done, the tasks they left
        (a bad download), even under a key a frame sent."""
        # after the walk, a batch entry no frame sent is collected (a frame fresh on another take)
        frames = self.renderer.sent_keys if after else self.renderer.frames()
        entries = self._sendable(self._ours([e for e in self.journal.open.values()
                                             if _collectable(e, frames)
                                             and (e.key, e.take) not in self._tried]), after)
        if not entries or self.stop:
            return
        bound = self.bound
        flights = []
        for entry in entries:
            if self.flights.busy(entry.key) and not after:
                continue  # a frame of this build is already sending this key
            self._tried.add((entry.key, entry.take))
            flights.append((entry, self.flights.recovery(entry.key)))
        try:
            async with asyncio.timeout(bound):
                await asyncio.gather(*(self._collect_one(e, f, slots) for e, f in flights))
        except TimeoutError:
            out = [e for e, _ in flights if (e.key, e.take) in self.journal.open]
            self.teller.note(f"{len(out)} task(s) of earlier builds still out after {bound:.0f} "
                             "s; they stay in the journal and the next build collects them")
            self._still_out(out)
        finally:
            for _, flight in flights:
                if not flight.done():
                    flight.set_result(None)

    def _still_out(self, entries: list[Entry]) -> None:
        """Tasks no build reported yet (their build died, or left them uncounted) are this
        build's to report: counted, or said as due (`left_charge`)."""
        for entry in entries:
            frame = entry_frame(entry, self.catalog)
            charge = self.renderer.owed(entry, frame, left=True)
            if charge.cost and (entry.key, entry.take) not in self.renderer.left:
                self.renderer.left.add((entry.key, entry.take))
                charge = left_charge(self.journal, entry, charge)
                self.teller.entry(frame, Status.LEFT, "a task of an earlier build, still out; "
                                  "counted when it lands" if charge.due else
                                  "a task of an interrupted build, still out", charge)

    def _ours(self, entries: list[Entry]) -> list[Entry]:
        """The entries this build may try. One sent with another API key (a cache shared by
        projects with different keys, or a rotated key) is tried only if it has a task: a
        poll is free, and answers if the key is of the same account; its create is never
        resent (under another account it would be a new, paid task). Said once. With no key
        for its backend, no account is known: the entry is tried, and says why it waits."""
        accounts = {backend: self.renderer.backends.account(backend)
                    for backend in {e.backend for e in entries}}
        ours: list[Entry] = []
        theirs: list[Entry] = []
        for entry in entries:
            account = accounts[entry.backend]
            mine = account is None or entry.belongs_to(account)
            (ours if mine or entry.task_id else theirs).append(entry)
        new = [e for e in theirs if (e.key, e.take) not in self._foreign]
        if new:
            self._foreign |= {(e.key, e.take) for e in new}
            names = ", ".join(sorted({e.frame for e in new})[:8])
            self.teller.note(f"{len(new)} create(s) of earlier builds in this cache were sent "
                             f"with another API key ({names}): left for a build with that key "
                             "to collect")
        return ours

    def _sendable(self, entries: list[Entry], after: bool) -> list[Entry]:
        """The entries this build may act on (the journal sits in a cache others may write): a
        create is resent only if its body is one a frame of this build makes now; a task is
        polled (free) unless it claims one of this build's keys for another request. The rest
        are set aside for the build that made them, and said at the end."""
        frames = self.renderer.frames()
        keep: list[Entry] = []
        aside: list[Entry] = []
        for entry in entries:
            frame = frames.get(entry.key)
            ok = entry.task_id is not None if frame is None else \
                self.renderer.sendable(entry, frame)
            (keep if ok else aside).append(entry)
        if after:
            aside = abandon_own(aside, {f.name for f in frames.values()}, self.renderer,
                                self.journal, self.teller, self.catalog)
        new = [e for e in aside if (e.key, e.take) not in self._aside]
        if after and new:
            self._aside |= {(e.key, e.take) for e in new}
            names = ", ".join(sorted({e.frame[:60] for e in new})[:8])
            self.teller.note(f"{len(new)} journal entr{'y' if len(new) == 1 else 'ies'} this "
                             f"project does not make ({names}): not resent; left in the "
                             "journal for the project that made them")
        return keep

    async def _collect_one(self, entry: Entry, flight: asyncio.Future[Landing | None],
                           slots: dict[str, asyncio.Semaphore]) -> None:
        own = self.renderer.frames().get(entry.key)  # the budget measures what is sent
        frame = on_its_lane(own, entry, self.catalog) if own else entry_frame(entry, self.catalog)
        what = f"task {entry.task_id}" if entry.task_id else "a create whose reply was lost"
        if frame.request.key != entry.key:  # the Idempotency-Key would differ: a new payment
            self.teller.note(f"{what} of an earlier build of {entry.frame}: its journal record "
                             "does not match its key; left alone")
            return flight.set_result(None)
        take = None
        async with slots[entry.backend]:
            if self.stop or (entry.task_id is None and  # a resend may be a first create
                             not self.budget.reserve(frame)):
                return flight.set_result(None)
            try:
                take = await self._resume(entry, frame, what, None if own else entry.request)
            except asyncio.CancelledError:
                flight.set_result(None)
                raise
        flight.set_result(Landing(take, entry.frame, True, _resent(self.renderer, entry)) if take
                          else None)
        if take is not None:
            payer = "resent (paid by this build)" if _resent(self.renderer, entry) else \
                "paid for by an earlier build"
            self.teller.note(f"recovered {entry.frame}: the image of task {take.task_id}, "
                             f"{payer}, is in the cache")

    async def _resume(self, entry: Entry, frame: Frame, what: str,
                      record: dict[str, object] | None) -> Take | None:
        """Re-attach to the entry's task (or resend its create byte for byte): its image, or
        None with the reason said and the entry closed where no image will come of it."""
        slot = (entry.key, entry.take)
        job = Job(take=entry.take, lane=entry.lane, wait=False, resume_task=entry.task_id,
                  body=entry.body,
                  on_task=lambda task_id: self.journal.task(entry.key, entry.take, task_id),
                  on_created=lambda: self.renderer.created.add(slot))
        self.renderer.resends(entry)
        try:
            take = await self.renderer.fetch(frame, [], job, record)
        except TaskFailed as exc:
            self.journal.failed(entry.key, entry.take)
            self.teller.note(f"{what} of an earlier build of {entry.frame} failed: {exc}")
        except ImageLost as exc:
            if not entry.belongs_to(self.renderer.backends.account(entry.backend)):
                self.teller.note(f"{what} of an earlier build of {entry.frame} was sent with "
                                 "another API key and is not this account's: left for a build "
                                 "with that key to collect")  # its own key may still see it
                return None
            lost = self.renderer.lost(entry, frame, f"{entry.frame}: {exc}")
            self.teller.entry(frame, Status.FAILED, f"lost: {exc}", lost)
        except (NbpipeError, OSError) as exc:
            self.teller.note(f"{what} of an earlier build of {entry.frame} is still out: {exc}")
        else:
            charge = self.renderer.owed(entry, frame)  # after: a new task is this build's
            if charge.cost:
                said = "resent (paid by this build) a create an earlier build journalled" \
                    if _resent(self.renderer, entry) else "collected a task an earlier build left"
                self.teller.entry(frame, Status.RENDERED, said, charge)
            return take
        return None


def abandon_own(aside: list[Entry], names: set[str], renderer: Renderer, journal: Journal,
                teller: Teller, catalog: Catalog) -> list[Entry]:
    """This project's own lost creates set aside (its account; one of its frames, or sent
    by this project for a frame it no longer declares): a body it no longer makes, never
    resent; closed (open for good, they would keep the no-op fast path off) and counted as
    possibly billed."""
    kept: list[Entry] = []
    here = project_mark(renderer.project.loaded.root)
    for entry in aside:
        account = renderer.backends.account(entry.backend)
        if entry.task_id is None and (entry.frame in names or entry.project == here) \
                and account is not None and entry.account == account:
            frame = entry_frame(entry, catalog)
            charge = renderer.owed(entry, frame, Billing.MAYBE)
            journal.closed(entry.key, entry.take, "its frame changed; not resent", billed=True)
            teller.entry(frame, Status.FAILED, "a lost create of a request this project no "
                         "longer makes: not resent; may be billed", charge)
        else:
            kept.append(entry)
    return kept


def report_unreported(journal: Journal, renderer: Renderer, teller: Teller,
                      catalog: Catalog) -> None:
    """Requests an earlier build paid for from this build's account and ended (its image
    came, or it may have been billed) but never reported: it died before its summary. This
    build's summary says them, as spent earlier; then the journal lets them go. Another
    account's (a cache shared by projects with other keys, or lines planted there) are not
    this build's money: left for a build paying from that account."""
    ours = [e for e in journal.unreported.values()
            if e.belongs_to(renderer.backends.account(e.backend))]
    if not ours:
        return
    charges = []
    for entry in ours:
        frame = entry_frame(entry, catalog)
        done = entry.ended == "done"
        charges.append(renderer.owed(entry, frame, None if done else Billing.MAYBE))
        teller.entry(frame, Status.RENDERED if done else Status.FAILED,
                     "paid by an earlier build that stopped before its summary"
                     + ("" if done else "; it may have been billed"), charges[-1])
        journal.counting(entry.key, entry.take)
    names = ", ".join(sorted({e.frame[:60] for e in ours})[:8])
    teller.note(f"{len(ours)} request(s) an earlier build paid for and stopped before saying "
                f"({names}): USD {fmt_usd(sum((c.cost for c in charges), Decimal(0)))}, "
                "counted here as spent earlier")


def say_kept(journal: Journal, teller: Teller) -> None:
    """Entries of a backend or model this nbpipe does not know stay in the journal for one that
    does (their tasks are paid for): say so, once a build, so a user who removed a plug-in
    knows why the no-op fast path stays off and how to collect them. A journal that could
    not be read whole is said too: it is left as it is."""
    if journal.problem:
        teller.note(f"warning: the journal {journal.path} {journal.problem}: what was read of "
                    "it is kept in a new journal; tasks recorded in the rest are not collected "
                    "(look at that file before deleting it)")
    if not journal.kept:
        return
    names = sorted({f"{r.get('backend')}/{r.get('request', {}).get('model')}"[:60]
                    for r, *_ in journal.kept.values()})
    teller.note(f"{len(journal.kept)} journal entr{'y' if len(journal.kept) == 1 else 'ies'} "
                f"of a backend or model this nbpipe does not know ({', '.join(names[:8])}): "
                "kept, not sent; a build with that plug-in or model collects them")


def _collectable(entry: Entry, frames: dict[str, Frame]) -> bool:
    """An entry a later build may collect: a task (or a create under an idempotency key) of
    a resumable backend, or a request in a batch job whose name is known (a look is free) that
    no frame of this build makes (a frame's own goes with it: pending, failed or collected)."""
    if entry.lane == "batch":
        return entry.task_id is not None and entry.key not in frames
    return resumable(entry.backend) and bool(entry.task_id or entry.body) and \
        not maybe_sent(entry)


def maybe_sent(entry: Entry) -> bool:
    """Whether `entry` is a request that may have been sent (and billed) and can never be
    found: a call with no reply (its intent alone says it may have left), or a create without
    an idempotency key whose body was journalled and whose id never came. (A request in a
    batch job waits in it: batchlog.py finds the job again.)"""
    return entry.task_id is None and entry.lane != "batch" and unfindable(entry.backend) and \
        (unrepeatable(entry.backend) or entry.body is not None)


def _resent(renderer: Renderer, entry: Entry) -> bool:
    """Whether this build sent the entry's create (again): its payment is this build's."""
    return (entry.key, entry.take) in renderer.mine
