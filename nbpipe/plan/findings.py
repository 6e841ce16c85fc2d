"""What resolving a manifest found wrong: located errors, grouped where one cause at one place
hits many frames or models, and warnings that fail nothing."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from nbpipe.errors import Diagnostic, ManifestError
from nbpipe.manifest.source import Path, SourceMap


@dataclass
class _Group:
    """Errors of one kind at one place (a shared template, `defaults`): reported once, naming
    every frame or model they affect."""

    path: Path
    at_key: bool
    message: str  # with "{who}" where the affected names go
    kind: str  # "frame" or "model"
    names: list[str]
    hints: list[str]

    def diagnostic(self, source: SourceMap) -> Diagnostic:
        message = self.message.replace("{who}", _who(self.kind, self.names))
        return source.diagnostic(self.path, message, "; ".join(self.hints[:3]) or None,
                                 self.at_key)


def _who(kind: str, names: list[str]) -> str:
    quoted = [f"'{n}'" for n in names[:3]]
    if len(names) == 1:
        return f"{kind} {quoted[0]}"
    more = f" and {len(names) - 3} more" if len(names) > 3 else ""
    listed = ", ".join(quoted) + more if more else ", ".join(quoted[:-1]) + f" and {quoted[-1]}"
    return f"{kind}s {listed}"


class Findings:
    """Every problem found in one pass, in the order found: the resolver records them all and
    raises once, so a user sees the whole list, not the first error of many."""

    source: SourceMap
    diags: dict[Diagnostic, None]  # ordered, unique
    warnings: dict[Diagnostic, None]
    groups: dict[tuple[tuple[int, int], str], _Group]
    reported: int  # error() calls so far: did a step find anything?

    def __init__(self, source: SourceMap, earlier: Iterable[Diagnostic] = ()) -> None:
        self.source = source
        self.diags = dict.fromkeys(earlier)
        self.warnings = {}
        self.groups = {}
        self.reported = 0

    def error(self, path: Path, message: str, hint: str | None = None, at_key: bool = False,
              who: tuple[str, str] | None = None, key: str | None = None) -> None:
        """Record an error. With `who` ("frame", name), `message` holds "{who}": errors with one
        `key` (default: the message) at one place become one that lists whom they affect."""
        self.reported += 1
        if who is None:
            self.diags[self.source.diagnostic(path, message, hint, at_key)] = None
            return
        place = (self.source.position(path, at_key), key or message)
        group = self.groups.setdefault(place, _Group(path, at_key, message, who[0], [], []))
        if who[1] not in group.names:
            group.names.append(who[1])
        if hint and hint not in group.hints:
            group.hints.append(hint)

    def warn(self, path: Path, message: str, hint: str | None, severity: str) -> None:
        self.warnings[self.source.diagnostic(path, message, hint, severity=severity)] = None

    def raise_any(self) -> None:
        """Raise every error found, grouped ones included; nothing if there is none."""
        diags = [*self.diags, *(g.diagnostic(self.source) for g in self.groups.values())]
        if diags:
            raise ManifestError(list(dict.fromkeys(diags)))
