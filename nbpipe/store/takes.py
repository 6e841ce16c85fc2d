"""The cache's index from frame key to its takes: `index/`, a diskcache (SQLite, JSON values —
never pickle, the cache may be shared):

    "key:<frame key>"  → {"request": {...}, "takes": [take, ...]}
    "url:<digest>"     → [url, expires]      where a backend serves an image (HiAPI)
    "seq:<frame key>"  → the last take number handed out (only grows; gc leaves it)
    "chosen:<key>"     → the digest a user pinned by hand

An unreadable record is a miss, never a crash; a truncated or foreign index is set aside.
"""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import diskcache  # type: ignore[import-untyped]  # diskcache ships no type information

from nbpipe.store.blobs import Blobs
from nbpipe.store.records import TakeRecord


@dataclass(frozen=True)
class Take:
    """One image rendered for a frame key (the APIs take no seed: a key may have several)."""

    digest: str
    backend: str
    model: str
    format: str  # png | jpeg
    cost_usd: str  # Decimal as text
    created: float  # Unix seconds
    task_id: str | None = None
    url: str | None = None  # where the backend serves it (HiAPI), usable as an edit's input
    url_expires: float | None = None
    take: int | None = None  # its number among the key's takes, the same on every machine
    lane: str = "standard"  # how it was sent (standard, batch, flex): what it cost follows it

    @staticmethod
    def from_json(doc: object) -> Take:
        """A take as stored (the cache may be shared or tampered with); ValueError if any
        field has the wrong type, so a bad record is a miss and never reaches a path or a sum."""
        return Take(**TakeRecord.model_validate(doc).model_dump())


def _take_docs(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The take documents of an index record, whatever shape a damaged record has."""
    takes = record.get("takes")
    return [t for t in takes if isinstance(t, dict)] if isinstance(takes, list) else []


def _positive(value: object) -> int:
    """A counter as stored, 0 when there is none or it is damaged."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _valid_takes(record: dict[str, Any]) -> list[Take]:
    out = []
    for doc in _take_docs(record):
        try:
            out.append(Take.from_json(doc))
        except ValueError:
            continue  # a damaged record: a miss
    return out


# sqlite says these when the disk, not the file, is the problem: never mistake them for a
# corrupt index (setting the index aside would lose every take record on a full disk).
_DISK_TROUBLE = {"database or disk is full": errno.ENOSPC, "disk i/o error": errno.EIO,
                 "attempt to write a readonly database": errno.EROFS,
                 "unable to open database file": errno.EACCES}


def storage_error(exc: sqlite3.Error, path: Path) -> OSError | None:
    """The OSError a sqlite error stands for when the disk is full or unwritable, else None."""
    text = str(exc).lower()
    for words, code in _DISK_TROUBLE.items():
        if words in text:
            return OSError(code, f"{os.strerror(code)} ({exc})", str(path))
    return None


def open_index(path: Path) -> diskcache.Cache:
    # Take records are what was paid for: never evicted by size (diskcache's default culls
    # a big cache), and durable before the journal says `done` (synchronous=FULL).
    settings = {"disk": diskcache.JSONDisk, "eviction_policy": "none", "sqlite_synchronous": 2}
    try:
        return diskcache.Cache(str(path), **settings)
    except sqlite3.DatabaseError as exc:
        if (trouble := storage_error(exc, path)) is not None:
            raise trouble from None
    except OSError:
        pass
    # A truncated or foreign index: set it aside and start a new one. Pinned images are
    # still found through the lock's digests; other takes are re-found as rendered.
    shutil.move(str(path), str(path.with_name(f"index.corrupt-{int(time.time())}")))
    try:
        return diskcache.Cache(str(path), **settings)
    except sqlite3.DatabaseError as exc:
        raise storage_error(exc, path) or OSError(errno.EIO, str(exc), str(path)) from None


class TakeIndex:
    """Frame key → takes (and the few facts kept beside them), over the cache's blobs: a take
    whose blob is gone is not offered."""

    path: Path
    readable: bool
    _blobs: Blobs
    _db: diskcache.Cache | None

    def __init__(self, path: Path, blobs: Blobs, readable: bool):
        self.path = path
        self.readable = readable
        self._blobs = blobs
        self._db = None

    @property
    def db(self) -> diskcache.Cache:
        if self._db is None:
            self._db = open_index(self.path)
        return self._db

    def _get(self, name: str, default: object = None) -> object:
        """A value as stored, or `default` when there is none or it cannot be read."""
        if not self.readable:
            return default
        try:
            found: object = self.db.get(name, default)
        except (sqlite3.DatabaseError, ValueError, OSError):
            return default
        return found

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """An index write; a full or unwritable disk becomes the OSError the build stops on."""
        try:
            with self.db.transact():
                yield
        except sqlite3.Error as exc:
            trouble = storage_error(exc, self.path)
            if trouble is None:
                raise
            raise trouble from None

    def _record(self, key: str) -> dict[str, Any]:
        record = self._get(f"key:{key}")
        return record if isinstance(record, dict) else {}

    def takes(self, key: str) -> list[Take]:
        """Takes of a key whose blob is still present, oldest first."""
        return [t for t in _valid_takes(self._record(key)) if self._blobs.has(t.digest)]

    def request(self, key: str) -> dict[str, Any] | None:
        """The request document that produced the key's takes (for explain), if known."""
        request = self._record(key).get("request")
        return request if isinstance(request, dict) else None

    def add_takes(self, found: Sequence[tuple[str, dict[str, Any], Take]]) -> None:
        """Index many takes in one transaction (a restore from the remote indexes hundreds)."""
        with self._writing():
            for key, request, take in found:
                record = self._record(key)
                takes = [t for t in _take_docs(record) if t.get("digest") != take.digest]
                self.db.set(f"key:{key}", {"request": request, "takes": [*takes, asdict(take)]})
                if take.url:
                    self.db.set(f"url:{take.digest}", [take.url, take.url_expires])

    def drop_take(self, key: str, digest: str) -> None:
        with self._writing():
            record = self._record(key)
            takes = [t for t in _take_docs(record) if t.get("digest") != digest]
            if takes:
                self.db.set(f"key:{key}", {**record, "takes": takes})
            else:
                self.db.delete(f"key:{key}")

    def served_at(self, digest: str) -> tuple[str | None, float | None]:
        """Where a backend serves these bytes (an upstream HiAPI output), and until when."""
        found = self._get(f"url:{digest}")
        if isinstance(found, list) and len(found) == 2 and isinstance(found[0], str):
            return found[0], found[1] if isinstance(found[1], (int, float)) else None
        return None, None

    def keys(self) -> list[str]:
        if not self.readable:
            return []
        try:
            return [k[4:] for k in self.db.iterkeys()
                    if isinstance(k, str) and k.startswith("key:")]
        except sqlite3.DatabaseError:
            return []

    def allocate_take(self, key: str, known: Sequence[Take] = ()) -> int:
        """A take number never handed out before for this key, durable before it is used.

        The number is part of the Idempotency-Key, so it must never repeat: not after a failed
        task (that would replay the failure), not after gc dropped takes, not when another
        machine sharing the remote made takes (`known`: the remote's take records). The counter
        `seq:<key>` only grows; gc leaves it alone (a damaged take record's number is still
        covered by it)."""
        with self._writing():
            takes = _valid_takes(self._record(key))
            numbers = [t.take for t in [*takes, *known] if isinstance(t.take, int)]
            seq = _positive(self._get(f"seq:{key}")) + _positive(self._get(f"failed:{key}"))
            number = max([seq, len(takes), *numbers]) + 1
            self.db.set(f"seq:{key}", number)
            self.db.delete(f"failed:{key}")  # folded into seq (older nbpipe counted here)
        return number

    def choose(self, key: str, digest: str) -> None:
        """Remember the take a user pinned for a key, so a change and a revert restore it."""
        with self._writing():
            self.db.set(f"chosen:{key}", digest)

    def chosen(self, key: str) -> Take | None:
        """The take pinned by hand for this key, if its image is still here."""
        digest = self._get(f"chosen:{key}")
        return next((t for t in self.takes(key) if t.digest == digest), None)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
