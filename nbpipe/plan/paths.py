"""Project paths: everything a manifest names must stay inside the project directory."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from nbpipe.filestat import Stat, is_racy, stat_of
from nbpipe.imagefmt import sniff
from nbpipe.relpath import PathRefused, output_path, relative_path

__all__ = ["PathRefused", "ProjectDir", "output_path", "relative_path"]


class ProjectDir:
    """The project directory, with cached symlink resolution and file digests.

    `reads` records each file hashed with its stat from before the read (None if the file
    changed while it was read, or so recently that its stat proves nothing): the no-op
    fingerprint holds exactly what the key was computed from."""

    root: Path
    real_root: Path
    _prefix: str  # the root as text, ending in a separator: a frame's output path is joined
    # to it (os.path.join on a Path, 10,000 times, was a tenth of the checks' time)
    _dirs: dict[str, bool]  # folder → whether it really is inside the project
    _digests: dict[str, str]  # relative path → SHA-256 of its bytes
    reads: dict[str, Stat | None]

    def __init__(self, root: Path) -> None:
        self.root = root
        self.real_root = Path(os.path.realpath(root))
        self._prefix = os.path.join(root, "")
        self._dirs = {}
        self._digests = {}
        self.reads = {}

    def _inside(self, real: str) -> bool:
        return real == str(self.real_root) or real.startswith(str(self.real_root) + os.sep)

    def check_output(self, text: str) -> str:
        """A safe output path: relative, no '..', not nbpipe's or git's own files, and no
        symlinked folder that leads out."""
        rel = output_path(text)
        parent = rel.rpartition("/")[0]
        ok = self._dirs.get(parent)
        if ok is None:
            real = os.path.realpath(os.path.join(self.root, parent))
            ok = self._dirs[parent] = self._inside(real)
        if not ok:
            raise PathRefused(f"'{rel}' leads out of the project through a symbolic link")
        full = self._prefix + rel  # relative and normalised (output_path): a plain join
        if os.path.islink(full) and not self._inside(os.path.realpath(full)):
            raise PathRefused(f"'{rel}' is a symbolic link out of the project")
        return rel

    def file_digest(self, text: str) -> tuple[str, str]:
        """(relative path, SHA-256 of its bytes) of an existing regular file inside the project."""
        rel = relative_path(text)
        if rel in self._digests:
            return rel, self._digests[rel]
        full = self.root / rel
        real = os.path.realpath(full)
        if not self._inside(real):
            raise PathRefused(f"'{rel}' is a symbolic link out of the project")
        try:
            mode = os.stat(real).st_mode
        except FileNotFoundError:
            raise FileNotFoundError(rel) from None
        if not stat.S_ISREG(mode):
            raise PathRefused(f"'{rel}' is not a regular file")
        before = stat_of(full)
        with open(real, "rb") as handle:
            if sniff(handle.read(16)) is None:
                raise PathRefused(f"'{rel}' is not an image file (png, jpeg or webp)")
            handle.seek(0)
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
        steady = before is not None and stat_of(full) == before and not is_racy(before)
        self.reads[rel] = before if steady else None
        self._digests[rel] = digest
        return rel, digest
