"""`nbpipe batches`: the batch jobs this cache's builds left open, as the server sees them now;
`nbpipe batches cancel NAME`: stop one (its frames fail at the next build; any line it answered
is still collected, so nothing paid for is lost).

Only jobs nbpipe journalled are listed or cancelled: the account may run others (another tool's,
a teammate's on another cache) that are not this project's to touch.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

from nbpipe.backends import open_backend
from nbpipe.backends.base import Backend
from nbpipe.backends.batch import Batches
from nbpipe.backends.registry import spec
from nbpipe.errors import NbpipeError, UsageError
from nbpipe.settings import Settings
from nbpipe.store.batchlog import BATCHES, BatchJob, BatchLog


@dataclass(frozen=True)
class JobRow:
    """One open job: `name` as the server names it (or its display name, when its create's
    reply was lost and no build has found it yet)."""

    name: str
    backend: str
    model: str
    frames: int
    state: str
    age: float  # seconds since it was journalled
    usd: Decimal

    def as_json(self) -> dict[str, object]:
        return {"name": self.name, "backend": self.backend, "model": self.model,
                "frames": self.frames, "state": self.state, "age_s": round(self.age),
                "cost_usd": str(self.usd)}


def open_jobs(cache_dir: Path, settings: Settings) -> list[JobRow]:
    """The jobs of the log, each with its state as the server says it (or why not known)."""
    jobs = list(BatchLog(cache_dir / BATCHES).jobs.values())  # read only: never compacted here
    return [_row(job, state) for job, state in
            zip(jobs, _on_servers(jobs, settings, _state), strict=True)]


def cancel(cache_dir: Path, settings: Settings, name: str) -> JobRow:
    """Cancel the job named `name` as `nbpipe batches` prints it; UsageError for another."""
    jobs = BatchLog(cache_dir / BATCHES).jobs.values()
    job = next((j for j in jobs if j.name == name), None)
    if job is None:
        known = sorted(j.name for j in jobs if j.name)
        hint = f"open jobs: {', '.join(known[:8])}" if known else "no batch job is open"
        raise UsageError(f"no open batch job of this cache is named '{name}'", hint)
    [state] = _on_servers([job], settings, _cancel, strict=True)
    return _row(job, state)


async def _state(backend: Backend, job: BatchJob) -> str:
    if job.name is None:
        return "create reply lost (the next build looks for it)"
    return (await _client(backend).get(job.name)).progress


async def _cancel(backend: Backend, job: BatchJob) -> str:
    assert job.name is not None  # only a named job is cancelled
    await _client(backend).cancel(job.name)
    return (await _client(backend).get(job.name)).progress


def _client(backend: Backend) -> Batches:
    make = spec(backend.name).batch
    if make is None:
        raise UsageError(f"backend '{backend.name}' has no batch lane")
    return make(backend)


def _on_servers(jobs: list[BatchJob], settings: Settings,
                ask: Callable[[Backend, BatchJob], Awaitable[str]],
                strict: bool = False) -> list[str]:
    """`ask` about each job, through its backend opened once; a job that cannot be asked about
    says why instead (`strict`: the error stops the command)."""
    async def run() -> list[str]:
        opened: dict[str, Backend] = {}
        try:
            return [await _asked(opened, job, settings, ask, strict) for job in jobs]
        finally:
            for backend in opened.values():
                await backend.aclose()
    return asyncio.run(run())


async def _asked(opened: dict[str, Backend], job: BatchJob, settings: Settings,
                 ask: Callable[[Backend, BatchJob], Awaitable[str]], strict: bool) -> str:
    try:
        if job.backend not in opened:
            opened[job.backend] = open_backend(job.backend, 2, None, settings)
        return await ask(opened[job.backend], job)
    except KeyError:
        if strict:
            raise UsageError(f"backend '{job.backend}' is not installed here") from None
        return f"unknown (backend '{job.backend}' is not installed here)"
    except NbpipeError as exc:
        if strict:
            raise
        return f"unknown ({exc.render().removeprefix('error: ')})"


def _row(job: BatchJob, state: str) -> JobRow:
    try:
        usd = Decimal(job.usd)
    except InvalidOperation:
        usd = Decimal(0)
    return JobRow(job.name or job.display, job.backend, job.model, len(job.members), state,
                  max(time.time() - job.at, 0.0), usd)
