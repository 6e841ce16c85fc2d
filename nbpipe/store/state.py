"""The project's local state (`<project>/.nbpipe/state.json`, never committed).

Two things, both about files on this machine:
- a stat cache: output path → (size, mtime_ns, ctime_ns, inode, digest), so an unchanged
  output is not re-hashed to learn it is unchanged (see nbpipe.filestat for why the ctime);
- the no-op fingerprint (run/noop.py): what the last all-fresh build read. If all of it still
  holds, nothing can have changed and the build has nothing to do.

Standard library only: the no-op path imports this and nothing heavy.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from nbpipe.filestat import Stat, stat_of

__all__ = ["STATE_VERSION", "Stat", "State", "file_sha256", "stat_of"]

STATE_VERSION = 1
STAT_FIELDS = 4  # an entry is [*Stat, digest]; one of another length (an older nbpipe) is a miss


def file_sha256(path: str | Path) -> str | None:
    try:
        with open(path, "rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()
    except OSError:
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
            data = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError):
            return {}
        ok = isinstance(data, dict) and data.get("version") == STATE_VERSION
        return data if ok else {}

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
