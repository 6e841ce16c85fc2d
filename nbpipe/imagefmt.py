"""Image formats by their first bytes (shared by plan/ and backends/; no dependencies)."""

from __future__ import annotations

_MAGIC = ((b"\x89PNG\r\n\x1a\n", "png"), (b"\xff\xd8\xff", "jpeg"), (b"RIFF", "webp"))
MIME = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}


def sniff(head: bytes) -> str | None:
    """png | jpeg | webp from a file's first 16 bytes, or None."""
    for magic, fmt in _MAGIC:
        if head.startswith(magic) and (fmt != "webp" or head[8:12] == b"WEBP"):
            return fmt
    return None
