"""What a remote cache holds (`takes/<frame key>/<sha256>.json` under its prefix): listed once
per build, each take record read when first asked for and checked by its model
(store/records.py RemoteTakeRecord); a record that does not validate is a miss."""

from __future__ import annotations

import json
from collections.abc import Callable
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


class RemoteTakes:
    """What a remote holds: its take records, listed once per build (planning a thousand
    frames costs one listing, not a thousand requests) and read when first asked for."""

    fs: Any  # an fsspec filesystem (s3fs, gcsfs...: no type information)
    root: str
    _unreachable: Callable[[BaseException], None]
    _index: dict[str, set[str]] | None
    _takes: dict[str, TakePairs]

    def __init__(self, fs: Any, root: str, unreachable: Callable[[BaseException], None]):
        self.fs, self.root = fs, root
        self._unreachable = unreachable  # told of every read that failed other than absent
        self._index = None
        self._takes = {}

    def index(self) -> dict[str, set[str]]:
        """frame key → digests of its takes on the remote (one listing, then remembered)."""
        if self._index is None:
            found: dict[str, set[str]] = {}
            try:
                paths = self.fs.find(f"{self.root}/takes")
            except FileNotFoundError:
                paths = []
            except Exception as exc:
                self._unreachable(exc)
                paths = []
            for path in paths:
                key, _, name = path.rpartition("/takes/")[2].partition("/")
                digest = name.removesuffix(".json")
                if name.endswith(".json") and is_sha256(key) and is_sha256(digest):
                    found.setdefault(key, set()).add(digest)
            self._index = found
        return self._index

    def digests(self, key: str) -> set[str]:
        return self.index().get(key, set())

    def has(self, digest: str) -> bool:
        return any(digest in digests for digests in self.index().values())

    def added(self, key: str, digest: str) -> None:
        """A take this command wrote: listed from now on, its key's records read again."""
        self.index().setdefault(key, set()).add(digest)
        self._takes.pop(key, None)

    def takes(self, key: str) -> TakePairs:
        """The key's takes with their requests, oldest first; unreadable records are skipped."""
        if key not in self._takes:
            self._takes[key] = self._read_takes(key)
        return self._takes[key]

    def prefetch(self, keys: list[str]) -> None:
        """Read the take records of many keys in one concurrent batch (planning needs them)."""
        wanted = {f"{self.root}/takes/{k}/{d}.json": k for k in set(keys) if k not in self._takes
                  for d in self.digests(k)}
        if not wanted:
            return
        try:
            found = self.fs.cat(list(wanted), on_error="return")
        except Exception:
            return
        for path, key in wanted.items():
            self._takes.setdefault(key, [])
            raw = found.get(path, FileNotFoundError())
            if isinstance(raw, BaseException):
                if not isinstance(raw, FileNotFoundError):  # not absent: unknown
                    self._unreachable(raw)
                continue
            if (pair := _take_pair(raw)) is not None:
                self._takes[key].append(pair)
        for key in set(wanted.values()):
            self._takes[key].sort(key=lambda pair: pair[0].created)

    def _read_takes(self, key: str) -> TakePairs:
        out = []
        for digest in self.digests(key):
            try:
                raw = self.fs.cat_file(f"{self.root}/takes/{key}/{digest}.json")
            except FileNotFoundError:
                continue
            except Exception as exc:
                self._unreachable(exc)
                continue
            if (pair := _take_pair(raw)) is not None:
                out.append(pair)
        return sorted(out, key=lambda pair: pair[0].created)
