"""One value for "send nothing more": fail-fast, a refused key or balance, a full disk, Ctrl-C.

Every frame in flight asks the same value, so the first reason wins and is said once: the
frames that meet it later say "the build stopped (see the end)", and the build prints the
reason before the summary.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Stop:
    why: str | None = None  # why no more requests may be sent
    interrupted: bool = False  # Ctrl-C (the build then exits 130)
    told_later: bool = False  # a frame deferred the reason to the end

    def __bool__(self) -> bool:
        return self.why is not None

    def set(self, why: str) -> bool:
        """Stop for `why` unless stopped already; True if this was the first reason."""
        if self.why is not None:
            return False
        self.why = why
        return True

    def interrupt(self) -> None:
        self.interrupted = True
        self.set("interrupted")

    def see_end(self) -> str:
        self.told_later = True  # the reason is printed once, before the summary
        return "the build stopped (see the end)"

    def skipped_why(self) -> str:
        return "interrupted" if self.interrupted else self.see_end()

    def said_at_end(self) -> str | None:
        return f"build stopped: {self.why}" if self.told_later else None
