"""The write-ahead journal: no paid task is ever forgotten, whatever kills the build.

One JSON line per event, appended and fsync'd before the build moves on:

    {"op": "intent", "key", "take", "frame", "backend", "request", "account"}  before sending
    {"op": "sent",   "key", "take", "body"}      the exact wire body of a create, before sending
    {"op": "task",   "key", "take", "task_id"}                      as soon as the id is known
    {"op": "done",   "key", "take", "digest"}                       once the image is in the cache
    {"op": "failed", "key", "take"}                                 the task itself failed
    {"op": "closed", "key", "take", "why", "billed"?}  no image will come of it (refused,
                                                 lost, gone); `billed`: it may have cost money
    {"op": "reported", "key", "take"}            a build's summary counted its cost

A build after a crash, kill -9 or Ctrl-C reads the journal and re-attaches to every task that
has no outcome yet (polls it, downloads it) instead of creating a new one. The window between an
intent and its task id is covered by the Idempotency-Key: the resume resends the journalled body
byte for byte under the same key, so HiAPI answers with the original task. An open entry with
no task and no body is a synchronous request (Gemini) whose outcome is unknown: it may have
been billed. Each line is read through its strict model (store/records.py): the known
fields' types are checked, an unknown field is allowed (a field a newer nbpipe adds leaves the
line readable; the model keeps it in `model_extra`). Lines that do not parse or hold the wrong
types (a torn last write, a hand edit) are skipped, except an intent this nbpipe cannot act on
(its backend is a plug-in not installed here, its model left the catalogue): that entry's lines
are kept as they are, through every compaction, for a build that can collect its task; they are
never resent from here. `account` (a digest of the API key that
sends it) keeps a journal shared by projects with different keys honest: only a build paying
from that account resumes an entry (HiAPI answers another account's task with 404, and takes
its Idempotency-Key as new). The journal lives in the cache (`journal.jsonl`) and is compacted
to its open entries at the end of each build.

Money is said once, by a summary: an entry whose request cost money (its image done, or closed
as billed) stays in the journal, `unreported`, until a summary that counted it is said
(`summary_said` writes `reported`). A build killed between paying and its summary said nothing,
so the next build reports what it paid (as spent by an earlier build).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from nbpipe.files import atomic_write
from nbpipe.projectfile import FileRefused, open_regular
from nbpipe.store import jsontext
from nbpipe.store.records import (
    IntentLine,
    JournalLine,
    SentLine,
    TaskLine,
    journal_line,
    unknown_request,
)


@dataclass
class Entry:
    """A render that was started: what for, and the task it created, if that is known yet."""

    key: str
    take: int
    frame: str
    backend: str
    request: dict[str, Any]
    task_id: str | None = None
    body: str | None = None  # the create exactly as sent (HiAPI), to resend byte for byte
    account: str | None = None  # who pays (backends.http.account_of); None: an older journal
    reported: bool = False  # a build's summary counted its cost: the collecting build does not
    ended: str = ""  # unreported only: "done" (its image came) or "closed" (billed, no image)
    project: str | None = None  # the project that sent it (project_mark); None: an older one
    lane: str = "standard"  # "batch": sent inside a batch job (batchlog.py), its task the job

    def belongs_to(self, account: str | None) -> bool:
        """May a build paying from `account` resume this entry? (An entry of an older journal
        names no account: it is anybody's, as it was.)"""
        return self.account is None or self.account == account


class Entries:
    """The journal as read: its open entries, the paid ones no summary has said yet, and those
    this nbpipe cannot act on (kept as they were). Each line applies here, once durable."""

    open: dict[tuple[str, int], Entry]
    kept: dict[tuple[str, int], list[dict[str, Any]]]  # entries this nbpipe cannot act on
    unreported: dict[tuple[str, int], Entry]  # ended, paid, and in no summary said yet
    unsaid: list[tuple[str, int]]  # counted by this build's summary, not said yet (memory only)

    def __init__(self) -> None:
        self.open = {}
        self.kept = {}
        self.unreported = {}
        self.unsaid = []

    def replay(self, record: object) -> None:
        """Apply a line read back; one a build cannot act on is kept or skipped (`_keep`)."""
        try:
            self.apply(record)
        except ValueError:
            self._keep(record)

    def _keep(self, record: object) -> None:
        """A line `_apply` refused: kept if it belongs to an entry of a backend or model this
        nbpipe does not know (another nbpipe may collect its paid task); else skipped (a hand
        edit, a damaged line)."""
        try:
            line = JournalLine.model_validate(record)
        except ValueError:
            return
        slot = (line.key, line.take)
        if line.op == "intent" and slot not in self.open and isinstance(record, dict) and \
                isinstance(record.get("backend"), str) and unknown_request(record):
            self.kept[slot] = [record]
        elif slot in self.kept and isinstance(record, dict):
            self.kept[slot].append(record)

    def apply(self, record: object) -> None:
        """Replay one line; ValueError when it is not one a build can act on (its model in
        store/records.py: unknown fields are kept and ignored, known ones checked)."""
        line = journal_line(record)
        slot = (line.key, line.take)
        if slot in self.kept:  # an entry another nbpipe can act on: its lines go along
            if line.op in ("done", "failed", "closed"):
                del self.kept[slot]
            elif isinstance(record, dict):
                self.kept[slot].append(record)
            return
        if isinstance(line, IntentLine):
            self.open[slot] = Entry(line.key, line.take, line.frame, line.backend, line.request,
                                    account=line.account, project=line.project, lane=line.lane)
        elif isinstance(line, SentLine) and slot in self.open:
            self.open[slot].body = line.body
        elif isinstance(line, TaskLine) and slot in self.open:
            self.open[slot].task_id = line.task_id
        elif line.op == "reported":
            if slot in self.open:
                self.open[slot].reported = True
            self.unreported.pop(slot, None)
        elif line.op in ("done", "failed", "closed"):
            self._end(slot, line.op, line.op == "done" or (line.model_extra or {}).get("billed")
                      is True)

    def _end(self, slot: tuple[str, int], op: str, paid: bool) -> None:
        """An entry is over; if it cost money no summary has said yet, it waits for one."""
        entry = self.open.pop(slot, None)
        # `reported` only in memory (counted by a summary not said yet) is not said: it waits
        if entry is not None and paid and (not entry.reported or slot in self.unsaid):
            entry.ended = "done" if op == "done" else "closed"
            self.unreported[slot] = entry

    def lines(self) -> list[dict[str, Any]]:
        """What compaction keeps: the open entries, the paid ones no summary said, and the
        kept ones, each in as few lines as replay needs (a `reported` mark of a summary never
        said is not one)."""
        lines: list[dict[str, Any]] = []
        for entry in self.open.values():
            lines.append(_intent(entry.key, entry.take, entry.frame, entry.backend,
                                 entry.request, entry.account, entry.project, entry.lane))
            if entry.body is not None:
                lines.append({"op": "sent", "key": entry.key, "take": entry.take,
                              "body": entry.body})
            if entry.task_id:
                lines.append({"op": "task", "key": entry.key, "take": entry.take,
                              "task_id": entry.task_id})
            if entry.reported and (entry.key, entry.take) not in self.unsaid:
                lines.append({"op": "reported", "key": entry.key, "take": entry.take})
        for entry in self.unreported.values():  # paid; said by no summary yet
            lines += [_intent(entry.key, entry.take, entry.frame, entry.backend, entry.request,
                              entry.account, entry.project),
                      {"op": entry.ended, "key": entry.key, "take": entry.take, "billed": True}]
        return lines + [record for slot, records in self.kept.items() if slot not in self.open
                        for record in records]


class Journal:
    """The journal file of one cache, and the entries in it (`open`, `unreported`, `kept`: the
    same dicts as its `Entries`)."""

    path: Path
    entries: Entries
    open: dict[tuple[str, int], Entry]
    kept: dict[tuple[str, int], list[dict[str, Any]]]
    unreported: dict[tuple[str, int], Entry]
    _earlier: frozenset[tuple[str, int]]  # unreported as read: ended by earlier builds
    _handle: TextIO | None
    problem: str | None  # why the file was not read whole (it was then set aside)

    def __init__(self, path: Path):
        self.path = path
        self.entries = Entries()
        self.open, self.kept = self.entries.open, self.entries.kept
        self.unreported = self.entries.unreported
        self._handle = None
        self.problem = read_into(self.entries, self.path)
        if self.problem:
            self.problem += f"; set aside as {_set_aside(self.path)}"
        self._earlier = frozenset(self.unreported)

    def _write(self, record: dict[str, Any]) -> None:
        self._write_all([record])

    def _write_all(self, records: list[dict[str, Any]]) -> None:
        """Append and fsync (once), then apply: a line is acted on only once it is durable."""
        if not records:
            return
        if self._handle is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = open(self.path, "a", encoding="utf-8")
        self._handle.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
        self._handle.flush()
        os.fsync(self._handle.fileno())
        for record in records:
            self.entries.apply(record)

    def intent(self, key: str, take: int, frame: str, backend: str, request: dict[str, Any],
               account: str | None = None, project: str | None = None,
               lane: str = "standard") -> None:
        if (key, take) not in self.open:
            self._write(_intent(key, take, frame, backend, request, account, project, lane))

    def sent(self, key: str, take: int, body: str) -> None:
        if (key, take) in self.open and self.open[(key, take)].body != body:
            self._write({"op": "sent", "key": key, "take": take, "body": body})

    def task(self, key: str, take: int, task_id: str) -> None:
        self._write({"op": "task", "key": key, "take": take, "task_id": task_id})

    def done(self, key: str, take: int, digest: str) -> None:
        self._write({"op": "done", "key": key, "take": take, "digest": digest})

    def failed(self, key: str, take: int) -> None:
        self._write({"op": "failed", "key": key, "take": take})

    def reported(self, key: str, take: int) -> None:
        """Another build's summary counts this open entry's cost (HiAPI answered its create as
        a replay: the task is that build's): no later build counts it."""
        if (key, take) in self.open and not self.open[(key, take)].reported:
            self._write({"op": "reported", "key": key, "take": take})

    def counting(self, key: str, take: int) -> None:
        """This build's summary counts this entry's cost (an open one it leaves out, or an
        unreported one an earlier build ended): no later build counts it again, once that
        summary is said (`summary_said`). Until then the mark is this build's only: a build
        that dies first (a Ctrl-C as it ends, a kill) said nothing, and the next one says it."""
        slot = (key, take)
        unsaid = self.entries.unsaid
        if slot in unsaid:
            return
        if slot in self.open and not self.open[slot].reported:
            self.open[slot].reported = True
            unsaid.append(slot)
        elif slot in self.unreported:
            unsaid.append(slot)

    def summary_said(self) -> None:
        """A build's summary is out: record what it counted, the entries marked by `counting`
        (also one counted, then ended: its `done` line reads back unsaid) and the paid ones
        this build ended. Another's unreported entries (another account's, on a shared
        cache) stay for a build that says them."""
        unsaid, self.entries.unsaid = self.entries.unsaid, []
        slots = unsaid + [s for s in self.unreported if s not in unsaid and s not in self._earlier]
        self._write_all([{"op": "reported", "key": key, "take": take} for key, take in slots])

    def closed(self, key: str, take: int, why: str, billed: bool = False) -> None:
        """No image will come of this entry: the request was refused, or its outcome is lost.
        `billed`: it may have cost money (a summary must say it)."""
        if (key, take) in self.open:
            self._write({"op": "closed", "key": key, "take": take, "why": why,
                         **({"billed": True} if billed else {})})

    def open_for(self, key: str, backend: str, account: str | None,
                 accept: Callable[[Entry], bool] = lambda entry: True) -> Entry | None:
        """The open entry a render of this key, paid from `account`, re-attaches to (its take,
        task and body); `accept`: whether the render may take that entry's body for its own."""
        entries = [e for e in self.open.values() if e.key == key and e.backend == backend
                   and e.belongs_to(account) and accept(e)]
        return min(entries, key=lambda e: e.take) if entries else None

    def close(self) -> None:
        """Compact to the entries still open, so the journal never grows without bound."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        if not self.path.exists() and not self.problem:
            return  # (set aside: what was read goes on in a new journal)
        lines = self.entries.lines()
        atomic_write(self.path, "".join(json.dumps(r) + "\n" for r in lines).encode())


def _set_aside(path: Path) -> str:
    """A journal not read whole is never compacted over (its unread part may name paid tasks)
    nor appended to (past its cap no build would read what this one records): it is moved
    aside, kept for the user, and a new one begins with what was read. Renaming does not
    follow a link, and a FIFO or device planted there is moved aside the same way."""
    aside = path.with_name(f"{path.name}.unread-{time.time_ns()}")
    os.replace(path, aside)  # an OSError here stops the build: nothing safe to write
    return aside.name


JOURNAL_CAP = 8 << 30  # 8 GiB read at most: a big build's prompts, not a planted endless file
LINE_CAP = 64 << 20  # a line longer than this is not one nbpipe wrote (a prompt is capped)


def read_into(entries: Entries, path: Path) -> str | None:
    """Replay the journal at `path` into `entries`, line by line (a big build's journal can
    hold GiBs of prompts before its one compaction); why it was not read whole, if it was not
    (None: read whole, or there is none)."""
    try:
        handle = open_regular(path)
    except FileNotFoundError:
        return None
    except (OSError, FileRefused) as exc:  # a FIFO or a device planted, a folder
        return f"cannot be read ({exc})"
    problems: list[str] = []
    with handle:
        for line in _lines(handle, problems):
            try:
                record = jsontext.loads(line.decode("utf-8"))  # nesting deep enough to crash
            except ValueError:
                continue  # a torn write at a crash; everything before it stands
            entries.replay(record)
    return problems[0] if problems else None


def unfinished(path: Path) -> set[tuple[str, int]]:
    """The takes (key, number) of renders no build has finished with: open, or paid and said
    by no summary yet (a build killed after its image came and before it saved the lock that
    pins it). Read only: a journal not read whole is left where it is, for the next build."""
    entries = Entries()
    read_into(entries, path)
    return set(entries.open) | set(entries.unreported)


def _lines(handle: BinaryIO, problems: list[str]) -> Iterator[bytes]:
    """The journal's lines, each at most LINE_CAP (a longer one is skipped whole), to
    JOURNAL_CAP in all; past it, `problems` says so and reading stops."""
    total, inside_long = 0, False
    while line := handle.readline(LINE_CAP + 1):
        total += len(line)
        if total > JOURNAL_CAP:
            problems.append(f"is larger than {JOURNAL_CAP >> 30} GiB; only its start was read")
            return
        if inside_long or (len(line) > LINE_CAP and not line.endswith(b"\n")):
            inside_long = not line.endswith(b"\n")  # an over-long line is skipped to its end
            continue
        yield line


def _intent(key: str, take: int, frame: str, backend: str, request: dict[str, Any],
            account: str | None, project: str | None = None,
            lane: str = "standard") -> dict[str, Any]:
    record = {"op": "intent", "key": key, "take": take, "frame": frame, "backend": backend,
              "request": request}
    return {**record, **({"account": account} if account is not None else {}),
            **({"project": project} if project is not None else {}),
            **({"lane": lane} if lane != "standard" else {})}


@functools.lru_cache(maxsize=8)  # asked at every render's intent: resolve and hash once
def project_mark(root: Path) -> str:
    """Which project sent an entry (a cache, and so its journal, may be shared): a digest of
    its folder, so a build can tell its own entries of a frame it no longer declares."""
    return hashlib.sha256(str(root.resolve()).encode("utf-8", "surrogatepass")).hexdigest()[:16]

