"""Checking that bytes are an image before they enter the cache: magic bytes, then a decode."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from nbpipe.errors import FrameFailed
from nbpipe.imagefmt import MIME, sniff

__all__ = ["MIME", "sniff", "verify_image", "verify_image_async"]


# One thread decodes, one image at a time: memory stays bounded by one decoded image, and
# glibc keeps one malloc arena for it instead of one per pool thread.
_DECODER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nbpipe-verify")


async def verify_image_async(path: Path) -> str:
    return await asyncio.get_running_loop().run_in_executor(_DECODER, verify_image, path)


def verify_image(path: Path) -> str:
    """The image format of the file (png | jpeg | webp), or FrameFailed if it is not one."""
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
