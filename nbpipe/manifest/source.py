"""Where each value of the manifest was written, so every error can point at its line."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import TypeAlias

from nbpipe.errors import Diagnostic

# A path into the manifest data: keys and list indexes, ("targets", "hero", "model"), ("x", 0).
Path: TypeAlias = tuple[str | int, ...]


def did_you_mean(word: object, choices: Iterable[str]) -> str | None:
    """The 'did you mean' hint for a misspelt name, or None when nothing is close."""
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None


class SourceMap:
    """Positions (1-based line, col) of keys and values in one manifest file."""

    file: str
    lines: list[str]
    keys: dict[Path, tuple[int, int]]
    values: dict[Path, tuple[int, int]]

    def __init__(self, file: str, text: str) -> None:
        self.file = file
        self.lines = text.splitlines()
        self.keys: dict[Path, tuple[int, int]] = {}
        self.values: dict[Path, tuple[int, int]] = {}

    def position(self, path: Path, at_key: bool = False) -> tuple[int, int]:
        """The nearest known position for `path`, walking up to its parents if needed."""
        table = self.keys if at_key else self.values
        for cut in range(len(path), -1, -1):
            prefix = path[:cut]
            if prefix in table:
                return table[prefix]
            if prefix in self.keys:
                return self.keys[prefix]
            if prefix in self.values:
                return self.values[prefix]
        return (1, 1) if self.lines else (0, 0)

    def diagnostic(self, path: Path, message: str, hint: str | None = None,
                   at_key: bool = False, severity: str = "error") -> Diagnostic:
        line, col = self.position(path, at_key)
        source = self.lines[line - 1] if 0 < line <= len(self.lines) else None
        return Diagnostic(self.file, line, col, message, hint, source, severity)

    def at(self, line: int, col: int, message: str, hint: str | None = None) -> Diagnostic:
        source = self.lines[line - 1] if 0 < line <= len(self.lines) else None
        return Diagnostic(self.file, line, col, message, hint, source)


def describe(path: Path) -> str:
    """A human name for the place a path points to: "target 'hero'", "bible 'mira'"."""
    if not path:
        return "the manifest"
    head = path[0]
    if head == "targets" and len(path) >= 2:
        where = f"target '{path[1]}'"
        if len(path) >= 4 and path[2] == "variants":
            where = f"variant '{path[3]}' of {where}"
        return where
    if head == "bibles" and len(path) >= 2:
        return f"bible '{path[1]}'"
    if head == "templates" and len(path) >= 2:
        return f"template '{path[1]}'"
    if head == "profiles" and len(path) >= 2:
        return f"profile '{path[1]}'"
    if head in ("pricing", "limits") and len(path) >= 2:
        return f"{head} for backend '{path[1]}'"
    return str(head)
