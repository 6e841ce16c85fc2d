"""The end of a build, however its walk ended (done, failed, Ctrl-C): what it leaves on disk.

A module of its own because its order is a promise apart from the walk's: frames no longer
declared are unpinned (their files become orphans only if nbpipe wrote them), the lock is saved
whole before the shared cache learns its pins, and what the report shows later (the last
failures, running totals) is kept whatever happened. A build of some frames also says which
frames it left stale behind it. The no-op fingerprint, which needs the
walk's outcomes, is made here from them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Collection, Mapping
from decimal import Decimal
from pathlib import Path

from nbpipe import interrupts
from nbpipe.catalog import Catalog
from nbpipe.engine.noop import fingerprint, fingerprint_options
from nbpipe.errors import NbpipeError
from nbpipe.events import Summary, Tally
from nbpipe.files import SyncBatch
from nbpipe.filestat import Stat
from nbpipe.plan import reach
from nbpipe.plan.downstream import stale_downstream
from nbpipe.plan.frame import Frame
from nbpipe.plan.planner import Known, Project
from nbpipe.store.cache import Cache
from nbpipe.store.journal import Journal
from nbpipe.store.lock import Lock
from nbpipe.store.marks import remote_id
from nbpipe.store.outputs import disk_message
from nbpipe.store.state import State


def drop_undeclared(lock: Lock, declared: Mapping[str, Frame], state: State,
                    events: Tally, carried: Collection[str] = ()) -> None:
    """Unpin frames no longer declared (`carried`: declared, not planned); a file of theirs
    becomes an orphan (for `clean --orphans`) only if this machine saw nbpipe write it."""
    kept = set(carried)
    for name in [n for n in lock.entries if n not in declared and n not in kept]:
        entry = lock.entries.pop(name)
        state.changed = True
        if state.written_digest(entry.output) != entry.digest:
            continue  # only a file this machine saw nbpipe write may be removed later
        state.orphans[entry.output] = entry.digest
        events.note(f"orphan    {entry.output}  (frame {name} is no longer declared; "
                    "`nbpipe clean --orphans` removes it)")
    for frame in declared.values():  # declared again, and nbpipe's once more
        pinned = lock.entries.get(frame.name)
        if pinned is not None:  # (until then, only the orphan record says the file is ours)
            state.orphans.pop(frame.output, None)
            state.orphans.pop(pinned.output, None)


def remember_outcomes(state: State, frames: list[Frame], failed: dict[str, str]) -> None:
    """What the report shows later: the last failures."""
    names = {f.name for f in frames}
    kept = {k: v for k, v in state.data.get("failed", {}).items() if k not in names}
    state.data["failed"] = {**kept, **failed}
    state.changed = True


def end_build(tally: Tally, journal: Journal, state: State, interrupted: bool) -> Summary:
    """Say the summary, then record that it was said: the journal's `reported` marks and the
    state's running totals. Ctrl-C is held off in between: a press after the print but before
    the record would have the next build say the same money again."""
    with interrupts.held():
        summary = tally.end(interrupted)
        journal.summary_said()
        _add_totals(state, summary)
    return summary


def _add_totals(state: State, summary: Summary) -> None:
    """Running totals for the report, counted only with a summary said."""
    totals = state.data.setdefault("totals", {"spent_usd": "0", "saved_usd": "0"})
    totals["spent_usd"] = str(Decimal(totals["spent_usd"]) + summary.spent)
    totals["saved_usd"] = str(Decimal(totals["saved_usd"]) + summary.saved)
    earlier = Decimal(totals.get("spent_earlier_usd", "0")) + summary.spent_earlier
    totals["spent_earlier_usd"] = str(earlier)  # paid by builds that died before saying so
    state.changed = True
    try:
        state.save()
    except OSError:
        pass  # a cache of figures for the report: the money was said


def save_lock(lock: Lock, root: Path, written: SyncBatch) -> None:
    """Save the lock once the outputs it names are durable (`written`: those of this build)."""
    try:
        written.sync()
    except OSError as exc:
        raise NbpipeError(f"{disk_message(exc)}: the outputs written could not be made durable; "
                          "nbpipe.lock was left as it was, and every image made is in the "
                          "cache: the next build pins it for free") from None
    try:
        lock.save(root)
    except OSError as exc:  # atomic: the previous lock is still whole
        raise NbpipeError(f"{disk_message(exc)}; nbpipe.lock was left as it was, and every "
                          "image made is in the cache: the next build pins it for free") from None


def record_pins(cache: Cache, root: Path, lock: Lock, events: Tally) -> None:
    """Tell the cache what this project pins, so gc from another project sharing it keeps them."""
    try:
        cache.record_pins(root, lock.pinned())
    except OSError as exc:
        events.note(f"{disk_message(exc)}: gc in other projects sharing this cache may "
                    "not see this project's pins until the next build")


def say_stale_downstream(project: Project, known: Known, frames: list[Frame], lock: Lock,
                         pinned_before: Mapping[str, str], events: Tally) -> None:
    """After a build of some frames: the frames it did not select that depend on an image it
    changed (its pin moved) and are stale now, said once and put in the summary."""
    changed = [f.name for f in frames if (entry := lock.entries.get(f.name)) is not None
               and entry.digest != pinned_before.get(f.name)]
    stale = stale_downstream(project, known, changed, [f.name for f in frames])
    if stale:
        events.stale_downstream(stale, f"nbpipe build{project.flags}")


def quiet_until(catalog: Catalog, frames: list[Frame]) -> dt.date | None:
    """Until when the no-op path may skip planning: a model's shutdown coming near must
    still be said (then refused) though nothing in the project changed."""
    specs = (catalog.get(f.backend, f.model) for f in frames)
    return min((day for spec in specs if spec and (day := spec.quiet_until())), default=None)


def fingerprint_for(project: Project, lock: Lock, state: State, frames: list[Frame],
                    options: tuple[str | None, str | None], url: str | None,
                    complete: bool, carried: Collection[str] = ()) -> dict[str, object] | None:
    """What lets the next build answer "nothing to do" without planning, or None (`complete`:
    every frame built, nothing left open). `options`: the build's backend and profile; `url`:
    the remote cache, whose marks the fast path waits for (a build killed after marking left
    them). `carried`: the frames the edit path kept (engine/carried.py), fresh as the last
    fingerprint (Project.since) proved them, whose files it still covers."""
    if not complete:
        return None
    names = [*(f.name for f in frames), *carried]
    outputs = [lock.entries[name].output for name in names]  # the real paths (.jpg too)
    until = quiet_until(project.catalog, frames)
    reads: dict[str, Stat | None] = dict(project.reads)
    if carried and project.since is not None:
        reads = {**_recorded(project.since.get("inputs")), **reads}
        until = _sooner(until, project.since.get("until"))
    return fingerprint(project.loaded.root, fingerprint_options(*options),
                       project.loaded.digest, reads, _digest(lock), outputs, len(names),
                       state.data.get("fingerprint"), until,
                       remote_id(url) if url else None,
                       reach={**reach.digests(project.loaded.data).as_json(),
                              "section": project.declared.section,
                              # a carried target's warning would go unsaid (planner._reached)
                              "warned": bool(project.warnings)})


def _digest(lock: Lock) -> str:
    """The digest of the lock's text: as saved (save_lock ran first), computed otherwise."""
    return lock.digest or hashlib.sha256(lock.text().encode("utf-8")).hexdigest()


def _recorded(inputs: object) -> dict[str, Stat | None]:
    """The files a fingerprint holds, with their stats then (None: not a stat, which proves
    nothing, so no fingerprint is made from it)."""
    if not isinstance(inputs, dict):
        return {}
    return {rel: (stat[0], stat[1], stat[2], stat[3]) if isinstance(stat, list) and
            len(stat) == 4 and all(type(n) is int for n in stat) else None
            for rel, stat in inputs.items()}


def _sooner(until: dt.date | None, recorded: object) -> dt.date | None:
    """The earlier of two days from which the fast path must plan (a fingerprint's, as text)."""
    try:
        day = dt.date.fromisoformat(recorded) if isinstance(recorded, str) else None
    except ValueError:
        day = dt.date.min  # unreadable: plan from today on, as the no-op check would
    return min((d for d in (until, day) if d is not None), default=None)
