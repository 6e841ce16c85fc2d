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

A pin whose bytes the cache holds already is asked with a HEAD of its blob instead: its
metadata proves the take as a GET's would (a record read instead would leave the pin unproven
whenever the record is gone, where the same pin, downloaded, is restored).

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
    """Prove the take of each pin (key → digest, request) in one request: the GET of its
    blob, or a HEAD when the cache holds the bytes already (they say nothing of whose take
    they are: a cache shared by projects, a build stopped after this); proven by the reply's
    metadata, else by the take's record. The proven takes are known to `remote.listing` with
    their frame's request; a downloaded blob is kept only when proven. Returns the digests
    downloaded (durable at `batch`'s sync)."""
    keys_of: dict[str, list[str]] = {}  # digest → the keys pinning it
    for key, (digest, _) in pins.items():
        if is_sha256(key) and is_sha256(digest):
            keys_of.setdefault(digest, []).append(key)
    if not remote.s3 or remote.unreachable or not keys_of:  # unreachable: each ask would fail
        return frozenset()
    cache.tmp_dir.mkdir(parents=True, exist_ok=True)
    temps = {digest: None if cache.has_blob(digest) else cache.tmp_dir / f"pin-{digest}"
             for digest in keys_of}  # None: only its metadata is asked
    try:
        metas = _ask(remote, temps)
        unproven: dict[str, list[str]] = {}
        for digest, meta in metas.items():
            for key in keys_of[digest]:
                take = take_of(meta, key, digest)
                if take is not None:
                    remote.listing.proved(key, take, pins[key][1])
                else:
                    unproven[key] = [digest]
        remote.listing.read_many(unproven)  # the record, in one concurrent batch
        return frozenset(digest for digest in metas if (temp := temps[digest]) is not None
                         and any(remote.listing.holds(key, digest) for key in keys_of[digest])
                         and cache.blobs.adopt(temp, digest, batch))
    finally:
        for temp in temps.values():
            if temp is not None:
                temp.unlink(missing_ok=True)


def _ask(remote: Remote, temps: Mapping[str, Path | None]) -> dict[str, Mapping[str, Any]]:
    """GET each digest's blob into its temp file (HEAD it for a temp of None): digest → the
    reply's metadata, for the blobs whose bytes hash to their name (a HEAD brings none: the
    cache's copy is verified as it is used). Absent ones and local faults are left out; another
    failure is the remote's (unreachable)."""
    paths = {f"{remote.root}/blobs/{digest}": digest for digest in temps}
    future = asyncio.run_coroutine_threadsafe(  # on s3fs's own loop, with its own client
        _ask_all(remote.fs, {path: temps[digest] for path, digest in paths.items()}),
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
            if sha256 is None or sha256 == paths[path]:  # else damaged: a miss, asked by name
                found[paths[path]] = meta
        elif isinstance(outcome, BaseException) and \
                not isinstance(outcome, FileNotFoundError | _LocalFault):
            remote.unreachable_by(outcome)
    return found


# (sha256 of the bytes, None for a HEAD; the metadata) | its failure | None: not sent
Outcome = tuple[str | None, Mapping[str, Any]] | BaseException | None


async def _ask_all(fs: Any, temps: dict[str, Path | None]) -> dict[str, Outcome]:
    """Every GET (or HEAD), GETS at a time; after a failure other than "absent", none more
    is sent."""
    limit, failed = asyncio.Semaphore(GETS), asyncio.Event()

    async def one(path: str, temp: Path | None) -> Outcome:
        async with limit:
            if failed.is_set():
                return None
            try:
                return await (_head(fs, path) if temp is None else _get(fs, path, temp))
            except (FileNotFoundError, _LocalFault) as exc:
                return exc
            except Exception as exc:
                failed.set()
                return exc

    outcomes = await asyncio.gather(*(one(path, temp) for path, temp in temps.items()))
    return dict(zip(temps, outcomes, strict=True))


async def _head(fs: Any, path: str) -> tuple[None, Mapping[str, Any]]:
    """One HEAD through s3fs's own client: the blob's user metadata, no bytes."""
    bucket, key, _ = fs.split_path(path)
    reply = await fs._call_s3("head_object", Bucket=bucket, Key=key)
    meta = reply.get("Metadata")
    return None, meta if isinstance(meta, Mapping) else {}


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
