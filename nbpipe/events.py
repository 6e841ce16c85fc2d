"""What a build says, as typed events: the one stream the engine emits and every sink formats.

Standard library only (with nbpipe's stdlib-only money and exit codes), so the engine, the
sinks in ui/ and ops/ may all import it. The engine emits `FrameStarted`, `FrameDone` and
`Note`; one `Tally` turns them into the `Summary` and the exit code, and hands each event on to
a `Reporter` (text lines, JSON Lines, the live display), which only formats.

Money: a `FrameDone` carries `cost`, what THIS build reports for that frame, so the frame
events' costs always sum to `spent + spent_earlier`:
- a request this build sent is in `spent` (rendered, left out, lost, possibly billed: all of it);
- a request an earlier build sent and never reported (it died: kill -9), found in the journal by
  this build, is in `spent_earlier` (`earlier=True`);
- a request an earlier build already reported costs 0 here.
A task still out as a build ends, of a provider that bills only a task that lands (fal, HiAPI:
a failed one costs nothing), costs 0 in that build: its price is its event's `due`, said as
still out and not counted; the build that collects its image counts it (`spent_earlier`).
An event with `journal=True` stands for a journal entry no frame of this build carries (a task
of a frame no longer declared, a request with no reply): its cost is counted, the frame is not.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Protocol

from nbpipe.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK
from nbpipe.money import fmt_usd, usd

ZERO = Decimal(0)


class Status(StrEnum):
    """How a frame ended in this build."""

    RENDERED = "rendered"  # sent and brought (or collected a task an earlier build sent)
    RESTORED = "restored"  # from the cache, the remote cache, or another frame's request
    FRESH = "fresh"  # already up to date
    FAILED = "failed"
    SKIPPED = "skipped"  # not sent: over budget, a stop, an upstream not built
    KEPT = "kept"  # its output was modified outside nbpipe: left alone
    LEFT = "left"  # a paid task still out at the end (Ctrl-C past the grace, a timeout)
    PENDING = "pending"  # in a batch job still running: a later build collects it


class Billing(StrEnum):
    """Money shown apart from `spent` (each is a subset of it, or of `spent_earlier`)."""

    LOST = "lost"  # paid, and its image is gone
    MAYBE = "maybe_billed"  # sent without idempotency, no usable reply: it may have been billed


@dataclass(frozen=True)
class FrameStarted:
    frame: str
    action: str


@dataclass(frozen=True)
class FrameDone:
    """A frame's end in this build. `output`: the file it holds (or the declared path)."""

    frame: str
    status: Status
    detail: str
    output: str
    backend: str
    model: str
    cost: Decimal = ZERO  # what this build reports for it (see the module's docstring)
    action: str = ""
    reason: str = ""
    key: str | None = None
    saved: Decimal = ZERO  # what a restore would have cost to render
    billing: Billing | None = None
    earlier: bool = False  # `cost` was paid by an interrupted build (spent_earlier)
    journal: bool = False  # a journal entry, not a frame of this build: not counted as one
    lane: str = "standard"  # how its request goes (standard, batch, flex)
    due: Decimal = ZERO  # a task still out, not in `cost`: its price if it lands (see above)


@dataclass(frozen=True)
class Note:
    text: str


@dataclass
class Summary:
    """The counts and money of a build, made by the `Tally` from its events."""

    rendered: int = 0
    restored: int = 0
    fresh: int = 0
    failed: int = 0
    skipped: int = 0
    kept: int = 0  # outputs modified outside nbpipe, left alone
    left: int = 0  # paid tasks still out at the end: the next build collects them
    pending: int = 0  # in batch jobs still running (not waited for): a later build collects
    left_usd: Decimal = ZERO  # what the tasks left out cost, counted here or (`due_usd`) not
    due_usd: Decimal = ZERO  # tasks still out, not in spent: counted by the build collecting them
    spent: Decimal = ZERO  # every paid request this build sent
    spent_earlier: Decimal = ZERO  # paid by an interrupted build, found in the journal
    saved: Decimal = ZERO
    interrupted: bool = False
    lost: int = 0  # paid images gone (inside spent / spent_earlier)
    lost_usd: Decimal = ZERO
    maybe_billed: int = 0  # requests with no usable reply that may have been billed (inside too)
    maybe_billed_usd: Decimal = ZERO
    # frames not selected, downstream of an image this build changed, and stale now
    stale_downstream: tuple[str, ...] = ()
    other_shards: int = 0  # selected frames that other shards build (`--shard K/N`): not failed

    @property
    def noop(self) -> bool:
        return not (self.rendered or self.restored or self.failed or self.skipped or self.kept
                    or self.left or self.pending or self.lost or self.maybe_billed
                    or self.spent_earlier or self.due_usd)

    @property
    def exit_code(self) -> int:
        """130 when interrupted; 1 when a frame is missing (failed, skipped, left out): CI must
        not look green; else 0."""
        if self.interrupted:
            return EXIT_INTERRUPTED
        return EXIT_FAILED if self.failed or self.skipped or self.left else EXIT_OK

    def as_json(self) -> dict[str, object]:
        return {"event": "summary", "rendered": self.rendered, "restored": self.restored,
                "fresh": self.fresh, "failed": self.failed, "skipped": self.skipped,
                "kept": self.kept, "left": self.left, "pending": self.pending,
                "spent_usd": usd(self.spent),
                "spent_earlier_usd": usd(self.spent_earlier), "saved_usd": usd(self.saved),
                **({"left_usd": usd(self.left_usd)} if self.left else {}),
                **({"due_usd": usd(self.due_usd)} if self.due_usd else {}),
                **({"lost": self.lost, "lost_usd": usd(self.lost_usd)} if self.lost else {}),
                **({"maybe_billed": self.maybe_billed,
                    "maybe_billed_usd": usd(self.maybe_billed_usd)} if self.maybe_billed else {}),
                **({"stale_downstream": list(self.stale_downstream)}
                   if self.stale_downstream else {}),
                **({"other_shards": self.other_shards} if self.other_shards else {})}

    def line(self) -> str:
        others = [f"{self.other_shards} frame{'s' * (self.other_shards != 1)} in other shards"
                  ] if self.other_shards else []
        if self.noop:
            return " · ".join([f"nothing to do: {self.fresh} frame{'s' * (self.fresh != 1)} "
                               "fresh", *others])
        counts = [f"{self.rendered} rendered", f"{self.restored} restored", f"{self.fresh} fresh"]
        counts += [f"{n} {what}" for n, what in ((self.failed, "failed"), (self.skipped, "skipped"),
                                                 (self.kept, "left alone"),
                                                 (self.pending, "pending in batch jobs")) if n]
        counts += others
        money = [f"spent USD {fmt_usd(self.spent)}"]
        money += self._still_out()
        if self.spent_earlier:
            money.append(f"USD {fmt_usd(self.spent_earlier)} paid by an interrupted build")
        if self.lost:
            money.append(f"lost USD {fmt_usd(self.lost_usd)} ({self.lost} paid image(s) gone)")
        if self.maybe_billed:
            money.append(f"possibly billed USD {fmt_usd(self.maybe_billed_usd)} "
                         f"({self.maybe_billed} request(s) with no usable reply)")
        return " · ".join(counts + money) + f" · saved USD {fmt_usd(self.saved)}"

    def _still_out(self) -> list[str]:
        """The tasks left out, and what of them this build's spend does not count."""
        said = []
        due = self.due_usd
        if self.left:
            uncounted = ", not counted until they land" if due == self.left_usd else ""
            said.append(f"USD {fmt_usd(self.left_usd)} in {self.left} task(s) still out"
                        f"{uncounted}; the next build collects them")
            due = ZERO if uncounted else due
        if due:
            said.append(f"USD {fmt_usd(due)} in task(s) still out not counted until they land")
        return said


@dataclass(frozen=True)
class BuildEnded:
    summary: Summary


Event = FrameStarted | FrameDone | Note | BuildEnded


class Reporter(Protocol):
    """A sink: formats each event (text, JSON Lines, a live display). It counts nothing."""

    def emit(self, event: Event) -> None: ...


_COUNTS: dict[Status, Callable[[Summary], None]] = {
    Status.RENDERED: lambda s: setattr(s, "rendered", s.rendered + 1),
    Status.RESTORED: lambda s: setattr(s, "restored", s.restored + 1),
    Status.FRESH: lambda s: setattr(s, "fresh", s.fresh + 1),
    Status.FAILED: lambda s: setattr(s, "failed", s.failed + 1),
    Status.SKIPPED: lambda s: setattr(s, "skipped", s.skipped + 1),
    Status.KEPT: lambda s: setattr(s, "kept", s.kept + 1),
    Status.LEFT: lambda s: setattr(s, "left", s.left + 1),
    Status.PENDING: lambda s: setattr(s, "pending", s.pending + 1),
}


@dataclass
class Tally:
    """The one place events become the summary; every event goes on to `sink`. Also a
    Reporter, so a tally may stand wherever a sink does."""

    sink: Reporter
    summary: Summary = field(default_factory=Summary)

    def emit(self, event: Event) -> None:
        if isinstance(event, FrameDone):
            count(self.summary, event)
        self.sink.emit(event)

    def note(self, text: str) -> None:
        self.emit(Note(text))

    def stale_downstream(self, frames: Sequence[str], command: str) -> None:
        """Frames this build did not select and left stale downstream of an image it changed:
        in the summary, and said once (`command` brings them up to date)."""
        self.summary.stale_downstream = tuple(frames)
        self.note(downstream_text(frames, command))

    def end(self, interrupted: bool) -> Summary:
        """The build is over: the summary, said once."""
        self.summary.interrupted = interrupted
        self.sink.emit(BuildEnded(self.summary))
        return self.summary


def downstream_text(frames: Sequence[str], command: str) -> str:
    n, one = len(frames), len(frames) == 1
    names = ", ".join(frames[:8]) + (f", … ({n} in all)" if n > 8 else "")
    return (f"{n} frame{'' if one else 's'} downstream of what this build changed "
            f"{'is' if one else 'are'} now stale: {names} (not selected; run `{command}` to "
            f"bring {'it' if one else 'them'} up to date)")


def count(s: Summary, event: FrameDone) -> None:
    """Add one frame event to a summary: the one counting, for the tally and for a sink that
    shows a running total (the live display)."""
    if not event.journal:
        _COUNTS[event.status](s)
    if event.earlier:
        s.spent_earlier += event.cost
    else:
        s.spent += event.cost
    s.saved += event.saved
    s.due_usd += event.due
    if event.status is Status.LEFT and not event.earlier:
        s.left_usd += event.cost + event.due
    if event.billing is Billing.LOST:
        s.lost += 1
        s.lost_usd += event.cost
    elif event.billing is Billing.MAYBE:
        s.maybe_billed += 1
        s.maybe_billed_usd += event.cost
