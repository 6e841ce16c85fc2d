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


LIST_AFTER = 16  # outputs of one folder asked with lstat before the folder is listed


class _Links:
    """Which outputs are symbolic links: asked with one listing of each folder many outputs
    share (10,000 outputs in a folder: one scandir, not 10,000 lstat calls, some 40 ms). A folder's
    first LIST_AFTER outputs are asked with lstat (a few outputs in a big folder list nothing),
    as is a name its listing lacks (an output not made yet, or a spelling only a case-insensitive
    file system matches) and every name of a folder that cannot be listed."""

    _asked: dict[str, int]  # folder → outputs in it asked about so far
    _listed: dict[str, dict[str, bool]]  # folder → each name in it → whether it is a link

    def __init__(self) -> None:
        self._asked = {}
        self._listed = {}

    def is_link(self, folder: str, full: str) -> bool:
        """Whether the file `full` (in the folder `folder`, as text) is a symbolic link."""
        listing = self._listed.get(folder)
        if listing is None:
            asked = self._asked[folder] = self._asked.get(folder, 0) + 1
            if asked > LIST_AFTER:
                listing = self._listed[folder] = _listing(folder)
        if listing is not None and (link := listing.get(full.rpartition("/")[2])) is not None:
            return link
        return os.path.islink(full)


def _listing(folder: str) -> dict[str, bool]:
    try:
        with os.scandir(folder) as entries:
            return {entry.name: entry.is_symlink() for entry in entries}
    except OSError:  # not a folder, gone, not readable: every name asked with lstat
        return {}


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
    _links: _Links
    _digests: dict[str, str]  # relative path → SHA-256 of its bytes
    reads: dict[str, Stat | None]

    def __init__(self, root: Path) -> None:
        self.root = root
        self.real_root = Path(os.path.realpath(root))
        self._prefix = os.path.join(root, "")
        self._dirs = {}
        self._links = _Links()
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
        if self._links.is_link(self._prefix + parent, full) and \
                not self._inside(os.path.realpath(full)):
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
