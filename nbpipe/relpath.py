"""Project-relative paths, checked by their text alone (no file system): shared by the manifest's
outputs and inputs (plan/paths.py) and by what the store reads back (the lock, state.json),
since a lock or a state file can be as hostile as a manifest."""

from __future__ import annotations

import re

MAX_PART_BYTES = 255  # a file name longer than this fails at write time (ENAMETOOLONG)
MAX_PATH_BYTES = 1024
# What an output may never be: nbpipe's own files, its cache, and git's (a hook is code).
RESERVED_FILES = ("nbpipe.yaml", "nbpipe.lock")
RESERVED_DIRS = (".nbpipe", ".git")
_DRIVE = re.compile(r"^[A-Za-z]:")


class PathRefused(Exception):
    """A path that leaves the project, or names something that is not a plain file."""


def relative_path(text: str) -> str:
    """The normalised project-relative POSIX path, or PathRefused if it could leave the project."""
    if not isinstance(text, str) or not text or "\x00" in text:
        raise PathRefused("an empty path")
    slashed = text.replace("\\", "/")
    if slashed.startswith("/") or _DRIVE.match(slashed):
        raise PathRefused(f"'{text}' is an absolute path")
    parts = [p for p in slashed.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise PathRefused(f"'{text}' climbs out with '..'")
    if not parts:
        raise PathRefused(f"'{text}' names the project directory itself")
    return "/".join(parts)


def output_path(text: str) -> str:
    """A path nbpipe may write an image to: relative, inside, not one of nbpipe's or git's own
    files, and short enough for the file system."""
    rel = relative_path(text)
    parts = rel.split("/")
    # Compared case-folded: on macOS and Windows `.GIT/hooks` is `.git/hooks`.
    first, whole = parts[0].casefold().rstrip(". "), rel.casefold()
    if whole in RESERVED_FILES or first in RESERVED_DIRS:
        raise PathRefused(f"'{rel}' is nbpipe's or git's own file; an output may not replace it")
    long = next((p for p in parts if len(p.encode("utf-8", "replace")) > MAX_PART_BYTES), None)
    if long is not None:
        raise PathRefused(f"a file name in '{rel[:60]}…' is longer than {MAX_PART_BYTES} bytes")
    if len(rel.encode("utf-8", "replace")) > MAX_PATH_BYTES:
        raise PathRefused(f"'{rel[:60]}…' is longer than {MAX_PATH_BYTES} bytes")
    return rel
