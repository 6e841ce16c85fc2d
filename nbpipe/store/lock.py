"""nbpipe.lock: what each frame is pinned to. Committed; stable sorted JSON, one entry a frame.

A frame is up to date when its current key equals the locked key and its output file's digest
equals the locked digest. The lock's JSON Schema is schemas/nbpipe.lock.schema.json.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError, field_validator

from nbpipe.catalog import builtin
from nbpipe.errors import UsageError, warn
from nbpipe.files import atomic_write
from nbpipe.projectfile import LOCK_CAP, FileRefused, read_inside
from nbpipe.relpath import PathRefused, output_path
from nbpipe.store import jsontext
from nbpipe.store.records import Sha256

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
    lane: str | None = None  # the lane its take was sent on; None: standard (and older locks)


class _StoredEntry(BaseModel):
    """A lock entry as read: the lock arrives in pull requests, so nothing in it is trusted."""

    model_config = ConfigDict(strict=True, extra="ignore")

    key: Sha256
    output: str
    digest: Sha256
    backend: str
    model: str
    cost_usd: float
    lane: Literal["standard", "batch", "flex"] | None = None

    @field_validator("lane")
    @classmethod
    def _unsaid(cls, value: str | None) -> str | None:
        return None if value == "standard" else value

    @field_validator("output")
    @classmethod
    def _inside(cls, value: str) -> str:
        try:
            return output_path(value)
        except PathRefused as exc:
            raise ValueError(str(exc)) from None

    @field_validator("cost_usd")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value) or value < 0:
            raise ValueError("must be a finite price, 0 or more")
        return value


_WANT = {"string_type": "must be a string", "float_type": "must be a number",
         "missing": "is missing", "model_type": "must be an object"}


# A whole section in one pydantic-core call: validating entry by entry cost 37 us each (0.4 s
# for a 10,000-frame lock); a section with a bad entry is checked again entry by entry, which
# finds and locates each bad one.
_SECTION = TypeAdapter(dict[str, _StoredEntry])


def _entry(doc: Any) -> _StoredEntry | str:
    """The validated entry, or what is wrong with it."""
    try:
        return _StoredEntry.model_validate(doc)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        field = ".".join(str(p) for p in error["loc"]) or "entry"
        why = _WANT.get(error["type"]) or error["msg"].removeprefix("Value error, ")
        return f"'{field}' {why}"


def _pinned(entry: _StoredEntry, known: dict[tuple[str, str], bool]) -> LockEntry | str:
    """The lock entry of a validated one, or why not: its model is not in the catalogue
    (`known` remembers each backend/model pair's answer)."""
    pair = (entry.backend, entry.model)
    if (ok := known.get(pair)) is None:
        ok = known[pair] = builtin().get(*pair) is not None
    if not ok:
        return f"unknown backend/model '{entry.backend[:40]}/{entry.model[:60]}'"
    return LockEntry(entry.key, entry.output, entry.digest, entry.backend, entry.model,
                     entry.cost_usd, entry.lane)


def _line_of(text: str, name: str) -> int:
    needle = json.dumps(name, ensure_ascii=False) + ":"
    return next((i for i, line in enumerate(text.splitlines(), 1)
                 if line.lstrip().startswith(needle)), 0)


class Lock:
    """The pins of one profile (`frames` for the default, `profiles.NAME` for the others);
    the other profiles' sections are carried through untouched."""

    entries: dict[str, LockEntry]
    profile: str | None
    others: dict[str | None, dict[str, LockEntry]]
    digest: str | None  # SHA-256 of the file as last read or saved (None: neither yet)

    def __init__(self, entries: dict[str, LockEntry] | None = None, profile: str | None = None,
                 others: dict[str | None, dict[str, LockEntry]] | None = None):
        self.entries = dict(entries or {})
        self.profile = profile
        self.others = dict(others or {})
        self.digest = None

    @staticmethod
    def load(root: Path, profile: str | None = None, trusted: str | None = None) -> Lock:
        """The lock file of `root` (an empty lock if there is none). `trusted`: the digest of
        a lock this machine wrote and checked (a fingerprint's, engine/noop.py); a file of
        exactly those bytes is not checked entry by entry again."""
        path = root / LOCK_NAME
        try:
            text = read_inside(root, path, LOCK_CAP).decode("utf-8")
        except FileNotFoundError:
            return Lock(profile=profile)
        except FileRefused as exc:  # a committed symlink to a secret or to /dev/zero
            raise UsageError(f"{path} not read: it {exc}",
                             "nbpipe reads only a regular file inside the project as its "
                             "lock") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read {path}: {exc}") from None
        try:
            doc = jsontext.loads(text)
            if not isinstance(doc, dict):
                raise ValueError("not a JSON object")
            digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
            lock = Lock.parse(doc, profile, text, str(path), unchecked=digest == trusted)
        except ValueError as exc:
            raise UsageError(f"{path} is not a valid lock file ({exc})",
                             "a merge conflict? resolve it, or delete the file and rebuild "
                             "(cached images are restored for free)") from None
        lock.digest = digest
        return lock

    @staticmethod
    def parse(doc: dict[str, Any], profile: str | None = None, text: str = "",
              where: str = LOCK_NAME, unchecked: bool = False) -> Lock:
        """A lock from its JSON document (`text`, when known, locates warnings); ValueError
        when it is not one. Each entry is checked: a bad one is left out, with a warning
        (`unchecked`: entries as they are, for a caller that refuses bad ones itself)."""
        try:
            if doc.get("version") != LOCK_VERSION:
                raise ValueError(f"unsupported lock version {doc.get('version')!r}")
            sections = {None: doc["frames"], **doc.get("profiles", {})}
            if not all(isinstance(frames, dict) for frames in sections.values()):
                raise ValueError("a section of frames is not an object")
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(str(exc)) from None
        try:
            parsed = {name: {frame: LockEntry(**entry) for frame, entry in frames.items()}
                      if unchecked else _checked(frames, where, text)
                      for name, frames in sections.items()}
        except TypeError as exc:
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
            if read_inside(root, path, LOCK_CAP) == text.encode("utf-8"):
                self.digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
                return False
        except (OSError, FileRefused):
            pass
        atomic_write(path, text.encode("utf-8"))
        self.digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        return True

    def pinned(self) -> set[str]:
        """Digests pinned by any profile's section (gc keeps them all)."""
        every = [self.entries, *self.others.values()]
        return {e.digest for entries in every for e in entries.values()}


def _checked(frames: dict[str, Any], where: str, text: str) -> dict[str, LockEntry]:
    """The valid entries of a section; a bad one is left out (its frame is then stale, and the
    next build pins it afresh), with a warning that points at its line."""
    try:
        valid: dict[str, _StoredEntry] | None = _SECTION.validate_python(frames)
    except ValidationError:
        valid = None
    out: dict[str, LockEntry] = {}
    known: dict[tuple[str, str], bool] = {}
    for name, doc in frames.items():
        stored = _entry(doc) if valid is None else valid[name]
        found = stored if isinstance(stored, str) else _pinned(stored, known)
        if isinstance(found, LockEntry):
            out[name] = found
            continue
        line = _line_of(text, name)
        at = f":{line}" if line else ""
        warn(f"{LOCK_NAME}{at}: entry of frame '{name[:80]}' ignored: {found} "
             "(the frame is treated as not pinned)", where)
    return out


def _fields(entry: LockEntry) -> dict[str, Any]:
    """An entry as written: the standard lane unsaid, so a lock without lanes reads as before."""
    return {k: v for k, v in vars(entry).items() if not (k == "lane" and v is None)}


# json.dumps builds an encoder on each call given options: one for the 20,000 calls of a big lock
_ENCODE = json.JSONEncoder(sort_keys=True, ensure_ascii=False).encode
_STR = json.encoder.encode_basestring  # a str as json.dumps(..., ensure_ascii=False) writes it


def _line(entry: LockEntry) -> str:
    """An entry's JSON, as `_ENCODE(_fields(entry))` writes it (sorted keys), written out by hand:
    4 times faster, and a build writes the lock's text twice (its fingerprint, its save).
    tests/store/test_lock_state.py holds the two to the same bytes."""
    cost = entry.cost_usd
    try:
        price = repr(cost) if type(cost) is float and math.isfinite(cost) else _ENCODE(cost)
        lane = "" if entry.lane is None else f', "lane": {_STR(entry.lane)}'
        return (f'{{"backend": {_STR(entry.backend)}, "cost_usd": {price}, '
                f'"digest": {_STR(entry.digest)}, "key": {_STR(entry.key)}{lane}, '
                f'"model": {_STR(entry.model)}, "output": {_STR(entry.output)}}}')
    except TypeError:  # a field that is no str: however json writes it
        return _ENCODE(_fields(entry))


def _section(entries: dict[str, LockEntry], indent: str) -> str:
    if not entries:
        return "{}"
    lines = [f"{indent}  {_STR(name)}: {_line(entry)}"
             for name, entry in sorted(entries.items())]
    return "{\n" + ",\n".join(lines) + f"\n{indent}}}"
