"""Checking that bytes are an image before they enter the cache: magic bytes, then a decode."""

from __future__ import annotations

from pathlib import Path

from nbpipe.errors import FrameFailed

_MAGIC = ((b"\x89PNG\r\n\x1a\n", "png"), (b"\xff\xd8\xff", "jpeg"), (b"RIFF", "webp"))
MIME = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
FORMAT_OF_MIME = {v: k for k, v in MIME.items()} | {"image/jpg": "jpeg"}


def sniff(head: bytes) -> str | None:
    for magic, fmt in _MAGIC:
        if head.startswith(magic) and (fmt != "webp" or head[8:12] == b"WEBP"):
            return fmt
    return None


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
