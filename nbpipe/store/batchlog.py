"""The batch jobs a cache's builds created: each journalled (fsync'd) before it is created.

    {"op": "job", "display", "backend", "model", "account", "members": [[key, take], ...],
     "attempt", "at"}                                   before the create is sent
    {"op": "created", "display", "name"}                the server's name, once known
    {"op": "ended", "display", "state"}                 collected, failed or given up

Creating a batch job is not idempotent and has no request id: this log is what stops a build
from paying for a second job of the same requests. A member's own journal entry (journal.jsonl)
holds its request and, once the job's name is known, that name as its task; a job line with no
`created` is a create whose reply may have been lost: the next build finds that job by its
display name before creating one. The file lives beside the journal and is compacted, at the end
of each build, to the jobs some open journal entry still belongs to. Lines are untrusted (the
cache may be shared): one that does not validate is skipped.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, TextIO

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from nbpipe.files import atomic_write
from nbpipe.projectfile import FileRefused, open_regular

BATCHES = "batches.jsonl"  # beside the journal, in the cache directory
Slot = tuple[str, int]
Name = Annotated[str, Field(min_length=1, max_length=300)]
SIZE_CAP = 256 << 20  # a log bigger than this is not one nbpipe wrote: read no further


class _Line(BaseModel):
    # built on first use: most builds read no batch log line (a build with no batch frame)
    model_config = ConfigDict(extra="ignore", frozen=True, defer_build=True)

    display: Name


class _Job(_Line):
    op: Literal["job"]
    backend: Name
    model: Name
    account: str | None = None
    members: list[tuple[str, int]] = Field(min_length=1)
    attempt: int = Field(1, ge=1)
    at: float = 0.0
    usd: str = "0"  # what its requests cost at the lane's price, as the build measured them


class _Created(_Line):
    op: Literal["created"]
    name: Name


class _Ended(_Line):
    op: Literal["ended"]
    state: str = ""


@functools.cache
def _any_line() -> TypeAdapter[_Job | _Created | _Ended]:
    """The validator of a line, made on the first line read (see _Line)."""
    return TypeAdapter(Annotated[_Job | _Created | _Ended, Field(discriminator="op")])


@dataclass
class BatchJob:
    """A job as journalled: who it is for, and the server's name once known."""

    display: str
    backend: str
    model: str
    account: str | None
    members: tuple[Slot, ...]
    attempt: int = 1
    at: float = 0.0
    name: str | None = None
    usd: str = "0"


class BatchLog:
    """batches.jsonl of one cache: the jobs its builds created and have not ended."""

    path: Path
    jobs: dict[str, BatchJob]  # by display name
    _by_slot: dict[Slot, set[str]]  # slot → the display names of the jobs it was put in
    _handle: TextIO | None

    def __init__(self, path: Path):
        self.path = path
        self.jobs = {}
        self._by_slot = {}
        self._handle = None
        for record in _read(path):
            self._apply(record)

    def _apply(self, record: object) -> None:
        try:
            line = _any_line().validate_python(record)
        except ValidationError:
            return
        if isinstance(line, _Job):
            self.jobs[line.display] = BatchJob(line.display, line.backend, line.model,
                                               line.account, tuple(line.members), line.attempt,
                                               line.at, usd=line.usd)
            for slot in line.members:  # `of` is asked for every queued frame: kept indexed
                self._by_slot.setdefault(slot, set()).add(line.display)
        elif line.display in self.jobs:
            if isinstance(line, _Created):
                self.jobs[line.display].name = line.name
            else:
                del self.jobs[line.display]

    def _write(self, record: dict[str, object]) -> None:
        """Append and fsync, then apply: a job is created only once its line is durable."""
        if self._handle is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = open(self.path, "a", encoding="utf-8")
        self._handle.write(json.dumps(record) + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._apply(record)

    def job(self, job: BatchJob) -> None:
        self._write(_job_line(job))

    def created(self, display: str, name: str) -> None:
        if display in self.jobs and self.jobs[display].name != name:
            self._write({"op": "created", "display": display, "name": name})

    def ended(self, display: str, state: str) -> None:
        if display in self.jobs:
            self._write({"op": "ended", "display": display, "state": state})

    def of(self, slot: Slot) -> BatchJob | None:
        """The newest job `slot` (a journal entry's key and take) was put in."""
        found = [self.jobs[d] for d in self._by_slot.get(slot, ()) if d in self.jobs]
        return max(found, key=lambda j: (j.attempt, j.at)) if found else None

    def close(self, open_slots: Collection[Slot]) -> None:
        """Compact to the jobs an open journal entry still belongs to."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        if not self.path.exists():
            return
        keep = [j for j in self.jobs.values() if any(m in open_slots for m in j.members)]
        lines = []
        for job in keep:
            lines.append(_job_line(job))
            if job.name:
                lines.append({"op": "created", "display": job.display, "name": job.name})
        atomic_write(self.path, "".join(json.dumps(r) + "\n" for r in lines).encode())


def _job_line(job: BatchJob) -> dict[str, object]:
    return {"op": "job", "display": job.display, "backend": job.backend, "model": job.model,
            "account": job.account, "members": [list(m) for m in job.members],
            "attempt": job.attempt, "at": job.at or time.time(), "usd": job.usd}


def _read(path: Path) -> Iterator[object]:
    try:
        handle = open_regular(path)
    except (OSError, FileRefused):  # none yet; or not a file: read as empty, never followed
        return
    with handle:
        total = 0
        while line := handle.readline(1 << 20):
            total += len(line)
            if total > SIZE_CAP:
                return
            try:
                yield json.loads(line.decode("utf-8"))
            except ValueError:
                continue
