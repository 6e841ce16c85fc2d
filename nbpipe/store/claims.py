"""Claims on the team remote, so two runners never pay for one request.

Layout under the remote prefix (beside blobs/ and takes/, see store/remote.py):

    claims/<frame key>     the runner about to pay for that key, and its lease

A claim is written create-only (`If-None-Match: *`): of two runners, one gets it. Its holder
renews it every third of the lease by compare-and-swap on its ETag (`If-Match`), so the ETag
changes while the holder lives; a claim whose ETag stands still for a whole lease, timed on
the watcher's own clock (no two runners' clocks are compared), belonged to a runner that died,
and is taken over with one conditional write of that ETag. Only S3's API (S3, R2, MinIO, GCS
through it) has these writes; a store that ignores them is found by a probe (`probe`).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from itertools import count
from typing import Any

from nbpipe.files import is_sha256
from nbpipe.store.remote import Remote, scheme_of

PRECONDITION = {"PreconditionFailed", "ConditionalRequestConflict", "412", "409"}


def refused(exc: BaseException) -> bool:
    """Whether a store error is a condition that did not hold (someone else wrote first), as
    s3fs translates them: FileExistsError for If-None-Match, an OSError caused by the
    ClientError otherwise."""
    if isinstance(exc, FileExistsError):
        return True
    cause = getattr(exc, "__cause__", None)
    reply = getattr(cause, "response", None)
    if not isinstance(reply, dict):
        return False
    code = str((reply.get("Error") or {}).get("Code", ""))
    status = str((reply.get("ResponseMetadata") or {}).get("HTTPStatusCode", ""))
    return code in PRECONDITION or status in PRECONDITION


class ClaimStore:
    """The claim objects of one remote on S3's API: written create-only, renewed or taken over
    by compare-and-swap on the ETag, removed only by the holder of that ETag."""

    fs: Any  # s3fs (no type information)
    bucket: str
    prefix: str  # the remote's prefix in the bucket ("" at the bucket's root)
    lease: float  # seconds a claim lives without renewal
    runner: str  # who this runner is, written into its claims (for whoever looks)
    beats: count[int]  # each write differs, so each has its own ETag
    s3: bool  # whether the store speaks S3's API (the only one with these writes here)

    def __init__(self, remote: Remote, lease: float, runner: str | None = None):
        self.fs = remote.fs
        self.bucket, _, self.prefix = remote.root.partition("/")
        self.lease = lease
        self.runner = runner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.beats = count()
        self.s3 = scheme_of(remote.url) in ("s3", "s3a") and hasattr(remote.fs, "call_s3")

    def _name(self, key: str) -> str:
        return f"{self.prefix}/claims/{key}" if self.prefix else f"claims/{key}"

    def _body(self) -> bytes:
        return json.dumps({"runner": self.runner, "lease": self.lease, "beat": next(self.beats),
                           "at": time.time()}).encode()

    def _put(self, key: str, **condition: str) -> str | None:
        """Write the claim under `condition`: its new ETag, or None if the condition failed."""
        try:
            reply = self.fs.call_s3("put_object", Bucket=self.bucket, Key=self._name(key),
                                    Body=self._body(), **condition)
        except FileNotFoundError:  # If-Match on a claim removed meanwhile
            return None
        except OSError as exc:
            if refused(exc):
                return None
            raise
        return str(reply["ETag"])

    def create(self, key: str) -> str | None:
        """Claim `key` if nobody has: its ETag, or None (another runner's claim is there)."""
        return self._put(key, IfNoneMatch="*")

    def renew(self, key: str, etag: str) -> str | None:
        """Rewrite the claim if it still has `etag` (renewing ours, or taking over a lapsed
        one): its new ETag, or None (it changed or went: not ours)."""
        return self._put(key, IfMatch=etag)

    def look(self, key: str) -> str | None:
        """The ETag of the key's claim now; None if there is none."""
        try:
            reply = self.fs.call_s3("head_object", Bucket=self.bucket, Key=self._name(key))
        except FileNotFoundError:
            return None
        return str(reply["ETag"])

    def release(self, key: str, etag: str) -> None:
        """Remove the claim if it is still the one with `etag` (a claim taken over since is
        the other runner's)."""
        try:
            self.fs.call_s3("delete_object", Bucket=self.bucket, Key=self._name(key),
                            IfMatch=etag)
        except FileNotFoundError:
            pass
        except OSError as exc:
            if not refused(exc):
                raise

    def takes(self, key: str) -> list[str]:
        """Digests of the key's take records on the remote now (one listing of that key, past
        any listing cached for the build: a take another runner pushed since)."""
        base = f"{self.prefix}/takes/{key}/" if self.prefix else f"takes/{key}/"
        reply = self.fs.call_s3("list_objects_v2", Bucket=self.bucket, Prefix=base)
        names = [str(o.get("Key", "")).removeprefix(base) for o in reply.get("Contents", [])]
        return [d for n in names if n.endswith(".json")
                and is_sha256(d := n.removesuffix(".json"))]

    def probe(self) -> str | None:
        """Why this store cannot hold claims (None: it can): a second create-only write of one
        name must be refused; a store that ignores the condition would let both runners in."""
        if not self.s3:
            return "conditional writes are used through S3's API only, and this store has none"
        name = f".probe-{uuid.uuid4().hex}"
        if self.create(name) is None:
            return "a create-only write of a new name was refused"
        try:
            if self.create(name) is not None:
                return "it ignores If-None-Match (a second create-only write succeeded)"
        finally:
            self.fs.call_s3("delete_object", Bucket=self.bucket, Key=self._name(name))
        return None


class Leases:
    """The claims this runner holds, each renewed every third of the lease (on a thread of its
    own, so a renewal never waits for the event loop) until released: after its take is pushed,
    when its request failed, or when the build ends."""

    store: ClaimStore
    held: dict[str, str]  # key → the ETag of our claim
    lost: set[str]  # keys whose claim another runner took over (our lease lapsed)
    _lock: threading.Lock
    _stopping: threading.Event
    _thread: threading.Thread | None

    def __init__(self, store: ClaimStore):
        self.store = store
        self.held = {}
        self.lost = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = None

    def hold(self, key: str, etag: str) -> None:
        with self._lock:
            self.held[key] = etag
            if self._thread is None:
                self._thread = threading.Thread(target=self._renew, name="nbpipe-claims",
                                                daemon=True)
                self._thread.start()

    def release(self, key: str) -> bool:
        """Remove our claim of `key`, if we hold one; False if the remote did not answer (the
        claim then lapses within the lease)."""
        with self._lock:  # never while a renewal of it is out: that would change its ETag
            etag = self.held.pop(key, None)
            if etag is None:
                return True
            try:
                self.store.release(key, etag)
            except Exception:
                return False
        return True

    def abandon(self) -> None:
        """Stop renewing and forget every claim: the remote failed, and each try of a remote
        that does not answer costs seconds; the claims lapse within the lease."""
        self._stopping.set()
        with self._lock:
            self.held.clear()

    def close(self) -> None:
        """Release every claim still held and stop renewing (the build ends); once the remote
        fails to answer, the rest are left to lapse."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
        for key in list(self.held):
            if not self.release(key):
                self.abandon()

    def _renew(self) -> None:
        while not self._stopping.wait(self.store.lease / 3):
            for key in list(self.held):
                with self._lock:
                    etag = self.held.get(key)
                    if etag is None:
                        continue
                    try:
                        renewed = self.store.renew(key, etag)
                    except Exception:
                        continue  # unreachable now: tried again at the next beat
                    if renewed is None:  # lapsed and taken over: the other runner's now
                        del self.held[key]
                        self.lost.add(key)
                    else:
                        self.held[key] = renewed
