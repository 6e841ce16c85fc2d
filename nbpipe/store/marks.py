"""Marks of pushes still to do: `unpushed/<key>.<sha256>.<remote id>` in the cache, one a take
still to send to the remote named inside (written before the journal says `done`, removed once
pushed: a killed build loses none; one mark per remote, as a shared cache serves several; older
nbpipe wrote `<key>.<sha256>`, still read).

Standard library only: the no-op fast path (engine/noop.py) reads them too, and the build that
sends them and the fast path that waits for them must count the same files (`parse`)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from nbpipe.files import atomic_write, is_sha256
from nbpipe.projectfile import FileRefused, read_capped


def remote_id(url: str) -> str:
    """A short name for a remote cache's URL, for file names (marks of pushes still to do)."""
    return hashlib.sha256(url.encode()).hexdigest()[:16]


def parse(name: str) -> tuple[str, str, str | None] | None:
    """(key, digest, remote id) of a mark's file name, the id None in a mark of older nbpipe
    (`<key>.<digest>`, its remote only inside); None: no mark (a temp file, a stray file)."""
    key, digest, *rest = name.split(".") + [""]
    if not (is_sha256(key) and is_sha256(digest)):
        return None
    if rest == [""]:
        return key, digest, None
    if len(rest) == 2 and rest[1] == "" and rest[0]:
        return key, digest, rest[0]
    return None


class Marks:
    """The marks in one cache's `unpushed/` folder."""

    folder: Path

    def __init__(self, folder: Path):
        self.folder = folder

    def add(self, key: str, digest: str, remote: str) -> None:
        atomic_write(self._mark(key, digest, remote), remote.encode())

    def unpushed(self, remote: str | None = None) -> list[tuple[str, str]]:
        """(key, digest) of the takes still to send to `remote` (None: to any), oldest first."""
        found: dict[tuple[str, str], float] = {}
        for path in self.folder.glob("*.*"):
            mark = parse(path.name)  # what the fast path counts too (engine/noop.py)
            if mark is None:
                continue
            key, digest, named = mark
            try:  # the remote is inside; a name's id not its own is no mark nbpipe clears
                inside = read_capped(path, 1 << 16).decode()
                if named not in (None, remote_id(inside)):
                    continue
                if remote is None or inside == remote:
                    when = path.stat().st_mtime
                    found[key, digest] = min(when, found.get((key, digest), when))
            except (OSError, UnicodeDecodeError, FileRefused):
                continue
        return sorted(found, key=found.__getitem__)

    def pushed(self, key: str, digest: str, remote: str) -> None:
        if is_sha256(key) and is_sha256(digest):
            self._mark(key, digest, remote).unlink(missing_ok=True)
            legacy = self.folder / f"{key}.{digest}"  # one mark for any remote
            try:
                if legacy.read_bytes() == remote.encode():
                    legacy.unlink()
            except OSError:
                pass

    def _mark(self, key: str, digest: str, remote: str) -> Path:
        return self.folder / f"{key}.{digest}.{remote_id(remote)}"
