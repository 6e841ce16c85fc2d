"""The write-ahead journal: no paid task is ever forgotten, whatever kills the build.

One JSON line per event, appended and fsync'd before the build moves on:

    {"op": "intent", "key", "take", "frame", "backend", "request"}   before a create is sent
    {"op": "task",   "key", "take", "task_id"}                      as soon as the id is known
    {"op": "done",   "key", "take", "digest"}                       once the image is in the cache
    {"op": "failed", "key", "take"}                                 the task itself failed

A build after a crash, kill -9 or Ctrl-C reads the journal and re-attaches to every task that
has no outcome yet (polls it, downloads it) instead of creating a new one. The window between an
intent and its task id is covered by the Idempotency-Key, which is made from the same key and
take. Lines that do not parse (a torn last write) are skipped. The journal lives in the cache
(`journal.jsonl`) and is compacted to its open entries at the end of each build.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from nbpipe.catalog import builtin
from nbpipe.store.cache import atomic_write, is_digest


@dataclass
class Entry:
    """A render that was started: what for, and the task it created, if that is known yet."""

    key: str
    take: int
    frame: str
    backend: str
    request: dict
    task_id: str | None = None


class Journal:
    def __init__(self, path: Path):
        self.path = path
        self.open: dict[tuple[str, int], Entry] = {}
        self._replay()
        self._handle = None

    def _replay(self) -> None:
        try:
            lines = self.path.read_text("utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            return
        for line in lines:
            try:
                record = json.loads(line)
                self._apply(record)
            except (ValueError, KeyError, TypeError, AttributeError):
                continue  # a torn write at a crash; everything before it stands

    def _apply(self, record: dict) -> None:
        slot = (str(record["key"]), int(record["take"]))
        op = record["op"]
        if op == "intent" and not _sound_intent(record):
            raise ValueError("an intent of the wrong shape")  # damaged: skipped like a torn line
        if op == "intent":
            self.open[slot] = Entry(slot[0], slot[1], str(record["frame"]),
                                    str(record["backend"]), dict(record.get("request") or {}))
        elif op == "task" and slot in self.open:
            self.open[slot].task_id = str(record["task_id"])
        elif op in ("done", "failed"):
            self.open.pop(slot, None)

    def _write(self, record: dict) -> None:
        if self._handle is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = open(self.path, "a", encoding="utf-8")
        self._handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._apply(record)

    def intent(self, key: str, take: int, frame: str, backend: str, request: dict) -> None:
        if (key, take) not in self.open:
            self._write({"op": "intent", "key": key, "take": take, "frame": frame,
                         "backend": backend, "request": request})

    def task(self, key: str, take: int, task_id: str) -> None:
        self._write({"op": "task", "key": key, "take": take, "task_id": task_id})

    def done(self, key: str, take: int, digest: str) -> None:
        self._write({"op": "done", "key": key, "take": take, "digest": digest})

    def failed(self, key: str, take: int) -> None:
        self._write({"op": "failed", "key": key, "take": take})

    def pending_task(self, key: str, take: int) -> str | None:
        entry = self.open.get((key, take))
        return entry.task_id if entry else None

    def close(self) -> None:
        """Compact to the entries still open, so the journal never grows without bound."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        if not self.path.exists():
            return
        lines = []
        for entry in self.open.values():
            lines.append({"op": "intent", "key": entry.key, "take": entry.take,
                          "frame": entry.frame, "backend": entry.backend,
                          "request": entry.request})
            if entry.task_id:
                lines.append({"op": "task", "key": entry.key, "take": entry.take,
                              "task_id": entry.task_id})
        atomic_write(self.path, "".join(json.dumps(r) + "\n" for r in lines).encode())


def _sound_intent(record: dict) -> bool:
    """An intent a later build can act on (the cache may be shared or damaged): a digest key,
    a model of the catalogue, and a request whose parameters that model takes."""
    request = record.get("request")
    if not (is_digest(record.get("key")) and isinstance(record.get("frame"), str)
            and isinstance(request, dict) and isinstance(request.get("prompt", ""), str)):
        return False
    spec = builtin().get(str(record.get("backend")), str(request.get("model")))
    params = request.get("params", {})
    if spec is None or not isinstance(params, dict) or \
            not all(isinstance(v, str) for v in params.values()):
        return False
    return params.get("aspect_ratio", spec.aspect_ratios[0]) in spec.aspect_ratios and \
        params.get("resolution", "") in ("", *spec.resolutions) and \
        params.get("output_format", "png") in ("png", "jpeg", "jpg")
