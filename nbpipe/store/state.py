"""The project's local state (`<project>/.nbpipe/state.json`, never committed).

Two things, both about files on this machine:
- a stat cache: output path → (size, mtime_ns, ctime_ns, inode, digest), so an unchanged
  output is not re-hashed to learn it is unchanged (see nbpipe.filestat for why the ctime);
- the no-op fingerprint (engine/noop.py): what the last all-fresh build read. If all of it still
  holds, nothing can have changed and the build has nothing to do.

Standard library only: the no-op path imports this and nothing heavy.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path

from nbpipe.filestat import Stat, stat_of
from nbpipe.projectfile import LOCK_CAP, FileRefused, open_regular, read_capped

__all__ = ["STATE_VERSION", "Stat", "State", "file_sha256", "stat_of"]

STATE_VERSION = 1
STAT_FIELDS = 4  # an entry is [*Stat, digest]; one of another length (an older nbpipe) is a miss


def file_sha256(path: str | Path) -> str | None:
    try:
        with open_regular(path, follow=True) as handle:  # a FIFO output must not stall
            return hashlib.file_digest(handle, "sha256").hexdigest()
    except (OSError, FileRefused):
        return None


class State:
    def __init__(self, root: Path):
        self.root = root
        self.path = root / ".nbpipe" / "state.json"
        self.data = self._read(self.path)
        self.outputs: dict[str, list] = self.data.setdefault("outputs", {})
        self.changed = False

    @staticmethod
    def _read(path: Path) -> dict:
        try:
            data = json.loads(read_capped(path, LOCK_CAP).decode("utf-8"))  # a FIFO, /dev/zero
        except (OSError, ValueError, FileRefused):
            return {}
        ok = isinstance(data, dict) and data.get("version") == STATE_VERSION
        return _checked(data) if ok else {}

    def output_digest(self, rel: str) -> str | None:
        """The SHA-256 of an output file (None if missing), re-hashed only if its stat changed."""
        full = os.path.join(self.root, rel)
        stat = stat_of(full)
        if stat is None:
            return None
        known = self.outputs.get(rel)
        if isinstance(known, list) and len(known) == STAT_FIELDS + 1 and \
                tuple(known[:STAT_FIELDS]) == stat:
            return known[STAT_FIELDS]
        digest = file_sha256(full)
        if digest is not None:
            # the stat from before hashing: a write while hashing leaves it stale, never wrong
            self.note_output(rel, digest, stat)
        return digest

    def written_digest(self, rel: str) -> str | None:
        """The digest this machine last saw nbpipe write (or read) at `rel`, stat unchecked."""
        known = self.outputs.get(rel)
        ok = isinstance(known, list) and len(known) == STAT_FIELDS + 1
        return known[STAT_FIELDS] if ok else None

    def known_stat(self, rel: str) -> list | None:
        """The stat the cache holds for an output, or None."""
        known = self.outputs.get(rel)
        ok = isinstance(known, list) and len(known) == STAT_FIELDS + 1
        return list(known[:STAT_FIELDS]) if ok else None

    def note_output(self, rel: str, digest: str, stat: Stat | None = None) -> None:
        stat = stat or stat_of(os.path.join(self.root, rel))
        if stat is not None:
            self.outputs[rel] = [*stat, digest]
            self.changed = True

    def forget_output(self, rel: str) -> None:
        if self.outputs.pop(rel, None) is not None:
            self.changed = True

    @property
    def orphans(self) -> dict[str, str]:
        """Outputs of frames no longer declared: path → digest they were written with."""
        return self.data.setdefault("orphans", {})

    def set_fingerprint(self, fingerprint: dict | None) -> None:
        if self.data.get("fingerprint") != fingerprint:
            self.data["fingerprint"] = fingerprint
            self.changed = True

    def save(self) -> None:
        if not self.changed:
            return
        self.data["version"] = STATE_VERSION
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=self.path.parent, prefix=".state.", suffix=".part")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(self.data, handle, separators=(",", ":"))
            os.replace(temp, self.path)
        finally:
            Path(temp).unlink(missing_ok=True)
        self.changed = False


_HEX64 = re.compile(r"[0-9a-f]{64}")


def _is_digest(value: object) -> bool:
    return isinstance(value, str) and _HEX64.fullmatch(value) is not None


def _is_rel(value: object) -> bool:
    """A project-relative path by its text (the same rule as nbpipe.relpath, kept to the
    standard library: the no-op path reads this file)."""
    if not isinstance(value, str) or not value or "\x00" in value or "\\" in value:
        return False
    parts = value.split("/")
    return not value.startswith("/") and ":" not in parts[0] and ".." not in parts


def _is_stat(value: object) -> bool:
    return isinstance(value, list) and len(value) == STAT_FIELDS + 1 \
        and _is_digest(value[STAT_FIELDS]) \
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value[:STAT_FIELDS])


def _checked(data: dict) -> dict:
    """state.json as read, with every part of the wrong shape dropped: it is only a cache of
    what this machine saw, so a damaged part is forgotten (and re-learnt), never trusted."""
    out: dict = {"version": STATE_VERSION}
    outputs = data.get("outputs")
    if isinstance(outputs, dict):
        out["outputs"] = {k: v for k, v in outputs.items() if _is_rel(k) and _is_stat(v)}
    orphans = data.get("orphans")
    if isinstance(orphans, dict):
        out["orphans"] = {k: v for k, v in orphans.items() if _is_rel(k) and _is_digest(v)}
    failed = data.get("failed")
    if isinstance(failed, dict):
        out["failed"] = {k: v for k, v in failed.items() if isinstance(v, str)}
    totals = data.get("totals")
    if isinstance(totals, dict) and all(_is_amount(totals.get(k)) for k in ("spent_usd", "saved_usd")):
        out["totals"] = {k: totals[k] for k in ("spent_usd", "saved_usd")}
    unpushed = data.get("unpushed")
    if isinstance(unpushed, list):
        out["unpushed"] = [p for p in unpushed if isinstance(p, list) and len(p) == 2
                           and _is_digest(p[0]) and _is_digest(p[1])]
    if isinstance(data.get("synced"), str):  # the remote every take was sent to (ops/push.py)
        out["synced"] = data["synced"]
    fingerprint = data.get("fingerprint")
    if _is_fingerprint(fingerprint):
        out["fingerprint"] = fingerprint
    return out


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
    return isinstance(inputs, dict) and all(_is_rel(k) and isinstance(v, list)
                                            for k, v in inputs.items()) \
        and isinstance(outputs, list) and all(_is_rel(o) for o in outputs) \
        and _is_digest(value.get("manifest")) and _is_digest(value.get("lock")) \
        and isinstance(frames, int) and not isinstance(frames, bool)
