"""Project-relative paths, checked by their text alone (no file system): shared by the manifest's
outputs and inputs (plan/paths.py) and by what the store reads back (the lock, state.json),
since a lock or a state file can be as hostile as a manifest."""

from __future__ import annotations

import functools
import re
import unicodedata

MAX_PART_BYTES = 255  # a file name longer than this fails at write time (ENAMETOOLONG)
MAX_PATH_BYTES = 1024
# What an output may never be: nbpipe's own files, its cache, and git's (a hook is code).
RESERVED_FILES = ("nbpipe.yaml", "nbpipe.lock")
RESERVED_DIRS = (".nbpipe", ".git")
_DRIVE = re.compile(r"^[A-Za-z]:")
# HFS+ ignores these code points in names (the list git checks), so `.g\u200cit` is `.git` there.
_HFS_IGNORED = re.compile("[\u200c-\u200f\u202a-\u202e\u206a-\u206f\ufeff]")
# An NTFS 8.3 short name: up to 6 characters of the long name (or 2 and 4 hex digits), ~N, and
# up to 3 of its extension; `GIT~1` opens `.git`, `NBPIPE~1.LOC` opens `nbpipe.lock`.
_SHORT_NAME = re.compile(r"^([^~.]{1,6})~[0-9]+(?:\.([^.]{1,3}))?$")


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


def fold_name(part: str) -> str:
    """A file name as NTFS, HFS+ and APFS resolve it, so names they open as the same file compare
    equal: an NTFS stream (`name:evil`, `name::$INDEX_ALLOCATION`) is `name`, HFS+'s ignored
    zero-width code points are dropped, case and Unicode normalization are folded, and trailing
    dots and spaces go (Windows strips them)."""
    name = part.partition(":")[0]
    if name.isascii():  # the common case, 10x faster: no ignored code point, NFC is a no-op
        return name.lower().rstrip(". ")  # and casefold() is lower() on ASCII
    name = _HFS_IGNORED.sub("", name)
    return unicodedata.normalize("NFC", name).casefold().rstrip(". ")


def fold_path(rel: str) -> str:
    """A project-relative path with each name folded (`fold_name`): two outputs with the same
    folded path are one file on macOS or Windows."""
    return "/".join(fold_name(part) for part in rel.split("/"))


def _short_name_of(folded: str, name: str) -> bool:
    """Whether `folded` can be the NTFS 8.3 short name of the file `name`."""
    if "~" not in folded:  # what nearly every name gets: no regex
        return False
    match = _SHORT_NAME.match(folded)
    if match is None:
        return False
    stem, dot, ext = name.lstrip(".").rpartition(".")
    stem, ext = (stem.replace(".", ""), ext[:3]) if dot else (ext, "")
    base = match[1]
    hashed = len(base) == 6 and base[:2] == stem[:2] and \
        all(c in "0123456789abcdef" for c in base[2:])
    return (match[2] or "") == ext and (stem.startswith(base) or hashed)


def _reserved(folded: list[str]) -> bool:
    """Whether an output whose names fold (`fold_name`) to `folded` would be one of nbpipe's or
    git's own files on any of the file systems a project is checked out on (ext4, NTFS, HFS+,
    APFS)."""
    first = folded[0]
    if first in RESERVED_DIRS or any(_short_name_of(first, d) for d in RESERVED_DIRS):
        return True
    return len(folded) == 1 and (first in RESERVED_FILES or
                                 any(_short_name_of(first, f) for f in RESERVED_FILES))


def output_path(text: str) -> str:
    """A path nbpipe may write an image to: relative, inside, not one of nbpipe's or git's own
    files under any spelling a file system resolves to them, and short enough for the file
    system."""
    return _output_path(text) if isinstance(text, str) else relative_path(text)  # refused


# The lock's entries and the planned frames name the same paths: each is checked once. Only a
# path's text decides the answer (a refusal raises, and is not kept).
@functools.lru_cache(maxsize=1 << 17)
def _output_path(text: str) -> str:
    rel = relative_path(text)
    parts = rel.split("/")
    folded = [fold_name(part) for part in parts]
    if "" in folded or ".." in folded:
        raise PathRefused(f"'{rel}' has a name Windows reads as '.' or '..'")
    if _reserved(folded):
        raise PathRefused(f"'{rel}' is nbpipe's or git's own file; an output may not replace it")
    size = len(rel.encode("utf-8", "replace"))
    # No name can be longer than the whole path: its names are measured only past that length.
    long = next((p for p in parts if len(p.encode("utf-8", "replace")) > MAX_PART_BYTES),
                None) if size > MAX_PART_BYTES else None
    if long is not None:
        raise PathRefused(f"a file name in '{rel[:60]}…' is longer than {MAX_PART_BYTES} bytes")
    if size > MAX_PATH_BYTES:
        raise PathRefused(f"'{rel[:60]}…' is longer than {MAX_PATH_BYTES} bytes")
    return rel
