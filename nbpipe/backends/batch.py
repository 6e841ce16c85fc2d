"""The batch lane as a provider offers it: many requests under one job, results matched by key.

A provider whose spec lists `Lane.BATCH` gives a `Batches` client (BackendSpec.batch). Creating
a job is not idempotent (two creates are two paid jobs) and has no request id: the engine
journals every job before creating it, names it by the set of requests it holds (`display`),
and after a lost create reply finds it again with `find(display)` instead of creating another.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from nbpipe.backends.base import InputData
from nbpipe.errors import FrameFailed
from nbpipe.plan.frame import Request


class JobState(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"

    @property
    def ended(self) -> bool:
        return self not in (JobState.PENDING, JobState.RUNNING)


@dataclass(frozen=True)
class JobView:
    """A job as the server shows it. Counts are the server's (`batchStats`), 0 when unsaid."""

    name: str  # the server's, e.g. "batches/123"
    display: str
    model: str
    state: JobState
    total: int = 0
    succeeded: int = 0
    failed: int = 0
    error: str | None = None  # why a FAILED job failed, as the server says
    created: str | None = None  # RFC 3339, as the server wrote it

    @property
    def progress(self) -> str:
        done = self.succeeded + self.failed
        failed = f", {self.failed} failed" if self.failed else ""
        return f"{self.state.value.lower()}, {done}/{self.total or '?'} done{failed}"


@dataclass(frozen=True)
class LineResult:
    """One request's result: its image's bytes, or why there is none. `billed`: no usable
    image, yet one may have been made (and billed)."""

    image: bytes | None = None
    error: str | None = None
    billed: bool = False


class JobGone(FrameFailed):
    """The server no longer knows the job (deleted, or purged): nothing of it can be collected;
    its requests fail, and a later build sends them again."""


class ResultsGone(FrameFailed):
    """A job ended and answered, but its results can no longer be read (the file is gone):
    its images were made, so possibly billed; its requests are sent again by a later build."""


class CreateLost(Exception):
    """A create whose reply never came: the job may exist. Find it by its display name."""


class Batches(Protocol):
    """A provider's batch jobs, one account's (the key the backend was opened with)."""

    def line(self, request: Request, inputs: list[InputData]) -> dict[str, object]:
        """The body one request takes inside a job (as its call would send it)."""
        ...

    async def create(self, model: str, display: str,
                     lines: Sequence[tuple[str, dict[str, object]]]) -> JobView:
        """Create one job of `lines` (key, body); CreateLost when the reply is lost."""
        ...

    async def find(self, display: str, pages: int | None = None) -> JobView | None:
        """The newest job of this account with that display name, looking through at most
        `pages` pages of its jobs, newest first (None: all of them)."""
        ...

    async def get(self, name: str) -> JobView: ...

    async def results(self, job: JobView) -> dict[str, LineResult]:
        """Every line the ended job answered, by key (never by position)."""
        ...

    async def cancel(self, name: str) -> None: ...
