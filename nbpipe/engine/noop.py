"""The no-op fast path: prove nothing changed since a fully fresh build, without planning.

The fingerprint holds what the planner of that build actually read, and the code that read it:

- the SHA-256 of the manifest bytes it parsed (not of the file at the end of the build);
- each project file hashed into a key, with its stat from before the read (filestat.Stat);
- the digest of the lock it wrote, the build options and the settings the planner reads
  (Settings.planned: the remote, the frame limit), and the outputs' stats (in the stat
  cache, each beside the digest it was hashed to);
- the interpreter's version, and the stats of the libraries whose behaviour shapes a key (the
  template engine renders prompts; the YAML loader and the validator read the manifest): an
  upgrade replaces their files, so new stats stand for a new version;
- the key schema, and a digest of nbpipe's own files (code and the model catalogue,
  data/catalog.json), computed once per install: the fingerprint keeps the files' stats beside
  it, and the content is re-hashed only when those change (an editable or git install edited
  in place, the next retirement);
- the day from which a frame's model nears its shutdown: from then on the full path runs, to
  warn and then refuse, though nothing in the project changed;
- the manifest's stat, which binds the fingerprint to this checkout: `.nbpipe/` is never to be
  committed, and one that was (a pull request in CI) could carry a forged fingerprint naming
  no inputs and no outputs. A checkout gives the manifest an inode and a ctime nobody can
  foresee, so such a fingerprint never matches, and the full path, which refuses a `.nbpipe/`
  that git tracks (store/gitref.py), runs instead; the check itself stays free of git.

A build that sees the manifest or an input change between planning and its end writes no
fingerprint, nor one holding a stat that proves nothing (a racy one, see nbpipe.filestat).
Checking needs reading two small files and one stat per file: no YAML, no templates, no graph.
Anything else (a changed byte, a missing file, no state yet) falls through to the full plan.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import sys
from pathlib import Path
from typing import NamedTuple

from nbpipe import __version__, plan
from nbpipe.filestat import Stat, is_racy, stat_of
from nbpipe.projectfile import LOCK_CAP, MANIFEST_CAP, FileRefused, read_capped
from nbpipe.settings import Settings, current
from nbpipe.store import marks
from nbpipe.store.state import State

MANIFEST = "nbpipe.yaml"
LOCK = "nbpipe.lock"
JOURNAL = "journal.jsonl"  # in the cache directory
PACKAGE = Path(__file__).resolve().parent.parent
# The model catalogue, also named on its own: the next retirement is an edit of it alone.
CATALOGUE = PACKAGE / "data" / "catalog.json"


def _sha(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


# A state file, a mark: what the fast path reads beside the manifest and the lock, bounded too.
MARK_CAP = 1 << 16
_CAPS = {MANIFEST: MANIFEST_CAP, LOCK: LOCK_CAP}


def _project_sha(root: Path, name: str) -> str | None:
    """The digest of project file `name` when it is a regular file, not a symbolic link, within
    its cap; else None, so nothing the fast path compares it to matches: a committed
    `nbpipe.yaml -> /dev/zero` is neither read forever nor trusted (the full path refuses it)."""
    try:
        return hashlib.sha256(read_capped(root / name, _CAPS.get(name, LOCK_CAP))).hexdigest()
    except (OSError, FileRefused):
        return None


def _package_files() -> list[str]:
    found = []
    for folder, dirs, files in os.walk(PACKAGE):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        found += [os.path.join(folder, f) for f in sorted(files) if not f.endswith(".pyc")]
    return found


def code_stats() -> str:
    """A digest of the stats of nbpipe's files: cheap, and changes whenever a file may have."""
    parts = [f"{os.path.relpath(p, PACKAGE)}:{stat_of(p)}" for p in _package_files()]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def code_digest() -> str:
    """A digest of the bytes of nbpipe's files (code, catalogue, templates)."""
    h = hashlib.sha256()
    for path in _package_files():
        h.update(os.path.relpath(path, PACKAGE).encode() + b"\0")
        h.update((_sha(Path(path)) or "-").encode())
    return h.hexdigest()


def _code(previous: object) -> Json:
    stats = code_stats()
    if isinstance(previous, dict) and previous.get("stats") == stats and previous.get("digest"):
        return previous  # computed once per install, not once per build
    return {"stats": stats, "digest": code_digest()}


def _code_unchanged(recorded: object) -> bool:
    if not isinstance(recorded, dict):
        return False
    return recorded.get("stats") == code_stats() or recorded.get("digest") == code_digest()


Json = dict[str, object]  # a fingerprint, or a part of one, as state.json holds it


# Modules whose upgrade may change what a manifest plans to (their top files' stats are kept).
KEY_LIBRARIES = ("jinja2", "ruamel.yaml", "pydantic", "pydantic_core")


def _libraries() -> dict[str, list[object]] | None:
    """Each key library's file → its stat, as loaded by this (planning) process; None if one
    is not loaded or has no file: then nothing proves the next process runs the same one."""
    found: dict[str, list[object]] = {}
    for name in KEY_LIBRARIES:
        path = getattr(sys.modules.get(name), "__file__", None)
        stat = stat_of(path) if isinstance(path, str) else None
        if stat is None or not isinstance(path, str):
            return None
        found[path] = list(stat)
    return found


def _libraries_unchanged(recorded: object) -> bool:
    # A library that is not there matches nothing: a forged state naming made-up paths with
    # empty stats must not pass for the libraries that planned.
    return isinstance(recorded, dict) and len(recorded) == len(KEY_LIBRARIES) and all(
        isinstance(path, str) and (now := stat_of(path)) is not None and list(now) == stat
        for path, stat in recorded.items())


def fingerprint_options(backend: str | None, profile: str | None) -> Json:
    """The build options a fingerprint holds: a build with other ones may plan otherwise."""
    return {"backend": backend, "profile": profile}


def _with_env(options: Json, settings: Settings | None = None) -> Json:
    """The options beside the settings the planner reads (Settings.planned): a build run with
    other values may plan differently."""
    return {**options, "env": (settings or current()).planned()}


def fingerprint(root: Path, options: Json, manifest_digest: str, reads: dict[str, Stat | None],
                lock_digest: str, outputs: list[str], frames: int,
                previous: object = None, until: dt.date | None = None,
                remote: str | None = None, settings: Settings | None = None,
                reach: Json | None = None) -> Json | None:
    """What the next build compares, or None if what the planner read has changed since (or
    cannot be proven unchanged): `reads` maps each file hashed into a key to its stat then,
    `outputs` are the paths the lock pins (their stats are in the stat cache), `remote` is the
    id of the project's remote cache (store.cache.remote_id), None without one; `reach`: the
    manifest's digests by target (plan/reach.py Digests), for the edit path."""
    if manifest_digest != _project_sha(root, MANIFEST):
        return None  # saved while this build ran: the next one must plan from the new bytes
    inputs = {}
    for rel, planned in reads.items():
        now = stat_of(os.path.join(root, rel))
        if planned is None or now is None or tuple(planned) != now or is_racy(now):
            return None
        inputs[rel] = list(now)
    libraries = _libraries()
    if libraries is None:
        return None
    code = _code(previous.get("code") if isinstance(previous, dict) else None)
    return {"nbpipe": __version__, "python": sys.version, "libraries": libraries,
            "schema": plan.KEY_SCHEMA, "code": code,
            "checkout": list(stat_of(root / MANIFEST) or ()),
            "lock_checkout": list(stat_of(root / LOCK) or ()), "reach": reach,
            "catalogue": _sha(CATALOGUE), "options": _with_env(options, settings),
            "frames": frames, "manifest": manifest_digest,
            "lock": lock_digest,
            "inputs": inputs, "outputs": sorted(outputs),
            "until": until.isoformat() if until else None, "remote": remote}


def _expired(until: object) -> bool:
    if until is None:
        return False
    from nbpipe.catalog import today  # only then: the catalogue costs an import of pydantic

    return not isinstance(until, str) or today().isoformat() >= until


def _waiting_push(folder: Path, remote: object) -> bool:
    """Whether a mark in the cache's `unpushed/` is for `remote` (a remote id; None: the
    project has none). A cache shared by projects holds other remotes' marks, which their own
    builds send; a fingerprint without an id counts any. Only what the full path would send
    counts (store.marks.parse): a stray file there would keep the fast path off for good."""
    if remote is None:
        return False
    try:
        with os.scandir(folder) as entries:
            return any(_marks_for(entry, remote) for entry in entries)
    except OSError:
        return False


def _marks_for(entry: os.DirEntry[str], remote: object) -> bool:
    mark = marks.parse(entry.name)
    if mark is None:
        return False
    if not isinstance(remote, str):
        return True
    if mark[2] not in (None, remote):
        return False  # another remote's (an older nbpipe's mark names none)
    try:  # the remote is inside, as the full path reads it (store.cache.Cache.unpushed)
        # Bounded, and never blocking: another user of a shared cache can put a FIFO here.
        return marks.remote_id(read_capped(entry.path, MARK_CAP).decode()) == remote
    except (OSError, UnicodeDecodeError, FileRefused):
        return False  # unreadable: the full path cannot send it either


def _folders_inside(root: Path, paths: list[str]) -> bool:
    """Every folder holding a fingerprinted file still leads inside the project, as the planner
    demands: a folder moved out and symlinked back keeps every stat of the files in it (a file
    moved gets a new ctime; a folder's files do not). One realpath per folder, not per file."""
    real = os.path.realpath(root)
    for folder in {rel.rpartition("/")[0] for rel in paths} - {""}:
        found = os.path.realpath(os.path.join(root, folder))
        if found != real and not found.startswith(real + os.sep):
            return False
    return True


class Verdict(NamedTuple):
    """The fast path's answer: the number of frames when provably nothing changed, else why
    not (NBPIPE_EXPLAIN prints it). `asked` is what was checked (project, cache, backend,
    profile), so the CLI can tell the early path's verdict is for its own command line."""

    fresh: int | None
    why: str
    asked: tuple[str, str, str | None, str | None] = ("", "", None, None)
    # When the manifest alone changed: the fingerprint, for the edit path to start from
    # (plan/planner.py open_project `since`), else None.
    since: Json | None = None


def still_fresh(root: Path, options: Json, journal: Path,
                settings: Settings | None = None) -> int | None:
    """The number of frames if provably nothing changed since the last all-fresh build."""
    return check(root, options, journal, settings).fresh


def check(root: Path, options: Json, journal: Path, settings: Settings | None = None) -> Verdict:
    """Whether provably nothing changed since the last all-fresh build, and if not, why.

    `journal` is the cache's journal: a build killed after the fingerprint was written may have
    left paid tasks in it, and only the full path collects them (a compacted journal with no
    open entry is empty)."""
    try:
        if journal.stat().st_size:
            return Verdict(None, f"the journal has open entries ({journal})")
    except FileNotFoundError:
        pass  # no journal: nothing was ever left in flight
    except (OSError, ValueError):
        return Verdict(None, f"the journal cannot be read ({journal})")  # the full path says why
    state = State(root, fast=True)  # read bounded, as a regular file only, never followed
    fp = state.data.get("fingerprint")
    if not isinstance(fp, dict):
        return Verdict(None, "no fingerprint: the last build was not all fresh, or none ran, "
                             "or the state is not a plain file")
    if state.data.get("unpushed") or \
            _waiting_push(journal.parent / "unpushed", fp.get("remote", True)):
        # images still to send to the remote cache, which a build killed after marking them
        # left (one that finished with any wrote no fingerprint): the full path sends them
        return Verdict(None, "images wait to be pushed to the remote cache")
    why = _settings_changed(fp, options, settings or current()) or _project_changed(root, fp, state)
    if why:
        return Verdict(None, why)
    why = _manifest_changed(root, fp)
    if why:
        return Verdict(None, why, since=fp if _same_lock_checkout(root, fp) else None)
    frames = fp.get("frames")
    return Verdict(frames, "") if isinstance(frames, int) else \
        Verdict(None, "the fingerprint names no frame count")


def _settings_changed(fp: Json, options: Json, settings: Settings) -> str | None:
    if fp.get("nbpipe") != __version__:
        return f"nbpipe's version changed (to {__version__})"
    if fp.get("schema") != plan.KEY_SCHEMA:
        return "the key schema changed"
    now = _with_env(options, settings)
    if fp.get("options") != now:
        return f"a setting changed: {_changed_settings(fp.get('options'), now)}"
    if fp.get("python") != sys.version:
        return "the Python interpreter changed"
    return None


def _changed_settings(recorded: object, now: Json) -> str:
    """Which build options (--backend, --profile) or planner settings differ, by name."""
    before: Json = recorded if isinstance(recorded, dict) else {}
    raw = before.get("env")
    env: Json = raw if isinstance(raw, dict) else {}
    changed = [f"--{name}" for name in ("backend", "profile") if before.get(name) != now[name]]
    planned = now["env"]  # Settings.planned(), always a dict
    assert isinstance(planned, dict)
    changed += [name for name, value in planned.items() if env.get(name) != value]
    return ", ".join(changed) or "the options"


def _project_changed(root: Path, fp: Json, state: State) -> str | None:
    """What changed besides the manifest, if anything."""
    for name in (MANIFEST, LOCK):
        if os.path.islink(root / name):  # its stat may be foreseeable (a runner's file)
            return f"{name} is a symbolic link: the full path checks where it leads"
    if fp.get("catalogue") != _sha(CATALOGUE):
        return "the model catalogue changed"
    if fp.get("lock") != _project_sha(root, LOCK):
        return f"{LOCK} changed"
    if _expired(fp.get("until")):
        return "a frame's model nears its shutdown"
    return _files_changed(root, fp, state)


def _manifest_changed(root: Path, fp: Json) -> str | None:
    checkout = fp.get("checkout")
    if not checkout or checkout != list(stat_of(root / MANIFEST) or ()):
        return f"{MANIFEST}'s stat changed (edited, touched, or another checkout)"
    if fp.get("manifest") != _project_sha(root, MANIFEST):
        return f"{MANIFEST} changed"
    return None


def _same_lock_checkout(root: Path, fp: Json) -> bool:
    """Whether the lock is the very file the fingerprinting build left (its stat, as the
    manifest's binds the no-op): a fingerprint in a store carried to another checkout (a CI
    cache) never lets the edit path carry frames, even when the bytes are the same."""
    recorded = fp.get("lock_checkout")
    return isinstance(recorded, list) and recorded == list(stat_of(root / LOCK) or ())


def _files_changed(root: Path, fp: Json, state: State) -> str | None:
    inputs, outputs = fp.get("inputs"), fp.get("outputs")
    if not isinstance(inputs, dict) or not isinstance(outputs, list):
        return "the fingerprint lists no inputs or outputs"
    for rel, recorded in inputs.items():
        if list(stat_of(os.path.join(root, rel)) or ()) != recorded:
            return f"input {rel} changed (its stat)"
    for rel in outputs:
        known = state.known_stat(rel) if isinstance(rel, str) else None
        if not known or list(stat_of(os.path.join(root, rel)) or ()) != known:
            return f"output {rel} changed (its stat)"
    if not _folders_inside(root, [*inputs, *outputs]):
        return "a folder of the project now leads outside it"
    if not _libraries_unchanged(fp.get("libraries")):
        return "a library that shapes keys changed (jinja2, ruamel.yaml, pydantic)"
    if not _code_unchanged(fp.get("code")):
        return "nbpipe's own files changed"
    return None


def verdict(root: Path, cache_dir: Path, backend: str | None, profile: str | None,
            settings: Settings) -> Verdict:
    """The one check both the early path (nbpipe/launch.py) and the CLI run, for a `build` of
    every frame: the early path's miss is handed to the CLI, which does not run it again."""
    found = check(root, fingerprint_options(backend, profile), cache_dir / JOURNAL, settings)
    return found._replace(asked=(str(root), str(cache_dir), backend, profile))


def answer(root: Path, cache_dir: Path, backend: str | None, profile: str | None,
           check: bool = False, as_json: bool = False,
           settings: Settings | None = None) -> str | None:
    """What a `build` of every frame prints when provably nothing changed, or None: plan it."""
    fresh = verdict(root, cache_dir, backend, profile, settings or current()).fresh
    return None if fresh is None else noop_summary(fresh, check, as_json)


def noop_summary(fresh: int, check: bool = False, as_json: bool = False) -> str:
    """What a build that had nothing to do prints (the same line on either path)."""
    if as_json:
        import json

        return json.dumps({"event": "summary", "rendered": 0, "restored": 0, "fresh": fresh,
                           "failed": 0, "skipped": 0, "kept": 0, "left": 0, "pending": 0,
                           "spent_usd": 0.0,
                           "spent_earlier_usd": 0.0, "saved_usd": 0.0})
    if check:
        return f"all {fresh} frames fresh"
    return f"nothing to do: {fresh} frame{'s' * (fresh != 1)} fresh"
