"""Which images a file in the project holds: what gc keeps though no lock pins it.

A build killed after writing an output and before saving its lock leaves a paid image that
only its take and that file know of. The next build takes the file for its own, and pins it
for free, only while the cache has the take: without it the file is one no build can tell from
a user's, left alone (`kept`) with its frame out of the lock. gc has no manifest to say where
outputs are, so it looks at every file in the project, hashing only those whose size is the
size of an image it would remove.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

from nbpipe.store.state import file_sha256

# Never an output (relpath refuses them), and each may be large: not walked.
_SKIP = frozenset({".git", ".nbpipe"})


def held_in_files(root: Path, sizes: dict[str, int], skip: Path | None = None) -> dict[str, str]:
    """Of the images `sizes` names (digest → size in bytes), those a regular file under `root`
    holds: digest → the first such file, relative to `root`. `skip`: a folder not walked (the
    cache, when it is inside the project). Links are not followed: a file reached through one
    is not the project's."""
    wanted: dict[int, set[str]] = {}
    for digest, size in sizes.items():
        wanted.setdefault(size, set()).add(digest)
    held: dict[str, str] = {}
    if not wanted:
        return held
    for path, size in _files(root, skip.resolve() if skip is not None else None):
        if size in wanted:
            found = file_sha256(path)
            if found is not None and found in wanted[size]:
                held.setdefault(found, path.relative_to(root).as_posix())
    return held


def _files(root: Path, skip: Path | None) -> Iterator[tuple[Path, int]]:
    """Every regular file under `root` with its size; unreadable folders are passed over."""
    for folder, dirs, names in os.walk(root):
        here = Path(folder)
        dirs[:] = [d for d in dirs if d not in _SKIP and
                   (skip is None or (here / d).resolve() != skip)]
        for name in names:
            path = here / name
            try:
                info = path.lstat()
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode):
                yield path, info.st_size
