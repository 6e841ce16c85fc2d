"""Checking that bytes are an image before they enter the cache: magic bytes, then a decode."""

from __future__ import annotations

import threading
from pathlib import Path

from nbpipe.errors import FrameFailed
from nbpipe.imagefmt import MIME, sniff

__all__ = ["MIME", "sniff", "verify_image"]


_DECODING = threading.BoundedSemaphore(1)  # one full decode at a time: bounded memory


def verify_image(path: Path) -> str:
    """The image format of the file (png | jpeg | webp), or FrameFailed if it is not one."""
    with _DECODING:
        return _verify(path)


def _verify(path: Path) -> str:
    from PIL import Image, UnidentifiedImageError

    with open(path, "rb") as handle:
        head = handle.read(16)
    fmt = sniff(head)
    if fmt is None:
        raise FrameFailed(f"the server's bytes are not an image (they start {head[:8]!r})")
    try:
        with Image.open(path) as image:
            image.load()  # a full decode: a truncated image fails here
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise FrameFailed(f"the {fmt} image does not decode ({exc})") from None
    return fmt
