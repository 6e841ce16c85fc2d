"""Names of the marks of pushes still to do (`unpushed/` in the cache; store/cache.py writes
them). Standard library only: the no-op fast path (engine/noop.py) reads them too, and the build
that sends them and the fast path that waits for them must count the same files."""

from __future__ import annotations

import hashlib
import re

_DIGEST = re.compile(r"[0-9a-f]{64}")


def remote_id(url: str) -> str:
    """A short name for a remote cache's URL, for file names (marks of pushes still to do)."""
    return hashlib.sha256(url.encode()).hexdigest()[:16]


def parse(name: str) -> tuple[str, str, str | None] | None:
    """(key, digest, remote id) of a mark's file name, the id None in a mark of older nbpipe
    (`<key>.<digest>`, its remote only inside); None: no mark (a temp file, a stray file)."""
    key, digest, *rest = name.split(".") + [""]
    if not (_DIGEST.fullmatch(key) and _DIGEST.fullmatch(digest)):
        return None
    if rest == [""]:
        return key, digest, None
    if len(rest) == 2 and rest[1] == "" and rest[0]:
        return key, digest, rest[0]
    return None
