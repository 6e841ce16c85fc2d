"""The input images of a request as a backend takes them: bytes, type, and a URL for HiAPI.

A module of its own because an input is read at the last moment and checked again: a file
edited after the build keyed it must not be sent under the old key (the key would name bytes
the request does not carry), an image from the cache is read verified, and HiAPI, which takes
inputs only as URLs, gets a presigned URL on the project's remote cache, renewed before it
expires.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

from nbpipe.backends.base import InputData
from nbpipe.backends.images import MIME, sniff
from nbpipe.backends.registry import Inputs, spec
from nbpipe.errors import FrameFailed
from nbpipe.plan.frame import InputImage
from nbpipe.store.cache import Cache
from nbpipe.store.remote import Remote, RemoteUnavailable

RENEW_BEFORE = 300  # seconds: a served URL closer to expiry than this is shared anew


def input_data(image: InputImage, backend: str, root: Path, cache: Cache,
               remote: Remote | None, lifetime: int) -> InputData:
    """`image` as `backend` receives it; `lifetime`: seconds a new presigned URL lives."""
    if image.kind == "url":
        return InputData(image, None, url=image.ref)
    data: bytes | None
    if image.kind == "file":
        data = (root / image.ref).read_bytes()
        if image.digest and hashlib.sha256(data).hexdigest() != image.digest:
            raise FrameFailed(f"'{image.ref}' changed after this build keyed it (sha256 "
                              f"{image.digest[:12]}); nothing was sent: build again")
        url, expires = None, None
    else:
        data = cache.read_verified(image.digest) if image.digest else None
        if data is None or image.digest is None:
            raise FrameFailed(f"the image of '{image.ref}' is not in the cache")
        url, expires = cache.served_at(image.digest)
    if spec(backend).inputs is Inputs.URL and remote is not None and \
            (url is None or (expires or 0) < time.time() + RENEW_BEFORE):
        try:
            digest = image.digest or hashlib.sha256(data).hexdigest()
            url = remote.share(digest, data, lifetime)  # presigned, our bucket
        except RemoteUnavailable as exc:
            raise FrameFailed(f"{exc}: HiAPI takes '{image.ref}' as a URL on the remote "
                              "cache; retry when it is back", retry_later=True) from None
        expires = time.time() + lifetime
    return InputData(image, data, MIME.get(sniff(data[:16]) or "", "image/png"), url, expires)
