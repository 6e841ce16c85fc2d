"""`pins/<project>.json` in the cache: the digests each project's lock pins, so gc on a cache
shared by several projects keeps every project's pinned images, not only its own."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from nbpipe.files import atomic_write
from nbpipe.projectfile import LOCK_CAP, FileRefused, read_capped


class Pins:
    """The pins of every project that uses one cache."""

    folder: Path

    def __init__(self, folder: Path):
        self.folder = folder

    def record(self, project: Path, digests: set[str]) -> None:
        self.folder.mkdir(exist_ok=True)
        name = hashlib.sha256(str(project.resolve()).encode()).hexdigest()[:16] + ".json"
        atomic_write(self.folder / name, json.dumps({"project": str(project.resolve()),
                                                     "digests": sorted(digests)}).encode())

    def all(self) -> set[str]:
        pinned: set[str] = set()
        for path in self.folder.glob("*.json"):
            try:
                digests = json.loads(read_capped(path, LOCK_CAP)).get("digests", [])
            except (OSError, ValueError, AttributeError, FileRefused):
                continue
            if isinstance(digests, list):
                pinned.update(d for d in digests if isinstance(d, str))
        return pinned
