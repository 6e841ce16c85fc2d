"""A pinned take restored from the remote in one request (S3's API): the GET of its blob, whose
reply carries the take that blob was pushed as (`x-amz-meta-nbpipe-take`, written by
Remote.push), so no take record is read.

The lock is untrusted (a pull request may pin another frame's image), so a pin is taken only
when that metadata names this very key and digest and validates (store/records.py
BlobTakeRecord), and the bytes hash to their name. Anything else falls back to the take's
record, read by its known name (store/listing.py), for the bytes already here: a blob pushed
by an older nbpipe, one first pushed as another key's take, metadata damaged or forged. A
store without object metadata (GCS, a folder, memory) is not asked here at all: its records
and blobs are read by name as before (RemoteTakes.prefetch, Remote.fetch_many).

Bytes are kept only for a proven take. A GET that fails other than "absent" marks the remote
unreachable and stops the GETs not yet sent (a remote that does not answer costs one round,
not one per frame); the pins left are asked the old way, which says what it finds.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from nbpipe.files import SyncBatch, is_sha256
from nbpipe.store.cache import Cache
from nbpipe.store.records import BlobTakeRecord
from nbpipe.store.remote import CHUNK, TAKE_META, Remote
from nbpipe.store.takes import Take

GETS = 16  # blob GETs in flight at once

Pins = Mapping[str, tuple[str, dict[str, Any]]]  # key → (pinned digest, the frame's request)


class _LocalFault(Exception):
    """Writing a downloaded blob to this machine's disk failed: not the remote's doing."""


@contextmanager
def _local() -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        raise _LocalFault(str(exc)) from exc


def take_of(meta: object, key: str, digest: str) -> Take | None:
    """The take a blob's metadata names, if it is one of `key` with `digest`; else None."""
    if not isinstance(meta, Mapping) or not isinstance(raw := meta.get(TAKE_META), str):
        return None
    try:
        record = BlobTakeRecord.model_validate(json.loads(raw))
    except ValueError:  # pydantic's ValidationError and json's JSONDecodeError are ValueErrors
        return None
    if record.key != key or record.take.digest != digest:
        return None
    return Take(**record.take.model_dump())


def fetch_pinned(remote: Remote, pins: Pins, cache: Cache,
                 batch: SyncBatch | None = None) -> frozenset[str]:
    """Download the blob of each pin (key → digest, request) the cache lacks, one GET each, and
    keep it when its take is proven (by the blob's metadata, else by its record); the proven
    takes are known to `remote.listing` with their frame's request. Returns the digests now in
    the cache (durable at `batch`'s sync)."""
    keys_of: dict[str, list[str]] = {}  # digest → the keys pinning it
    for key, (digest, _) in pins.items():
        if is_sha256(key) and is_sha256(digest) and not cache.has_blob(digest):
            keys_of.setdefault(digest, []).append(key)
    if not remote.s3 or not keys_of:
        return frozenset()
    cache.tmp_dir.mkdir(parents=True, exist_ok=True)
    temps = {digest: cache.tmp_dir / f"pin-{digest}" for digest in keys_of}
    try:
        metas = _download(remote, temps)
        unproven: dict[str, list[str]] = {}
        for digest, meta in metas.items():
            for key in keys_of[digest]:
                take = take_of(meta, key, digest)
                if take is not None:
                    remote.listing.proved(key, take, pins[key][1])
                else:
                    unproven[key] = [digest]
        remote.listing.read_many(unproven)  # the record, in one concurrent batch
        return frozenset(digest for digest in metas if any(
            remote.listing.holds(key, digest) for key in keys_of[digest])
            and cache.blobs.adopt(temps[digest], digest, batch))
    finally:
        for temp in temps.values():
            temp.unlink(missing_ok=True)


def _download(remote: Remote, temps: dict[str, Path]) -> dict[str, Mapping[str, Any]]:
    """GET each digest's blob into its temp file: digest → the reply's metadata, for the
    blobs whose bytes hash to their name. Absent ones and local faults are left out; another
    failure is the remote's (unreachable)."""
    paths = {f"{remote.root}/blobs/{digest}": digest for digest in temps}
    future = asyncio.run_coroutine_threadsafe(  # on s3fs's own loop, with its own client
        _get_all(remote.fs, {path: temps[digest] for path, digest in paths.items()}),
        remote.fs.loop)
    try:
        outcomes = future.result()
    except BaseException:  # Ctrl-C: no GET goes on writing temp files behind us
        future.cancel()
        raise
    found: dict[str, Mapping[str, Any]] = {}
    for path, outcome in outcomes.items():
        if isinstance(outcome, tuple):
            sha256, meta = outcome
            if sha256 == paths[path]:  # else damaged: a miss here, asked again by name
                found[paths[path]] = meta
        elif isinstance(outcome, BaseException) and \
                not isinstance(outcome, FileNotFoundError | _LocalFault):
            remote.unreachable_by(outcome)
    return found


Outcome = tuple[str, Mapping[str, Any]] | BaseException | None  # None: not sent


async def _get_all(fs: Any, temps: dict[str, Path]) -> dict[str, Outcome]:
    """Every GET, GETS at a time; after a failure other than "absent", none more is sent."""
    limit, failed = asyncio.Semaphore(GETS), asyncio.Event()

    async def one(path: str, temp: Path) -> Outcome:
        async with limit:
            if failed.is_set():
                return None
            try:
                return await _get(fs, path, temp)
            except (FileNotFoundError, _LocalFault) as exc:
                return exc
            except Exception as exc:
                failed.set()
                return exc

    outcomes = await asyncio.gather(*(one(path, temp) for path, temp in temps.items()))
    return dict(zip(temps, outcomes, strict=True))


async def _get(fs: Any, path: str, temp: Path) -> tuple[str, Mapping[str, Any]]:
    """One GET through s3fs's own client: the body streamed into `temp` (sha256 of its bytes)
    and the reply's user metadata."""
    bucket, key, _ = fs.split_path(path)
    reply = await fs._call_s3("get_object", Bucket=bucket, Key=key)
    body, hashed = reply["Body"], hashlib.sha256()
    try:
        with _local():
            sink = open(temp, "wb")  # closed below: its faults told from the remote's
        try:
            while chunk := await body.read(CHUNK):
                hashed.update(chunk)
                with _local():
                    sink.write(chunk)
        finally:
            with _local():
                sink.close()
    finally:
        body.close()
    meta = reply.get("Metadata")
    return hashed.hexdigest(), meta if isinstance(meta, Mapping) else {}
