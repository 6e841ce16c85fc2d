"""The project's local state (`<project>/.nbpipe/state.json`, never committed).

Two things about files on this machine, and one about the services it talks to:
- a stat cache: output path → (size, mtime_ns, ctime_ns, inode, digest), so an unchanged
  output is not re-hashed to learn it is unchanged (see nbpipe.filestat for why the ctime);
- the no-op fingerprint (engine/noop.py): what the last all-fresh build read. If all of it still
  holds, nothing can have changed and the build has nothing to do;
- `durations`: backend → model → the seconds its recent tasks took, so the next build polls
  its first tasks when they are likely done (backends.base.LearnsDurations).

Standard library only at import: the no-op path reads it with `State(root, fast=True)`, its
own reader (`_checked`); the full path reads it through a strict pydantic model
(store/records.py). tests/store/test_records.py holds the two to the same answer.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

from nbpipe.files import atomic_write, is_sha256
from nbpipe.filestat import Stat, is_racy, stat_of
from nbpipe.projectfile import LOCK_CAP, FileRefused, open_regular, read_capped

__all__ = ["STATE_VERSION", "Stat", "State", "file_sha256", "is_durations", "stat_of"]

STATE_VERSION = 1
STAT_FIELDS = 4  # an entry is [*Stat, digest]; one of another length (an older nbpipe) is a miss
MAX_DURATIONS = 25  # seconds kept per model (the backend keeps as many)


def file_sha256(path: str | Path) -> str | None:
    try:
        with open_regular(path, follow=True) as handle:  # a FIFO output must not stall
            return hashlib.file_digest(handle, "sha256").hexdigest()
    except (OSError, FileRefused):
        return None


# state.json as the fast reader last read it (engine/noop.py checks it before the build lock;
# a build that goes on reads it again under the lock), by path: handed once to the next State
# of that path while the file's stat is the same and not racy, so a 10,000-output state is
# parsed once a command, not twice.
_SEEN: dict[Path, tuple[Stat, dict[str, Any]]] = {}


class State:
    """state.json as read (every part of the wrong shape dropped), changed in place, saved
    once at the end if anything changed."""

    root: Path
    _prefix: str  # the root as text ending in a separator (os.path.join on a Path per output
    # asked, each build, was a fifth of the planner's look at every output)
    path: Path
    data: dict[str, Any]
    outputs: dict[str, list[Any]]  # rel → [*Stat, digest]
    changed: bool

    def __init__(self, root: Path, fast: bool = False):
        """`fast`: read with the standard library alone (the no-op fast path, engine/noop.py,
        answers before pydantic is imported); else through the strict model of state.json
        (store/records.py). Both drop the same damaged parts."""
        self.root = root
        self._prefix = os.path.join(root, "")
        self.path = root / ".nbpipe" / "state.json"
        self.data = self._read(self.path, fast)
        self.outputs = self.data.setdefault("outputs", {})
        self.changed = False

    @staticmethod
    def _read(path: Path, fast: bool) -> dict[str, Any]:
        seen = _SEEN.pop(path, None)
        stat = stat_of(path)  # before the read: a write while reading leaves it stale
        if not fast and seen is not None and stat is not None and seen[0] == stat and \
                not is_racy(stat):
            return seen[1]  # as the fast reader read it: both drop the same damaged parts
        try:
            data = json.loads(read_capped(path, LOCK_CAP).decode("utf-8"))  # a FIFO, /dev/zero
        except (OSError, ValueError, FileRefused):
            return {}
        if not fast:
            from nbpipe.store.records import read_state

            return read_state(data)
        checked = _checked(data) if _versioned(data) else {}
        if stat is not None:
            _SEEN[path] = (stat, checked)
        return checked

    def output_digest(self, rel: str) -> str | None:
        """The SHA-256 of an output file (None if missing), re-hashed only if its stat changed."""
        full = self._full(rel)
        stat = stat_of(full)
        if stat is None:
            return None
        known = self.outputs.get(rel)
        if isinstance(known, list) and len(known) == STAT_FIELDS + 1 and \
                tuple(known[:STAT_FIELDS]) == stat:
            return str(known[STAT_FIELDS])
        digest = file_sha256(full)
        if digest is not None:
            # the stat from before hashing: a write while hashing leaves it stale, never wrong
            self.note_output(rel, digest, stat)
        return digest

    def written_digest(self, rel: str) -> str | None:
        """The digest this machine last saw nbpipe write (or read) at `rel`, stat unchecked."""
        known = self.outputs.get(rel)
        return str(known[STAT_FIELDS]) if known and len(known) == STAT_FIELDS + 1 else None

    def known_stat(self, rel: str) -> list[int] | None:
        """The stat the cache holds for an output, or None."""
        known = self.outputs.get(rel)
        return list(known[:STAT_FIELDS]) if known and len(known) == STAT_FIELDS + 1 else None

    def note_output(self, rel: str, digest: str, stat: Stat | None = None) -> None:
        stat = stat or stat_of(self._full(rel))
        if stat is not None:
            self.outputs[rel] = [*stat, digest]
            self.changed = True

    def _full(self, rel: str) -> str:
        """os.path.join(self.root, rel), as text."""
        return rel if rel.startswith("/") else self._prefix + rel

    def forget_output(self, rel: str) -> None:
        if self.outputs.pop(rel, None) is not None:
            self.changed = True

    @property
    def orphans(self) -> dict[str, str]:
        """Outputs of frames no longer declared: path → digest they were written with."""
        orphans: dict[str, str] = self.data.setdefault("orphans", {})
        return orphans

    @property
    def durations(self) -> dict[str, dict[str, list[float]]]:
        """backend → model → the seconds its recent tasks took (as read: checked, unbounded
        in value; whoever polls by them bounds them)."""
        durations: dict[str, dict[str, list[float]]] = self.data.get("durations", {})
        return durations

    def set_durations(self, backend: str, learned: dict[str, list[float]]) -> None:
        kept = {model: [float(s) for s in seen[-MAX_DURATIONS:]]
                for model, seen in learned.items() if seen}
        if kept and self.durations.get(backend) != kept:
            self.data["durations"] = {**self.durations, backend: kept}
            self.changed = True

    def set_fingerprint(self, fingerprint: dict[str, Any] | None) -> None:
        if self.data.get("fingerprint") != fingerprint:
            self.data["fingerprint"] = fingerprint
            self.changed = True

    def save(self) -> None:
        if not self.changed:
            return
        self.data["version"] = STATE_VERSION
        atomic_write(self.path, json.dumps(self.data, separators=(",", ":")).encode("utf-8"))
        self.changed = False


def is_rel(value: object) -> bool:
    """A project-relative path by its text (the same rule as nbpipe.relpath, kept to the
    standard library: the no-op path reads this file)."""
    if not isinstance(value, str) or not value or "\x00" in value or "\\" in value:
        return False
    parts = value.split("/")
    return not value.startswith("/") and ":" not in parts[0] and ".." not in parts


def _is_stat(value: object) -> bool:
    # Asked of every output on every build: the four fields by hand, not a generator (3x the
    # time). `type(...) is int`: JSON makes no other int but bool, which is no stat.
    if type(value) is not list or len(value) != STAT_FIELDS + 1:
        return False
    size, mtime, ctime, inode, digest = value
    return type(size) is int and type(mtime) is int and type(ctime) is int \
        and type(inode) is int and is_sha256(digest)


def _versioned(data: object) -> bool:
    """A state document of this version (`true` is no 1, as in the strict model)."""
    return isinstance(data, dict) and type(data.get("version")) is int \
        and data["version"] == STATE_VERSION


def _checked(data: dict[str, Any]) -> dict[str, Any]:
    """state.json as read, with every part of the wrong shape dropped: it is only a cache of
    what this machine saw, so a damaged part is forgotten (and re-learnt), never trusted."""
    out: dict[str, Any] = {"version": STATE_VERSION}
    outputs = data.get("outputs")
    if isinstance(outputs, dict):
        out["outputs"] = {k: v for k, v in outputs.items() if is_rel(k) and _is_stat(v)}
    orphans = data.get("orphans")
    if isinstance(orphans, dict):
        out["orphans"] = {k: v for k, v in orphans.items() if is_rel(k) and is_sha256(v)}
    failed = data.get("failed")
    if isinstance(failed, dict):
        out["failed"] = {k: v for k, v in failed.items() if isinstance(v, str)}
    totals = data.get("totals")
    if isinstance(totals, dict) and \
            all(_is_amount(totals.get(k)) for k in ("spent_usd", "saved_usd")):
        out["totals"] = {k: totals[k] for k in ("spent_usd", "saved_usd", "spent_earlier_usd")
                         if k in totals and _is_amount(totals[k])}
    unpushed = data.get("unpushed")
    if isinstance(unpushed, list):
        out["unpushed"] = [p for p in unpushed if isinstance(p, list) and len(p) == 2
                           and is_sha256(p[0]) and is_sha256(p[1])]
    if isinstance(data.get("synced"), str):  # the remote every take was sent to (engine/pusher.py)
        out["synced"] = data["synced"]
    fingerprint = data.get("fingerprint")
    if _is_fingerprint(fingerprint):
        out["fingerprint"] = fingerprint
    if is_durations(data.get("durations")):
        out["durations"] = data["durations"]
    return out


def is_durations(value: object) -> bool:
    """backend → model → at most MAX_DURATIONS finite seconds of 0 or more; a part of another
    shape is forgotten whole (it is learnt again in one build)."""
    return isinstance(value, dict) and all(
        isinstance(models, dict) and all(_is_seconds(seen) for seen in models.values())
        for models in value.values())


def _is_seconds(seen: object) -> bool:
    return isinstance(seen, list) and len(seen) <= MAX_DURATIONS and all(
        isinstance(s, int | float) and not isinstance(s, bool) and math.isfinite(s) and s >= 0
        for s in seen)


def _is_amount(value: object) -> bool:
    from decimal import Decimal, InvalidOperation

    try:
        return isinstance(value, str) and Decimal(value).is_finite()
    except (InvalidOperation, ValueError):
        return False


def _is_fingerprint(value: object) -> bool:
    if not isinstance(value, dict):
        return False
    inputs, outputs = value.get("inputs", {}), value.get("outputs", [])
    frames = value.get("frames")
    return isinstance(inputs, dict) and all(is_rel(k) and isinstance(v, list)
                                            for k, v in inputs.items()) \
        and isinstance(outputs, list) and all(is_rel(o) for o in outputs) \
        and is_sha256(value.get("manifest")) and is_sha256(value.get("lock")) \
        and isinstance(frames, int) and not isinstance(frames, bool)
