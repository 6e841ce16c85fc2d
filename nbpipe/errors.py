"""The error tree, and how a located manifest error is printed.

    NbpipeError                 exit 1 unless a subclass says otherwise
    ├── UsageError              exit 2: bad command line (unknown frame, bad flag value)
    ├── ManifestError           exit 2: one or more located Diagnostics in nbpipe.yaml
    ├── FrameFailed             one frame failed (bad request, blocked, timeout, bad bytes);
    │   │                       the build goes on with frames that do not depend on it
    │   ├── TaskFailed          the remote task itself ended in failure: nothing to resume
    │   └── ImageLost           the task succeeded (paid) but its image can no longer be fetched,
    │                           or HiAPI no longer knows a task that may have succeeded (404)
    └── BuildStopped            exit 1: nothing more may be sent (bad key, no balance);
        │                       what was already rendered is kept
        └── ModelUnknown        the API answered 404 for the model itself (retired?); a
                                404 the API did not send stops the build as a wrong base URL

Exit codes (the CLI's contract, also in README):
    0    success
    1    a frame failed, or `build --check` found stale frames
    2    manifest or usage error, before anything ran
    3    internal error (a bug in nbpipe: please report it)
    130  interrupted (Ctrl-C)

Foreign errors (YAML parser, pydantic, jinja2, httpx) never cross a layer boundary: each layer
translates them into these classes where they arise.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 3
EXIT_INTERRUPTED = 130


class NbpipeError(Exception):
    """Base of every error nbpipe reports to a user (never with a traceback)."""

    exit_code = EXIT_FAILED

    def render(self) -> str:
        return f"error: {self}"


class UsageError(NbpipeError):
    """The command line asks for something that cannot be done (exit 2)."""

    exit_code = EXIT_USAGE
    hint: str | None

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint

    def render(self) -> str:
        text = f"error: {self}"
        return f"{text}\nhint: {self.hint}" if self.hint else text


class FrameFailed(NbpipeError):
    """A frame could not be rendered; `retry_later` when a later build may still succeed
    (a task that outlived its timeout keeps its task id and is resumed, not paid again)."""

    retry_later: bool
    maybe_billed: bool

    def __init__(self, message: str, retry_later: bool = False,
                 maybe_billed: bool = False) -> None:
        super().__init__(message)
        self.retry_later = retry_later
        self.maybe_billed = maybe_billed  # sent, reply lost, no idempotency: it may be paid


class TaskFailed(FrameFailed):
    """The backend's task reached a terminal failure; its id need not be kept for resuming."""


class BatchPending(FrameFailed):
    """The frame's request is in a batch job still running (the build did not wait, or was
    stopped): journalled, paid only if it runs; any later build collects it. Not a failure."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retry_later=True)


class ImageLost(FrameFailed):
    """The task succeeded, so it was paid for, but its image is gone (an expired output URL),
    or HiAPI answers 404 for the task (another account's, or dropped), so whatever it made is
    out of reach: nothing to resume; the next render is a new task."""


class BuildStopped(NbpipeError):
    """The whole build must stop at once: credentials refused, or the balance is spent."""


class ModelUnknown(BuildStopped):
    """The API says the model itself does not exist (404 NOT_FOUND): shut down earlier than the
    catalogue knows, or never served. Every frame on it would fail alike, so the build stops."""

    model: str

    def __init__(self, api: str, model: str) -> None:
        super().__init__(f"{api} does not know model '{model}': it may have been retired; "
                         "`nbpipe models` lists the current ones")
        self.model = model


@dataclass(frozen=True)
class Diagnostic:
    """One located problem: `FILE:LINE:COL: error: message`, the source line, a caret, a hint.

    `line` and `col` are 1-based; `line == 0` means the problem has no position in the file.
    """

    file: str
    line: int
    col: int
    message: str
    hint: str | None = None
    source_line: str | None = None
    severity: str = "error"  # or "warning": printed the same way, never fails a command

    def render(self) -> str:
        if self.line <= 0:
            out = [f"{self.file}: {self.severity}: {self.message}"]
        else:
            out = [f"{self.file}:{self.line}:{self.col}: {self.severity}: {self.message}"]
            if self.source_line is not None:
                gutter = f"{self.line:>5} | "
                out.append(gutter + self.source_line.rstrip("\n"))
                out.append(" " * (len(gutter) - 2) + "| " + " " * (self.col - 1) + "^")
        if self.hint:
            out.append(f"hint: {self.hint}")
        return "\n".join(out)


class ManifestError(NbpipeError):
    """The manifest is wrong; carries every Diagnostic found in one pass (exit 2)."""

    exit_code = EXIT_USAGE
    MAX_SHOWN = 50
    diagnostics: list[Diagnostic]  # in file order

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = sorted(diagnostics, key=lambda d: (d.line, d.col, d.message))
        super().__init__(f"{len(self.diagnostics)} error(s) in the manifest")

    def render(self) -> str:
        shown = self.diagnostics[: self.MAX_SHOWN]
        parts = [d.render() for d in shown]
        hidden = len(self.diagnostics) - len(shown)
        if hidden:
            parts.append(f"... and {hidden} more error(s)")
        count = len(self.diagnostics)
        parts.append(f"{count} error{'s' if count != 1 else ''}")
        return "\n".join(parts)


_WARNED: set[tuple[str, str]] = set()


def warn(message: str, about: str = "") -> None:
    """Print `warning: message` to stderr, once per `about` (e.g. a file's full path) and message:
    a damaged stored file read twice by one command is reported once."""
    if (about, message) in _WARNED:
        return
    _WARNED.add((about, message))
    print(f"warning: {message}", file=sys.stderr)
