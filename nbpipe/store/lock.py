"""nbpipe.lock: what each frame is pinned to. Committed; stable sorted JSON, one entry a frame.

A frame is up to date when its current key equals the locked key and its output file's digest
equals the locked digest. The lock's JSON Schema is schemas/nbpipe.lock.schema.json.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from nbpipe.errors import UsageError
from nbpipe.store import jsontext
from nbpipe.store.cache import atomic_write

LOCK_NAME = "nbpipe.lock"
LOCK_VERSION = 1


@dataclass(frozen=True)
class LockEntry:
    """A frame's pinned take: the key it was rendered for and the digest of its image."""

    key: str
    output: str
    digest: str
    backend: str
    model: str
    cost_usd: float


class Lock:
    """The pins of one profile (`frames` for the default, `profiles.NAME` for the others);
    the other profiles' sections are carried through untouched."""

    def __init__(self, entries: dict[str, LockEntry] | None = None, profile: str | None = None,
                 others: dict[str | None, dict[str, LockEntry]] | None = None):
        self.entries: dict[str, LockEntry] = dict(entries or {})
        self.profile = profile
        self.others = dict(others or {})

    @staticmethod
    def load(root: Path, profile: str | None = None) -> "Lock":
        path = root / LOCK_NAME
        try:
            text = path.read_text("utf-8")
        except FileNotFoundError:
            return Lock(profile=profile)
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read {path}: {exc}") from None
        try:
            return Lock.parse(jsontext.loads(text), profile)
        except ValueError as exc:
            raise UsageError(f"{path} is not a valid lock file ({exc})",
                             "a merge conflict? resolve it, or delete the file and rebuild "
                             "(cached images are restored for free)") from None

    @staticmethod
    def parse(doc: dict, profile: str | None = None) -> "Lock":
        """A lock from its JSON document; ValueError when it is not one."""
        try:
            if doc.get("version") != LOCK_VERSION:
                raise ValueError(f"unsupported lock version {doc.get('version')!r}")
            sections = {None: doc["frames"], **doc.get("profiles", {})}
            parsed = {name: {frame: LockEntry(**entry) for frame, entry in frames.items()}
                      for name, frames in sections.items()}
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(str(exc)) from None
        mine = parsed.pop(profile, {})
        return Lock(mine, profile, parsed)

    def text(self) -> str:
        """Sorted JSON with one line per frame: a re-rendered frame is one changed line in git."""
        sections = {**self.others, self.profile: self.entries}
        parts = [f'  "frames": {_section(sections.get(None, {}), "  ")}']
        profiles = {name: entries for name, entries in sections.items() if name and entries}
        if profiles:
            inner = ",\n".join(f"    {json.dumps(name)}: {_section(entries, '    ')}"
                                for name, entries in sorted(profiles.items()))
            parts.append(f'  "profiles": {{\n{inner}\n  }}')
        parts.append(f'  "version": {LOCK_VERSION}')
        return "{\n" + ",\n".join(parts) + "\n}\n"

    def save(self, root: Path) -> bool:
        """Write the lock if its text changed; True if it was written."""
        path = root / LOCK_NAME
        text = self.text()
        try:
            if path.read_text("utf-8") == text:
                return False
        except (OSError, UnicodeDecodeError):
            pass
        atomic_write(path, text.encode("utf-8"))
        return True

    def pinned(self) -> set[str]:
        """Digests pinned by any profile's section (gc keeps them all)."""
        every = [self.entries, *self.others.values()]
        return {e.digest for entries in every for e in entries.values()}


def _section(entries: dict[str, LockEntry], indent: str) -> str:
    if not entries:
        return "{}"
    lines = [f"{indent}  {json.dumps(name, ensure_ascii=False)}: "
             f"{json.dumps(vars(entry), sort_keys=True, ensure_ascii=False)}"
             for name, entry in sorted(entries.items())]
    return "{\n" + ",\n".join(lines) + f"\n{indent}}}"
