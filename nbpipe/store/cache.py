"""The cache: every image ever paid for, by content, and an index from frame key to its takes.

Layout of the cache directory (`<project>/.nbpipe/` or $NBPIPE_CACHE_DIR):

    blobs/ab/abcdef…   image bytes, named by their SHA-256 (content-addressed, immutable)
    index/             diskcache (SQLite, JSON values — never pickle, the cache may be shared):
                         "key:<frame key>" → {"request": {...}, "takes": [take, ...]}
    pins/<project>.json  digests each project's lock pins, so gc on a shared cache keeps them
    unpushed/<key>.<sha256>.<remote id>  a take still to send to the remote named inside
                       (written before the journal says `done`, removed once pushed: a killed
                       build loses none; one mark per remote, as a shared cache serves several;
                       older nbpipe wrote `<key>.<sha256>`, still read; names in store/marks.py)
    tmp/               partial writes; renamed into blobs/ only when complete and verified

Writes are atomic (temp file + os.replace). A blob whose bytes no longer match its name, a
missing blob, or an unreadable index entry is a miss, never a crash: the build renders again.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import re
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

import diskcache

from nbpipe.projectfile import LOCK_CAP, FileRefused, open_regular, read_capped
from nbpipe.store import marks
from nbpipe.store.marks import remote_id

CHUNK = 1 << 20
BLOB_CAP = 1 << 30  # a blob read whole; images are far smaller (HiAPI's are capped at 64 MiB)
_DIGEST = re.compile(r"[0-9a-f]{64}")


def is_digest(value: object) -> bool:
    """A SHA-256 in lowercase hex: the only text a blob path is ever built from (a digest read
    from a lock, an index record or a remote could otherwise be `/etc/x` or `../../x`)."""
    return isinstance(value, str) and _DIGEST.fullmatch(value) is not None


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

    @staticmethod
    def from_json(doc: dict) -> Take:
        """A take as stored (the cache may be shared or tampered with); ValueError if any
        field has the wrong type, so a bad record is a miss and never reaches a path or a sum."""
        if not isinstance(doc, dict):
            raise ValueError("a take record is not an object")
        take = Take(**{k: doc.get(k) for k in Take.__dataclass_fields__})
        texts = (take.backend, take.model, take.format, take.cost_usd)
        if not is_digest(take.digest) or not all(isinstance(t, str) for t in texts) \
                or not _number(take.created) or not _money(take.cost_usd) \
                or not isinstance(take.task_id, (str, type(None))) \
                or not isinstance(take.url, (str, type(None))) \
                or not (take.url_expires is None or _number(take.url_expires)) \
                or not (take.take is None or (type(take.take) is int and take.take > 0)):
            raise ValueError("a take record has a field of the wrong type")
        return take


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _money(text: str) -> bool:
    try:
        return Decimal(text).is_finite() and Decimal(text) >= 0
    except (InvalidOperation, ValueError):
        return False


def _take_docs(record: dict) -> list[dict]:
    """The take documents of an index record, whatever shape a damaged record has."""
    takes = record.get("takes")
    return [t for t in takes if isinstance(t, dict)] if isinstance(takes, list) else []


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


class BlobWriter:
    """Streams bytes into a temp file in the cache while hashing them; `commit` names it."""

    def __init__(self, cache: Cache):
        self._cache = cache
        fd, name = tempfile.mkstemp(dir=cache.tmp_dir, prefix="blob-")
        self._file = os.fdopen(fd, "wb")
        self.path = Path(name)
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, chunk: bytes) -> None:
        self._file.write(chunk)
        self._hash.update(chunk)
        self.size += len(chunk)

    def truncate(self) -> None:
        """Start again from the first byte (a retried download)."""
        self._file.seek(0)
        self._file.truncate()
        self._hash = hashlib.sha256()
        self.size = 0

    def flush(self) -> None:
        self._file.flush()

    @property
    def digest(self) -> str:
        """The SHA-256 of what was written so far (check it before committing)."""
        return self._hash.hexdigest()

    def commit(self) -> str:
        """Make the blob durable under its digest; returns the digest."""
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        digest = self._hash.hexdigest()
        target = self._cache.blob_path(digest)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.path, target)
        _fsync_dir(target.parent)
        return digest

    def discard(self) -> None:
        if not self._file.closed:
            self._file.close()
        self.path.unlink(missing_ok=True)


class Cache:
    """Blob store plus take index; safe to share between projects and processes."""

    def __init__(self, root: Path, create: bool = True):
        self.root = root
        self.tmp_dir = root / "tmp"
        if create:
            self.tmp_dir.mkdir(parents=True, exist_ok=True)
        # A read-only look (plan, explain) at a cache that does not exist must not create it.
        self.readable = create or (root / "index").is_dir()
        self._index: diskcache.Cache | None = None

    # --- blobs -------------------------------------------------------------------------------

    def blob_path(self, digest: str) -> Path:
        if not is_digest(digest):
            raise ValueError(f"not a sha256 digest: {str(digest)[:80]!r}")
        return self.root / "blobs" / digest[:2] / digest

    def has_blob(self, digest: str) -> bool:
        return is_digest(digest) and self.blob_path(digest).is_file()

    @contextmanager
    def writer(self) -> Iterator[BlobWriter]:
        """A BlobWriter whose temp file is removed unless committed (crash, error, Ctrl-C)."""
        writer = BlobWriter(self)
        try:
            yield writer
        finally:
            writer.discard()

    def sweep(self) -> int:
        """Remove partial writes left by a killed build. Call only while holding the cache's
        build lock: then no temp file can belong to a live writer."""
        return sum(remove_temp(temp) for temp in self.temps())

    def temps(self, older_than: float = 0) -> list[Path]:
        """What is in tmp/ (modified more than `older_than` seconds ago)."""
        try:
            found = list(self.tmp_dir.iterdir())
        except OSError:
            return []
        now = time.time()
        return [t for t in found if not older_than or now - _mtime(t) > older_than]

    def adopt(self, temp: Path, digest: str) -> bool:
        """Move a downloaded temp file into the store if it hashes to `digest`; else drop it."""
        if not is_digest(digest):
            temp.unlink(missing_ok=True)
            return False
        try:
            with open(temp, "rb") as handle:
                actual = hashlib.file_digest(handle, "sha256").hexdigest()
            if actual != digest:
                return False
            target = self.blob_path(digest)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(temp, target)
            return True
        except OSError:
            return False
        finally:
            temp.unlink(missing_ok=True)

    def put_bytes(self, data: bytes) -> str:
        with self.writer() as writer:
            writer.write(data)
            return writer.commit()

    def read_verified(self, digest: str) -> bytes | None:
        """The blob's bytes if present and intact; a corrupt blob is removed and is a miss."""
        if not is_digest(digest):
            return None
        try:
            data = read_capped(self.blob_path(digest), BLOB_CAP)  # a shared cache: no FIFO
        except (OSError, FileRefused):
            return None
        if hashlib.sha256(data).hexdigest() != digest:
            self.blob_path(digest).unlink(missing_ok=True)
            return None
        return data

    def copy_verified(self, digest: str, dest: Path) -> bool:
        """Atomically write the blob to `dest`, checking its digest on the way; False on a miss."""
        if not is_digest(digest):
            return False
        try:
            source = open_regular(self.blob_path(digest))  # not /dev/zero: a copy must end
        except (OSError, FileRefused):
            return False
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
        try:
            os.fchmod(fd, SHAREABLE)
            hasher = hashlib.sha256()
            with source, os.fdopen(fd, "wb") as out:
                while chunk := source.read(CHUNK):
                    hasher.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())  # durable before a lock names it
            if hasher.hexdigest() != digest:
                self.blob_path(digest).unlink(missing_ok=True)
                return False
            os.replace(temp, dest)
            _fsync_dir(dest.parent)
            return True
        finally:
            Path(temp).unlink(missing_ok=True)

    # --- index -------------------------------------------------------------------------------

    @property
    def index(self) -> diskcache.Cache:
        if self._index is None:
            self._index = self._open_index()
        return self._index

    def _open_index(self) -> diskcache.Cache:
        # Take records are what was paid for: never evicted by size (diskcache's default culls
        # a big cache), and durable before the journal says `done` (synchronous=FULL).
        settings = {"disk": diskcache.JSONDisk, "eviction_policy": "none",
                    "sqlite_synchronous": 2}
        path = self.root / "index"
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

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """An index write; a full or unwritable disk becomes the OSError the build stops on."""
        try:
            with self.index.transact():
                yield
        except sqlite3.Error as exc:
            trouble = storage_error(exc, self.root / "index")
            if trouble is None:
                raise
            raise trouble from None

    def _record(self, key: str) -> dict:
        if not self.readable:
            return {}
        try:
            record = self.index.get(f"key:{key}")
        except (sqlite3.DatabaseError, json.JSONDecodeError, OSError, ValueError):
            return {}
        return record if isinstance(record, dict) else {}

    def takes(self, key: str) -> list[Take]:
        """Takes of a key whose blob is still present, oldest first."""
        out = []
        for doc in _take_docs(self._record(key)):
            try:
                take = Take.from_json(doc)
            except (TypeError, ValueError):
                continue
            if self.has_blob(take.digest):
                out.append(take)
        return out

    def request(self, key: str) -> dict | None:
        """The request document that produced the key's takes (for explain), if known."""
        request = self._record(key).get("request")
        return request if isinstance(request, dict) else None

    def add_take(self, key: str, request: dict, take: Take) -> None:
        with self._writing():
            record = self._record(key)
            takes = [t for t in _take_docs(record) if t.get("digest") != take.digest]
            self.index.set(f"key:{key}", {"request": request, "takes": [*takes, asdict(take)]})
            if take.url:
                self.index.set(f"url:{take.digest}", [take.url, take.url_expires])

    def served_at(self, digest: str) -> tuple[str | None, float | None]:
        """Where a backend serves these bytes (an upstream HiAPI output), and until when."""
        try:
            found = self.index.get(f"url:{digest}") if self.readable else None
        except (sqlite3.DatabaseError, ValueError):
            return None, None
        if isinstance(found, list) and len(found) == 2 and isinstance(found[0], str):
            return found[0], found[1] if isinstance(found[1], (int, float)) else None
        return None, None

    def all_keys(self) -> list[str]:
        if not self.readable:
            return []
        try:
            return [k[4:] for k in self.index.iterkeys()
                    if isinstance(k, str) and k.startswith("key:")]
        except sqlite3.DatabaseError:
            return []

    def allocate_take(self, key: str, known: list[Take] = ()) -> int:
        """A take number never handed out before for this key, durable before it is used.

        The number is part of the Idempotency-Key, so it must never repeat: not after a failed
        task (that would replay the failure), not after gc dropped takes, not when another
        machine sharing the remote made takes (`known`: the remote's take records). The counter
        `seq:<key>` only grows; gc leaves it alone."""
        with self._writing():
            takes = []
            for doc in _take_docs(self._record(key)):
                try:
                    takes.append(Take.from_json(doc))
                except (TypeError, ValueError):
                    continue  # a damaged record: its number is still covered by seq
            numbers = [t.take for t in [*takes, *known] if isinstance(t.take, int)]
            seq = self._number(f"seq:{key}") + self._number(f"failed:{key}")
            number = max([seq, len(takes), *numbers]) + 1
            self.index.set(f"seq:{key}", number)
            self.index.delete(f"failed:{key}")  # folded into seq (older nbpipe counted here)
        return number

    def _number(self, name: str) -> int:
        try:
            value = self.index.get(name, 0)
        except (sqlite3.DatabaseError, ValueError):
            return 0
        return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0

    def choose(self, key: str, digest: str) -> None:
        """Remember the take a user pinned for a key, so a change and a revert restore it."""
        with self._writing():
            self.index.set(f"chosen:{key}", digest)

    def chosen(self, key: str) -> Take | None:
        """The take pinned by hand for this key, if its image is still here."""
        try:
            digest = self.index.get(f"chosen:{key}") if self.readable else None
        except (sqlite3.DatabaseError, ValueError):
            return None
        return next((t for t in self.takes(key) if t.digest == digest), None)

    def drop_take(self, key: str, digest: str) -> None:
        with self._writing():
            record = self._record(key)
            takes = [t for t in _take_docs(record) if t.get("digest") != digest]
            if takes:
                self.index.set(f"key:{key}", {**record, "takes": takes})
            else:
                self.index.delete(f"key:{key}")

    # --- pushes still to do (for the shared remote) --------------------------------------------

    def mark_unpushed(self, key: str, digest: str, remote: str) -> None:
        atomic_write(self._mark(key, digest, remote), remote.encode())

    def unpushed(self, remote: str | None = None) -> list[tuple[str, str]]:
        """(key, digest) of the takes still to send to `remote` (None: to any), oldest first."""
        found = {}
        for path in (self.root / "unpushed").glob("*.*"):
            mark = marks.parse(path.name)  # what the fast path counts too (engine/noop.py)
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

    def mark_pushed(self, key: str, digest: str, remote: str) -> None:
        if is_digest(key) and is_digest(digest):
            self._mark(key, digest, remote).unlink(missing_ok=True)
            legacy = self.root / "unpushed" / f"{key}.{digest}"  # one mark for any remote
            try:
                if legacy.read_bytes() == remote.encode():
                    legacy.unlink()
            except OSError:
                pass

    def _mark(self, key: str, digest: str, remote: str) -> Path:
        return self.root / "unpushed" / f"{key}.{digest}.{remote_id(remote)}"

    # --- pins (for gc on a shared cache) -----------------------------------------------------

    def record_pins(self, project: Path, digests: set[str]) -> None:
        pins = self.root / "pins"
        pins.mkdir(exist_ok=True)
        name = hashlib.sha256(str(project.resolve()).encode()).hexdigest()[:16] + ".json"
        atomic_write(pins / name, json.dumps({"project": str(project.resolve()),
                                              "digests": sorted(digests)}).encode())

    def all_pins(self) -> set[str]:
        pinned: set[str] = set()
        for path in (self.root / "pins").glob("*.json"):
            try:
                pinned.update(json.loads(read_capped(path, LOCK_CAP)).get("digests", []))
            except (OSError, ValueError, AttributeError, FileRefused):
                continue
        return pinned

    def close(self) -> None:
        if self._index is not None:
            self._index.close()


def _umask() -> int:
    mask = os.umask(0o022)  # the only way to read it is to set it; done once, at import
    os.umask(mask)
    return mask


# mkstemp creates 0600 files; outputs and the lock get the mode a plain open() would give them,
# so a web server or a teammate on a shared disk can read what the report links to.
SHAREABLE = 0o666 & ~_umask()


def remove_temp(path: Path) -> int:
    """Remove a leftover of tmp/, whatever it is (a file, a link, or a directory someone put
    there); 1 if it went, 0 if it could not."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    except OSError:
        return 0
    return 1


def _mtime(path: Path) -> float:
    try:
        return path.lstat().st_mtime
    except OSError:
        return time.time()


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old file or the new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        os.fchmod(fd, SHAREABLE)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    finally:
        Path(temp).unlink(missing_ok=True)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
