"""Keeping the cache and the output folder tidy: gc (never a pinned take) and clean --orphans."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from nbpipe.errors import UsageError
from nbpipe.ops.held import held_in_files
from nbpipe.ops.push import no_remote
from nbpipe.plan.paths import PathRefused, ProjectDir
from nbpipe.settings import Settings, current
from nbpipe.store.cache import Cache, remove_temp
from nbpipe.store.journal import unfinished
from nbpipe.store.lock import Lock
from nbpipe.store.remote import Remote, RemoteUnavailable
from nbpipe.store.state import State, file_sha256
from nbpipe.store.workspace import JOURNAL, Workspace, open_remote

if TYPE_CHECKING:
    from nbpipe.plan.planner import Project

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*$", re.IGNORECASE)
_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
# A blob younger than the grace (NBPIPE_GC_GRACE, an hour by default) may be a paid image not
# yet indexed: never removed.


def parse_size(text: str) -> int:
    match = _SIZE.match(text)
    if not match:
        raise UsageError(f"cannot read size '{text}'", "use e.g. 500MB, 2G, 800K")
    return int(float(match.group(1)) * 1024 ** " KMGT".index(match.group(2).upper() or " "))


def parse_age(text: str) -> float:
    match = _AGE.match(text)
    if not match:
        raise UsageError(f"cannot read age '{text}'", "use e.g. 30d, 12h, 2w")
    return float(match.group(1)) * _SECONDS[match.group(2).lower()]


DEFAULT_OLDER_THAN = "30d"


@dataclass(frozen=True)
class Candidate:
    key: str
    digest: str
    created: float
    size: int
    label: str  # "stairs/wide-dawn, superseded take 2"


def policy(max_size: str | None, older_than: str | None, default: bool) -> str:
    """The policy gc applies, in words: printed before what it removes."""
    rules = [f"older than {older_than}" if older_than else "",
             f"oldest first until the cache fits in {max_size}" if max_size else ""]
    chosen = " (the default: choose with --older-than AGE or --max-size SIZE)" if default else ""
    return (f"gc: removes takes no lock pins, {' or '.join(r for r in rules if r)}{chosen}; "
            "pinned takes always stay")


def collect(root: Path, cache_dir: Path, max_size: str | None, older_than: str | None,
            dry_run: bool, note: Callable[[str], None], settings: Settings) -> list[str]:
    """`gc`: the policy said, then what went, in the local cache under the build lock."""
    default = not (max_size or older_than)
    older_than = DEFAULT_OLDER_THAN if default else older_than
    with Workspace.opened(root, cache_dir, write=True, note=note, create=False) as space:
        lines = gc(space.cache, space.lock, parse_size(max_size) if max_size else None,
                   parse_age(older_than) if older_than else None, dry_run, branch_pins(root),
                   grace=settings.gc_grace, unpinned_yet=unfinished(cache_dir / JOURNAL),
                   root=root)
    return [policy(max_size, older_than, default), *lines]


def collect_remote(project: Project, refs: tuple[str, ...], older_than: str | None,
                   dry_run: bool, settings: Settings) -> list[str]:
    """`gc --remote`: what went from the remote cache; every git ref's lock pins."""
    root = project.loaded.root
    remote = open_remote(project, settings=settings)
    if remote is None:
        raise no_remote()
    pinned, read = pins_in_git(root, refs)
    pinned |= Lock.load(root).pinned()  # and the working tree's lock
    lines = gc_remote(remote, pinned, parse_age(older_than) if older_than else None, dry_run,
                      grace=settings.gc_grace)
    return [f"pins read from {len(read)} git ref(s) and the working tree", *lines]


def clean(root: Path, cache_dir: Path, dry_run: bool, note: Callable[[str], None]) -> list[str]:
    """`clean --orphans`, under the build lock (it rewrites the state)."""
    with Workspace.opened(root, cache_dir, write=True, note=note, create=False) as space:
        lines = clean_orphans(root, space.state, dry_run)
        space.state.save()
    return lines


def gc(cache: Cache, lock: Lock, max_size: int | None, older_than: float | None,
       dry_run: bool, also_pinned: AbstractSet[str] = frozenset(),
       grace: float | None = None,
       unpinned_yet: AbstractSet[tuple[str, int]] = frozenset(),
       root: Path | None = None) -> list[str]:
    """Remove unpinned takes by age and/or until the blobs fit `max_size`; report lines.

    Pinned means pinned by this project's lock or by any project that recorded its pins in
    this (possibly shared) cache. With neither criterion, only unreferenced blobs and stale
    temp files go: takes are images someone paid for. `unpinned_yet`: the takes (key, number)
    of renders no build has finished with (journal.unfinished): a build killed before it saved
    its lock wrote their images to outputs, and the next build pins them for free only while
    the cache has them (gc would leave those outputs looking like files made outside nbpipe).
    `root`: the project, whose files are looked at for the images gc would remove; one a file
    holds stays (ops/held.py), for the same reason, whatever step came between.
    """
    grace = current().gc_grace if grace is None else grace
    pinned = lock.pinned() | cache.pins.all() | also_pinned
    frame_of = {e.key: name for entries in (*lock.others.values(), lock.entries)
                for name, e in entries.items()}
    referenced: set[str] = set()
    candidates = []
    unpushed = set(cache.unpushed())  # paid, and not on the team's remote yet: kept for it
    waiting = unfinished_kept = 0
    for key in cache.index.keys():
        for number, take in enumerate(cache.takes(key), 1):
            referenced.add(take.digest)
            if take.digest in pinned:
                continue
            if take.take is not None and (key, take.take) in unpinned_yet:
                unfinished_kept += 1
            elif (key, take.digest) in unpushed:
                waiting += 1
            else:
                candidates.append(Candidate(key, take.digest, take.created,
                                            _size(cache.blob_path(take.digest)),
                                            _label(cache, frame_of, key, number)))
    doomed = _choose(candidates, cache, max_size, older_than)
    # every candidate looked for, not only these: without them, --max-size may choose others
    held = held_in_files(root, {c.digest: c.size for c in candidates if c.size}, cache.root) \
        if doomed and root is not None else {}
    if held:
        candidates = [c for c in candidates if c.digest not in held]
        doomed = _choose(candidates, cache, max_size, older_than)
    lines = []
    for c in doomed:
        age = max(0, int((time.time() - c.created) // 86400))
        lines.append(f"{'would remove' if dry_run else 'removed'} {c.label} (sha256 "
                     f"{c.digest[:12]}, {c.size:,} bytes, {age} day{'s' * (age != 1)} old)")
        if not dry_run:
            cache.index.drop_take(c.key, c.digest)
    still = {t.digest for key in cache.index.keys() for t in cache.takes(key)} if doomed \
        else referenced
    gone = {c.digest for c in doomed}  # their blobs go with them: already said
    for blob in _blobs(cache):
        if blob.name not in still and blob.name not in pinned and \
                (blob.name in gone or _age(blob) > grace):  # young: maybe not yet indexed
            if blob.name not in gone:
                lines.append(f"{'would remove' if dry_run else 'removed'} an image no take "
                             f"records (sha256 {blob.name[:12]})")
            if not dry_run:
                blob.unlink(missing_ok=True)
    for temp in cache.blobs.temps(older_than=3600) if not dry_run else ():
        remove_temp(temp)
    freed = sum(c.size for c in doomed)
    lines.append(f"gc: {len(doomed)} take(s), {freed:,} bytes {'to free' if dry_run else 'freed'}; "
                 f"{len(pinned)} pinned image(s) kept" + _also_kept(waiting, unfinished_kept, held))
    return lines


def _also_kept(waiting: int, unfinished_kept: int, held: dict[str, str]) -> str:
    """The unpinned takes gc kept, and why, for its last line."""
    files = ", ".join(sorted(held.values())[:3]) + ", …" * (len(held) > 3)
    return ((f"; {waiting} take(s) not yet pushed kept" if waiting else "")
            + (f"; {unfinished_kept} take(s) of a build that stopped before pinning them kept "
               "(the next build pins them)" if unfinished_kept else "")
            + (f"; {len(held)} image(s) a file in the project holds kept ({files})"
               if held else ""))


def _label(cache: Cache, frame_of: dict[str, str], key: str, number: int) -> str:
    """Which frame a take belongs to, as `nbpipe takes` numbers it."""
    if key in frame_of:
        return f"{frame_of[key]}, superseded take {number}"
    request = cache.index.request(key) or {}
    frame = request.get("frame")
    if isinstance(frame, str) and frame:
        return f"{frame}, take {number} of an earlier request"
    return f"take {number} of an earlier request (key {key[:12]})"


def _choose(candidates: list[Candidate], cache: Cache, max_size: int | None,
            older_than: float | None) -> list[Candidate]:
    doomed: list[Candidate] = []
    if older_than is not None:
        cutoff = time.time() - older_than
        doomed = [c for c in candidates if c.created < cutoff]
    if max_size is not None:
        total = sum(_size(b) for b in _blobs(cache)) - sum(c.size for c in doomed)
        for c in sorted(candidates, key=lambda c: c.created):
            if total <= max_size:
                break
            if c not in doomed:
                doomed.append(c)
                total -= c.size
    return doomed


def _blobs(cache: Cache) -> list[Path]:
    root = cache.root / "blobs"
    return [p for p in root.glob("*/*") if p.is_file()] if root.is_dir() else []


def _age(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return 0.0


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def clean_orphans(root: Path, state: State, dry_run: bool) -> list[str]:
    """Remove outputs of frames no longer declared, if nbpipe's bytes are still what they hold."""
    lines = []
    project = ProjectDir(root)
    for rel, digest in sorted(state.orphans.items()):
        path = root / rel
        try:
            project.check_output(rel)
        except PathRefused as exc:
            lines.append(f"kept     {rel}  ({exc})")
            continue
        current = file_sha256(path) if path.is_file() and not path.is_symlink() else None
        if current is None:
            state.orphans.pop(rel)
        elif current != digest:
            lines.append(f"kept     {rel}  (modified since nbpipe wrote it)")
            continue
        else:
            lines.append(f"{'would remove' if dry_run else 'removed'}  {rel}")
            if not dry_run:
                path.unlink()
                state.orphans.pop(rel)
                state.forget_output(rel)
        state.changed = True
    return lines or ["no orphaned outputs"]


def pins_in_git(root: Path, refs: tuple[str, ...]) -> tuple[set[str], list[str]]:
    """Digests pinned by nbpipe.lock in each git ref (default: every branch), and the refs read."""
    import subprocess

    from nbpipe.store import jsontext
    from nbpipe.store.gitref import git, repo_path, resolve, show

    repo_path(root, why="gc --remote reads the locks of git refs to know what is pinned")
    try:
        names = list(refs) or str(git(root, "for-each-ref", "--format=%(refname)", "refs/heads",
                                      "refs/remotes")).split()
    except (OSError, subprocess.CalledProcessError):
        raise UsageError(f"cannot list the git refs of {root}") from None
    pinned: set[str] = set()
    for ref in names:
        # A ref given by the user is resolved to its commit first: `--refs=--output=FILE` is
        # refused, not passed to git as an option, and a misspelt ref is an error, not a ref
        # that pins nothing (whose images gc would then delete).
        data = show(root, resolve(root, ref) if refs else ref, "nbpipe.lock")
        try:
            doc = jsontext.loads(data) if data is not None else None
        except ValueError:
            continue
        if not isinstance(doc, dict):
            continue  # no lock, or not one, on that ref
        try:
            sections = [doc.get("frames", {}), *doc.get("profiles", {}).values()]
            pinned |= {e["digest"] for s in sections for e in s.values() if isinstance(e, dict)}
        except (AttributeError, KeyError, TypeError):
            continue  # no lock, or not one, on that ref
    return pinned, names


def branch_pins(root: Path) -> set[str]:
    """What the committed lock of every git branch pins (none outside a git repository): a
    branch checked out again restores those images instead of paying for them again."""
    try:
        return pins_in_git(root, ())[0]
    except UsageError:
        return set()


def _remote_age(info: dict[str, object]) -> float:
    """Seconds since a remote object was written; 0 (young: kept) when the store says nothing."""
    stamp = info.get("LastModified") or info.get("mtime") or info.get("updated")
    when = getattr(stamp, "timestamp", None)  # a datetime, whatever its class
    if callable(when):
        return time.time() - float(when())
    if isinstance(stamp, (int, float)):
        return time.time() - stamp
    return 0.0


def gc_remote(remote: Remote, pinned: set[str], older_than: float | None, dry_run: bool,
              grace: float | None = None) -> list[str]:
    """Remove unpinned take records (by age) and blobs no record or lock points at. Everything
    is read before anything is removed: a remote that could not say what it holds, or how old
    it is, loses nothing."""
    grace = current().gc_grace if grace is None else grace
    verb = "would remove" if dry_run else "removed"
    lines, kept = [], set()
    index = remote.index()
    remote.prefetch_takes(list(index))
    created = {key: {t.digest: t.created for t, _ in remote.takes(key)} for key in index}
    if remote.unreachable:
        raise RemoteUnavailable(remote.unreachable)
    cutoff = time.time() - older_than if older_than is not None else None
    doomed: list[tuple[str | None, str]] = []
    for key, digests in index.items():
        for digest in digests:
            old = cutoff is not None and created[key].get(digest, 0) < cutoff
            if digest in pinned or not old:
                kept.add(digest)
                continue
            lines.append(f"{verb} take sha256:{digest[:12]} of key {key[:12]}")
            doomed.append((key, digest))
    blobs = remote.blobs()
    for digest, info in blobs.items():
        if digest not in kept and digest not in pinned and _remote_age(info) > grace:
            lines.append(f"{verb} blob sha256:{digest[:12]}")
            doomed.append((None, digest))
    if not dry_run:
        for record, digest in doomed:  # records first: a record never points at a missing blob
            remote.remove(record, digest)
    lines.append(f"gc --remote: {len(pinned)} pinned image(s) kept")
    return lines
