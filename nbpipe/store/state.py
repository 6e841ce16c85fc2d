"""The project's local state (`<project>/.nbpipe/state.json`, never committed).

Two things, both about files on this machine:
- a stat cache: output path → (size, mtime_ns, inode, digest), so an unchanged output is not
  re-hashed to learn it is unchanged;
- the no-op fingerprint: after a build that left every frame fresh, the digests of the
  manifest and the lock, the build options, and the stats of every input and output file.
  If all of those still hold, nothing can have changed and the build has nothing to do.

Standard library only: the no-op path imports this and nothing heavy.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

STATE_VERSION = 1
Stat = tuple[int, int, int]


def stat_of(path: str | Path) -> Stat | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ino)


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
        if isinstance(known, list) and len(known) == 4 and tuple(known[:3]) == stat:
            return known[3]
        digest = file_sha256(full)
        if digest is not None:
            self.note_output(rel, digest)
        return digest

    def note_output(self, rel: str, digest: str) -> None:
        stat = stat_of(os.path.join(self.root, rel))
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
