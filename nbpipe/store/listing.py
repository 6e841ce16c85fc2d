"""What a remote cache holds (`takes/<frame key>/<sha256>.json` under its prefix), found by key: a
take a lock pins is read by its known name (one GET, no listing), unless its blob's own metadata
proved it as the build downloaded (or HEADed) that blob (store/pinned.py: `proved`, no record
read; the request kept with it is the frame's, whose hash the key is); the takes of a key not
pinned are listed under that key's own prefix, never the whole remote's (a build of 1,000 frames
on a remote of a million takes asks about its 1,000 keys). Each take record is checked by its
model (store/records.py RemoteTakeRecord); a record that does not validate is a miss. The whole
remote is listed only by whoever needs all of it (gc, a project's first catch-up)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from nbpipe.files import is_sha256
from nbpipe.store.records import RemoteTakeRecord
from nbpipe.store.takes import Take


def _take_pair(raw: bytes) -> tuple[Take, dict[str, Any]] | None:
    """A take record as read from the remote, or None when it is not one (a miss)."""
    try:
        record = RemoteTakeRecord.model_validate(json.loads(raw))
    except ValueError:
        return None
    return Take(**record.take.model_dump()), record.request or {}


TakePairs = list[tuple[Take, dict[str, Any]]]


LOOKUPS = 16  # per-key listings in flight at once


def _one_request(fs: Any) -> dict[str, Any]:
    """Options that make reading a small object one request: s3fs asks each object's size
    first (a HEAD before the GET) unless told to read it whole in one piece."""
    return {"max_concurrency": 1} if hasattr(fs, "max_concurrency") else {}


class RemoteTakes:
    """What a remote holds, asked key by key and remembered for the command: `_listed` holds
    the keys whose takes were all listed (complete), `_seen` the takes read by their known
    name (a key's pinned take: enough to restore it, not all of the key's takes)."""

    fs: Any  # an fsspec filesystem (s3fs, gcsfs...: no type information)
    root: str
    _unreachable: Callable[[BaseException], None]
    _everything: bool  # the whole remote was listed: a key not in _listed has no takes
    _listed: dict[str, set[str]]
    _seen: dict[str, set[str]]
    _takes: dict[str, dict[str, tuple[Take, dict[str, Any]]]]  # key → digest → record read
    _missed: set[tuple[str, str]]  # records absent or not valid: not asked again

    def __init__(self, fs: Any, root: str, unreachable: Callable[[BaseException], None]):
        self.fs, self.root = fs, root
        self._unreachable = unreachable  # told of every read that failed other than absent
        self._everything = False
        self._listed, self._seen, self._takes, self._missed = {}, {}, {}, set()

    def index(self) -> dict[str, set[str]]:
        """frame key → digests of its takes on the remote: the whole remote, listed once (gc,
        a project's first catch-up); a failed listing is remembered as unreachable."""
        if not self._everything:
            found = self._find(f"{self.root}/takes")
            if found is None:
                return dict(self._listed)
            self._listed.update(found)
            self._everything = True
        return self._listed

    def digests(self, key: str) -> set[str]:
        """The digests of the key's takes: all of them once listed; before that, those read by
        their known name if any (a pinned take needs no listing), else the key is listed."""
        if key not in self._listed and not self._everything and not self._seen.get(key):
            self.list_keys([key])
        return self._listed.get(key, set()) | self._seen.get(key, set())

    def known(self, key: str) -> set[str]:
        """The key's digests found so far, asking nothing."""
        return self._listed.get(key, set()) | self._seen.get(key, set())

    def holds(self, key: str, digest: str) -> bool:
        """Whether the take is known to be on the remote, asking nothing."""
        return digest in self._listed.get(key, ()) or digest in self._seen.get(key, ())

    def has(self, digest: str) -> bool:
        """A blob the remote holds, by the take records found so far (a blob is written
        before any record names it)."""
        return any(digest in found for found in (*self._listed.values(), *self._seen.values()))

    def proved(self, key: str, take: Take, request: dict[str, Any]) -> None:
        """A take of `key` proven by its blob's own metadata (store/pinned.py), with the
        request of the frame the key is the hash of: its record needs no reading."""
        self._seen.setdefault(key, set()).add(take.digest)
        self._takes.setdefault(key, {})[take.digest] = (take, request)

    def added(self, key: str, digest: str) -> None:
        """A take this command wrote: known from now on, its record read again if asked."""
        self._seen.setdefault(key, set()).add(digest)
        if key in self._listed:
            self._listed[key].add(digest)
        self._takes.get(key, {}).pop(digest, None)
        self._missed.discard((key, digest))

    def takes(self, key: str) -> TakePairs:
        """All the key's takes with their requests, oldest first (the key listed if it was
        not; unreadable records are skipped)."""
        if key not in self._listed and not self._everything:
            self.list_keys([key])
        self.read(key, self._listed.get(key, set()) | self._seen.get(key, set()))
        return sorted(self._takes.get(key, {}).values(), key=lambda pair: pair[0].created)

    def take(self, key: str, digest: str) -> tuple[Take, dict[str, Any]] | None:
        """One take record, read by its known name if it was not yet."""
        self.read(key, [digest])
        return self._takes.get(key, {}).get(digest)

    def prefetch(self, keys: Iterable[str], pinned: Mapping[str, str] | None = None) -> None:
        """What planning needs of many keys, in concurrent batches: a key's pinned take
        (`pinned`: key → digest) read by its known name; the other keys (and a pin the remote
        lacks) listed under their own prefix, and their records read."""
        keys, pinned = list(dict.fromkeys(keys)), pinned or {}
        self.read_many({k: [pinned[k]] for k in keys if k in pinned})
        unknown = [k for k in keys if not self.holds(k, pinned.get(k, ""))]
        self.list_keys(unknown)
        self.read_many({k: sorted(self._listed.get(k, ())) for k in unknown})

    def list_keys(self, keys: list[str]) -> None:
        """List each key's own prefix (concurrently); a key that fails stays unlisted."""
        keys = [k for k in keys if k not in self._listed and not self._everything]
        if not keys:
            return
        with ThreadPoolExecutor(min(LOOKUPS, len(keys))) as pool:
            for key, found in zip(keys, pool.map(
                    lambda k: self._find(f"{self.root}/takes/{k}"), keys), strict=True):
                if found is not None:
                    self._listed[key] = found.get(key, set())

    def read(self, key: str, digests: Iterable[str]) -> None:
        self.read_many({key: list(digests)})

    def _find(self, prefix: str) -> dict[str, set[str]] | None:
        """key → digests of the take records under `prefix`; None if it could not be listed."""
        try:
            paths = self.fs.find(prefix)
        except FileNotFoundError:
            paths = []
        except Exception as exc:
            self._unreachable(exc)
            return None
        found: dict[str, set[str]] = {}
        for path in paths:
            key, _, name = path.rpartition("/takes/")[2].partition("/")
            digest = name.removesuffix(".json")
            if name.endswith(".json") and is_sha256(key) and is_sha256(digest):
                found.setdefault(key, set()).add(digest)
        return found

    def read_many(self, wanted_by_key: Mapping[str, Iterable[str]]) -> None:
        """Read take records by their known names in one concurrent batch; a record found is
        seen (it is on the remote), an absent one is not, another failure is unreachable."""
        wanted = {f"{self.root}/takes/{k}/{d}.json": (k, d) for k, digests in
                  wanted_by_key.items() for d in digests
                  if is_sha256(k) and is_sha256(d) and d not in self._takes.get(k, {})
                  and (k, d) not in self._missed}
        if not wanted:
            return
        try:
            found = self.fs.cat(list(wanted), on_error="return", **_one_request(self.fs))
        except Exception as exc:
            self._unreachable(exc)
            return
        if not isinstance(found, dict):  # one path: fsspec answers its bytes alone
            found = {next(iter(wanted)): found}
        for path, (key, digest) in wanted.items():
            raw = found.get(path, FileNotFoundError())
            if isinstance(raw, BaseException):
                if not isinstance(raw, FileNotFoundError):  # not absent: unknown, asked again
                    self._unreachable(raw)
                    continue
                raw = b""
            if (pair := _take_pair(raw)) is not None and pair[0].digest == digest:
                self._seen.setdefault(key, set()).add(digest)
                self._takes.setdefault(key, {})[digest] = pair
            else:
                self._missed.add((key, digest))
