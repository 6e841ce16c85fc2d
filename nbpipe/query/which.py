"""Provenance: which frame, request, model and take made an image file, found by the file's
bytes (its sha256) among the cache's takes, so a copy anywhere answers too. Nothing is written
into the image: vendors' marks (C2PA, SynthID) must survive, and the file is only read."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from nbpipe.errors import UsageError
from nbpipe.store.cache import Cache


@dataclass(frozen=True)
class Provenance:
    """One take whose image has the file's bytes (`take`: its number in `nbpipe takes`)."""

    frame: str | None
    take: int
    key: str
    backend: str
    model: str
    lane: str
    prompt: str | None
    created: float  # Unix seconds: when its build sent the request
    cost: Decimal
    task_id: str | None


def file_digest(path: Path) -> str:
    """The sha256 of a file's bytes, read in chunks (an image may be large)."""
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    return digest.hexdigest()


def which(cache_dir: Path, digest: str) -> list[Provenance]:
    """Every take in the cache at `cache_dir` whose image is `digest` (the same bytes may be a
    take of several requests); none when the cache has not seen them. Reads only."""
    cache = Cache(cache_dir, create=False)
    try:
        return [found for key in sorted(cache.index.keys())
                for found in _of_key(cache, key, digest)]
    finally:
        cache.close()


def _of_key(cache: Cache, key: str, digest: str) -> list[Provenance]:
    takes = cache.takes(key)
    if not any(t.digest == digest for t in takes):
        return []
    request = cache.index.request(key) or {}  # a stored record is untrusted: take only what is text
    frame, prompt = request.get("frame"), request.get("prompt")
    return [Provenance(frame if isinstance(frame, str) else None, number, key, t.backend,
                       t.model, t.lane, prompt if isinstance(prompt, str) else None, t.created,
                       Decimal(t.cost_usd), t.task_id)
            for number, t in enumerate(takes, 1) if t.digest == digest]
