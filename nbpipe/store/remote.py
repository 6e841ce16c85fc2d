"""A shared cache on object storage (S3, R2, MinIO, GCS... any fsspec URL).

Layout under the remote prefix:

    blobs/<sha256>                   image bytes, content-addressed, written first; on S3 with
                                     the take it was first pushed as in its own metadata
                                     (`x-amz-meta-nbpipe-take`: the key and the take's fields
                                     as compact JSON, never the request; none if over MAX_META)
    takes/<frame key>/<sha256>.json  one immutable record per take: the take and its request

Concurrent writers never corrupt each other: a blob is named by its content, so two writers
write the same bytes (the first writer's metadata stays: a blob pushed again as another key's
take, or uploaded by `share` first, names no take of that key); a take record is written after
its blob and never rewritten. Reads trust nothing: a downloaded blob must hash to its name, or
it is a miss. A frame's takes are found by key: a take a build restores (a pinned one, or a
listed key's only take) comes in one GET of its blob whose metadata proves it is a take of
that key (store/pinned.py; a HEAD of it when the bytes are here), so a clone with the lock
makes one request a frame; a take that metadata does not prove (older blobs, another key's, a
store without metadata: GCS, a folder) is proven by its record, read by its known name
(store/listing.py), the bytes downloaded by name in concurrent batches; another key is listed
under its own prefix.

Storage errors (s3fs, botocore, aiohttp, gcsfs...) are translated here, once: "definitely
absent" (FileNotFoundError) is a miss; anything else (AccessDenied, SlowDown, a timeout, no
network) means the remote's state is unknown, recorded in `unreachable`, and a build does not
turn an unknown into a paid render unless told to (`--remote-errors=render`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from nbpipe.errors import NbpipeError
from nbpipe.files import SyncBatch
from nbpipe.settings import Settings, current
from nbpipe.store.cache import Cache, Take
from nbpipe.store.listing import RemoteTakes, TakePairs

CHUNK = 1 << 20
TAKE_META = "nbpipe-take"  # a blob's metadata naming the take it was pushed as (x-amz-meta-)
MAX_META = 1536  # S3 keeps 2 KB of user metadata an object, names and values together


# A remote that does not answer must cost a build seconds, not minutes: botocore's legacy
# retries (5 attempts with backoff) under s3fs's own (5 more around each) spent ~45 s on every
# request when connections were dropped. One retry layer, 3 attempts, bounded connects. A pool
# of 16 connections: botocore's 10 held back the restore's 16 GETs in flight (store/pinned.py).
S3_CONFIG = {"connect_timeout": 5, "read_timeout": 60, "max_pool_connections": 16}
S3_RETRIES = {"mode": "standard", "total_max_attempts": 3}


class RemoteUnavailable(NbpipeError):
    """The remote cache could not be read or written; what it holds is unknown."""

    why: str

    def __init__(self, why: str):
        super().__init__(f"remote unavailable ({why})")
        self.why = why


def _why(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc)[:120]}"


def _local(exc: BaseException, cache: Cache) -> bool:
    """An OSError about a file of the local cache: this machine's disk, not the remote (a
    remote folder named like the cache, `.nbpipe-team` beside `.nbpipe`, is the remote)."""
    name = exc.filename if isinstance(exc, OSError) else None
    return isinstance(name, (str, os.PathLike)) and \
        Path(os.path.abspath(name)).is_relative_to(os.path.abspath(cache.root))


def _open_fs(url: str, endpoint_url: str | None) -> tuple[Any, str]:
    """The fsspec filesystem of a remote's URL, and the path of its prefix in it."""
    import fsspec  # type: ignore[import-untyped]  # no type information; imported only with a remote

    options: dict[str, Any] = {}
    s3 = scheme_of(url) in ("s3", "s3a")
    if s3:
        user_retries = {"AWS_MAX_ATTEMPTS", "AWS_RETRY_MODE"} & set(os.environ)
        options["config_kwargs"] = {**S3_CONFIG,
                                    **({} if user_retries else {"retries": S3_RETRIES})}
    if endpoint_url and s3:
        options["client_kwargs"] = {"endpoint_url": endpoint_url}
    if scheme_of(url) == "file":  # a folder, named by whoever runs nbpipe: create it as needed
        options["auto_mkdir"] = True
    fs, root = fsspec.core.url_to_fs(url, skip_instance_cache=True, **options)
    if s3:
        fs.retries = 1  # botocore retries (above); s3fs would retry each retry again
    loop = getattr(fs, "loop", None)  # an async filesystem's (fsspec's own thread)
    if isinstance(loop, asyncio.AbstractEventLoop):
        quiet_orphans(loop)
    return fs, str(root).rstrip("/")


def quiet_orphans(loop: asyncio.AbstractEventLoop) -> None:
    """A connection closed under a request (the remote gone mid-send) leaves aiohttp's task
    that was writing it with an error nobody awaits; asyncio prints that task's traceback when
    it is collected. The error is the request's too, and the request's caller translates it
    (`unreachable`, "not pushed"): the orphan's traceback is not for a user. Other errors
    still reach the loop's handler."""
    before = loop.get_exception_handler()

    def handler(where: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        error = context.get("exception")
        if context.get("future") is not None and error is not None and \
                type(error).__module__.partition(".")[0] == "aiohttp":
            return
        if before is not None:
            before(where, context)
        else:
            where.default_exception_handler(context)

    loop.set_exception_handler(handler)


def _place(url: str) -> tuple[str, str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc, parts.path


class Remote:
    """A remote cache: its listing (`listing`, a RemoteTakes) and the bytes moved to and
    from it; a failure is remembered in `unreachable` or `unwritable` for the command."""

    url: str
    fs: Any  # an fsspec filesystem (no type information)
    root: str
    s3: bool  # S3's API through s3fs: blobs carry the take they were pushed as (metadata)
    listing: RemoteTakes
    unreachable: str | None  # why the remote could not be read, if it could not
    unwritable: str | None  # why a write failed: later writes are not tried

    def __init__(self, url: str, endpoint_url: str | None = None):
        self.url = url
        self.fs, self.root = _open_fs(url, endpoint_url)
        self.s3 = scheme_of(url) in ("s3", "s3a") and hasattr(self.fs, "_call_s3")
        self.unreachable = None
        self.unwritable = None
        self.listing = RemoteTakes(self.fs, self.root, self.unreachable_by)

    def unreachable_by(self, exc: BaseException) -> None:
        """A read failed other than "absent": what the remote holds is unknown."""
        self.unreachable = self.unreachable or _why(exc)

    # --- what is there (the listing's, here for its many callers) ------------------------------

    def index(self) -> dict[str, set[str]]:
        return self.listing.index()

    def digests(self, key: str) -> set[str]:
        return self.listing.digests(key)

    def has(self, digest: str) -> bool:
        return self.listing.has(digest)

    def takes(self, key: str) -> TakePairs:
        return self.listing.takes(key)

    def prefetch_takes(self, keys: list[str], pinned: dict[str, str] | None = None) -> None:
        self.listing.prefetch(keys, pinned)

    # --- moving bytes ----------------------------------------------------------------------------

    def fetch_many(self, digests: list[str], cache: Cache, batch: SyncBatch | None = None) -> None:
        """Download many blobs concurrently into the cache; each is verified like `fetch`.
        With a `batch`, they are made durable at its sync (the remote keeps them meanwhile)."""
        digests = [d for d in dict.fromkeys(digests) if not cache.has_blob(d)]
        if not digests:
            return
        cache.tmp_dir.mkdir(parents=True, exist_ok=True)
        temps = [cache.tmp_dir / f"pull-{d}" for d in digests]
        try:
            self.fs.get([f"{self.root}/blobs/{d}" for d in digests], [str(t) for t in temps],
                        on_error="omit")
        except Exception:
            pass
        for digest, temp in zip(digests, temps, strict=True):
            cache.blobs.adopt(temp, digest, batch)

    def fetch(self, digest: str, cache: Cache) -> bool:
        """Download a blob into the local cache, verified by digest; False on any miss."""
        try:
            with self.fs.open(f"{self.root}/blobs/{digest}", "rb") as source, \
                    cache.writer() as sink:
                while chunk := source.read(CHUNK):
                    sink.write(chunk)
                if sink.digest != digest:  # named by its content: a mismatch is corruption
                    return False
                sink.commit()
        except FileNotFoundError:
            return False
        except OSError as exc:
            if _local(exc, cache):
                raise
            self.unreachable_by(exc)
            return False
        except Exception as exc:
            self.unreachable_by(exc)
            return False
        return True

    def read_verified(self, digest: str) -> bytes | None:
        """A blob's bytes, if they hash to its name; None on any miss (nothing is cached)."""
        try:
            data = self.fs.cat_file(f"{self.root}/blobs/{digest}")
        except Exception:
            return None
        return data if hashlib.sha256(data).hexdigest() == digest else None

    def share(self, digest: str, data: bytes, lifetime: int) -> str:
        """An https URL a backend can fetch these bytes from for `lifetime` seconds (uploaded
        under its digest first, if the remote does not have it)."""
        blob = f"{self.root}/blobs/{digest}"
        self._writable()
        try:
            if not self.fs.exists(blob):
                self.fs.pipe_file(blob, data)
            return str(self.fs.sign(blob, expiration=lifetime))
        except Exception as exc:
            self.unreachable_by(exc)
            raise RemoteUnavailable(_why(exc)) from None

    def push(self, key: str, take: Take, request: dict[str, Any], cache: Cache) -> None:
        """Blob first, then the record: a record never points at a missing blob. Raises
        RemoteUnavailable, at once if the remote already failed this command (the caller
        keeps the push for later)."""
        self._writable()
        source = cache.blob_path(take.digest)
        blob = f"{self.root}/blobs/{take.digest}"
        record = f"{self.root}/takes/{key}/{take.digest}.json"
        try:
            if not self.fs.exists(blob):  # else pushed before: as it was, maybe for another key
                meta = take_metadata(key, take) if self.s3 else {}
                self.fs.put_file(str(source), blob, **({"Metadata": meta} if meta else {}))
            if not self.fs.exists(record):
                doc = {"take": {**asdict(take), "url": None, "url_expires": None},
                       "request": request}
                self.fs.pipe_file(record, json.dumps(doc, sort_keys=True).encode())
        except Exception as exc:
            if _local(exc, cache):
                raise
            self.unwritable = self.unwritable or _why(exc)
            raise RemoteUnavailable(_why(exc)) from None
        self.listing.added(key, take.digest)

    def blobs(self) -> dict[str, dict[str, Any]]:
        """digest → what the store says of each blob (its age, for gc)."""
        try:
            found = self.fs.find(f"{self.root}/blobs", detail=True)
        except FileNotFoundError:
            return {}
        except Exception as exc:
            self.unreachable_by(exc)
            raise RemoteUnavailable(_why(exc)) from None
        return {path.rpartition("/")[2]: info for path, info in found.items()}

    def remove(self, key: str | None, digest: str) -> None:
        """Remove a take record (with its key) or a blob (key None)."""
        path = f"{self.root}/takes/{key}/{digest}.json" if key else f"{self.root}/blobs/{digest}"
        try:
            self.fs.rm_file(path)
        except FileNotFoundError:
            pass  # removed by another gc: the outcome wanted
        except Exception as exc:
            self.unwritable = self.unwritable or _why(exc)
            raise RemoteUnavailable(_why(exc)) from None

    def _writable(self) -> None:
        """A remote that failed once in this command is not asked again: each try of a
        remote that does not answer costs seconds, and what is not pushed now is pushed by
        the next build."""
        why = self.unreachable or self.unwritable
        if why:
            raise RemoteUnavailable(why)


def take_metadata(key: str, take: Take) -> dict[str, str]:
    """The metadata a blob is pushed with on S3: the key and the take it is, so a restore of a
    pinned take proves it from the blob's own reply (store/pinned.py); {} when too long for
    S3 (the take's record alone says it then). ASCII JSON: it travels as an HTTP header."""
    fields = {name: value for name, value in asdict(take).items()
              if name not in ("url", "url_expires") and value is not None}
    value = json.dumps({"key": key, "take": fields}, separators=(",", ":"), sort_keys=True)
    return {TAKE_META: value} if len(TAKE_META) + len(value) <= MAX_META else {}


def scheme_of(url: str) -> str:
    scheme, sep, _ = url.partition("://")
    return scheme.lower() if sep else "file"


def remote_url(manifest_remote: str | None, settings: Settings | None = None) -> str | None:
    """The URL of the project's remote cache: $NBPIPE_REMOTE over the manifest's."""
    return (settings or current()).remote or manifest_remote


def configured(root: Path, manifest_remote: str | None, manifest_endpoint: str | None,
               offline: bool, settings: Settings | None = None) -> Remote | None:
    """The remote in force: $NBPIPE_REMOTE over the manifest's `cache.remote`; none offline."""
    settings = settings or current()
    url = remote_url(manifest_remote, settings)
    if offline or not url:
        return None
    return Remote(url, settings.remote_endpoint or manifest_endpoint)


def shares(remote: Remote, digest: str, url: str) -> bool:
    """Whether `url` is one `remote.share` hands out for `digest`, signed at any time (only
    the query, the signature, differs). Signing is local: nothing is sent or uploaded."""
    try:
        signed = str(remote.fs.sign(f"{remote.root}/blobs/{digest}", expiration=60))
    except Exception:  # any store's own failure to sign: then it is no URL of ours
        return False
    return _place(signed) == _place(url)
