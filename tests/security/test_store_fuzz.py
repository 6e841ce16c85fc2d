"""Property test: a damaged or hostile store (the lock, index records, the journal, state.json,
prices.json, tmp/) never makes nbpipe crash (exit 3), never makes a crash that repeats, and never
touches a file outside the project and its cache (a sentinel directory beside them is checked).

Derandomized (a fixed seed) and bounded, like the manifest fuzzing in tests/manifest/test_fuzz.py;
NBPIPE_FUZZ_EXAMPLES runs a longer, random search.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import tempfile
from pathlib import Path

import diskcache
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nbpipe.cli import main
from nbpipe.errors import EXIT_INTERNAL

MANIFEST = """version: 1
defaults: {backend: preview}
targets:
  a: {prompt: "a fox"}
  b: {prompt: "a whale", model: Nano-Banana-Pro, resolution: 2K}
  e: {prompt: "at dusk", inputs: [a], model: Nano-Banana-2}
"""
EXAMPLES = int(os.environ.get("NBPIPE_FUZZ_EXAMPLES", "25"))
SETTINGS = settings(max_examples=EXAMPLES, derandomize="NBPIPE_FUZZ_EXAMPLES" not in os.environ,
                    deadline=None, suppress_health_check=list(HealthCheck))
DOCUMENTS = ["lock", "index", "journal", "state", "prices", "tmp"]


def nbpipe(*args: str) -> int:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return main(list(args))


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """A built project (with a journal entry still open) to copy for every example."""
    root = tmp_path_factory.mktemp("seed") / "project"
    root.mkdir()
    (root / "nbpipe.yaml").write_text(MANIFEST)
    assert nbpipe("-C", str(root), "build") == 0
    key = json.loads((root / "nbpipe.lock").read_text())["frames"]["a"]["key"]
    request = {"backend": "preview", "model": "Nano-Banana", "prompt": "a fox",
               "params": {"aspect_ratio": "1:1"}, "inputs": []}
    (root / ".nbpipe" / "journal.jsonl").write_text(
        json.dumps({"op": "intent", "key": key, "take": 9, "frame": "a", "backend": "preview",
                    "request": request}) + "\n"
        + json.dumps({"op": "task", "key": key, "take": 9, "task_id": "t-9"}) + "\n")
    (root / ".nbpipe" / "prices.json").write_text(json.dumps(
        {"fetched": "2026-11-01", "hiapi": {"Nano-Banana": 0.05, "Nano-Banana-Pro": {"1K": 0.17}}}))
    return root


def hostile(sentinel: Path) -> st.SearchStrategy:
    victim = str(sentinel / "victim.png")
    texts = st.sampled_from([victim, "../sentinel/victim.png", "../../" * 6 + "etc/passwd",
                             "nbpipe.yaml", ".git/hooks/post-checkout", "a" * 64, "A" * 64,
                             hashlib.sha256(b"x").hexdigest(), "", "\x00", "é" * 300,
                             "../" + hashlib.sha256(b"x").hexdigest()[3:], "1e999", "NaN"])
    scalars = st.none() | st.booleans() | st.integers(-2**70, 2**70) | \
        st.floats(allow_nan=True, allow_infinity=True) | texts | st.text(max_size=12)
    return st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                        | st.dictionaries(st.text(max_size=6) | texts, inner, max_size=3),
                        max_leaves=6)


def paths_of(doc, prefix=()):
    """Every place in a JSON document a value sits."""
    yield prefix
    items = doc.items() if isinstance(doc, dict) else \
        enumerate(doc) if isinstance(doc, list) else ()
    for key, value in items:
        yield from paths_of(value, (*prefix, key))


def swapped(doc, path, value):
    if not path:
        return value
    doc[path[0]] = swapped(doc[path[0]], path[1:], value)
    return doc


@st.composite
def damage(draw, sentinel: Path):
    """How to damage a document: swap one value (type or hostile path), or truncate it."""
    kind = draw(st.sampled_from(["swap", "swap", "truncate"]))
    return kind, draw(st.integers(0, 10_000)), draw(hostile(sentinel))


def damage_json(text: str, how) -> str:
    kind, at, value = how
    if kind == "truncate":
        return text[: at % max(len(text), 1)]
    doc = json.loads(text)
    places = list(paths_of(doc))
    return json.dumps(swapped(doc, places[at % len(places)], value))


def apply(root: Path, which: str, how) -> None:
    cache = root / ".nbpipe"
    if which == "lock":
        path = root / "nbpipe.lock"
        path.write_text(damage_json(path.read_text(), how))
    elif which in ("state", "prices"):
        path = cache / f"{which}.json"
        path.write_text(damage_json(path.read_text(), how))
    elif which == "journal":
        path = cache / "journal.jsonl"
        lines = path.read_text().splitlines()
        lines[how[1] % 2] = damage_json(lines[how[1] % 2], how)
        path.write_text("\n".join(lines) + "\n")
    elif which == "index":
        with diskcache.Cache(str(cache / "index"), disk=diskcache.JSONDisk) as index:
            keys = sorted(index.iterkeys())
            name = keys[how[1] % len(keys)]
            text = damage_json(json.dumps(index[name]), how)
            try:
                index[name] = json.loads(text)
            except ValueError:
                index[name] = text  # a truncated record: stored as a string
    elif which == "tmp":
        (cache / "tmp" / "sub" / "dir").mkdir(parents=True)
        (cache / "tmp" / "link").symlink_to(root.parent / "sentinel")


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


@pytest.mark.parametrize("which", DOCUMENTS)
def test_a_damaged_store_never_crashes_nor_reaches_outside(built, which):
    sentinel_shape = Path(tempfile.gettempdir()) / "sentinel"

    @SETTINGS
    @given(how=damage(sentinel_shape))
    def check(how):
        with tempfile.TemporaryDirectory() as tmp:
            root, sentinel = _project_beside_a_sentinel(built, Path(tmp))
            how = (how[0], how[1], _retarget(how[2], sentinel_shape, sentinel))
            apply(root, which, how)
            before = snapshot(sentinel)
            # 'build *' is never the no-op fast path; the second one shows a crash that repeats.
            for command in (["build", "*"], ["build", "*"], ["pull"], ["report"],
                            ["clean", "--orphans"], ["gc"]):
                code = nbpipe("-C", str(root), *command)
                assert code != EXIT_INTERNAL, (which, how, command)
            assert snapshot(sentinel) == before
            assert sorted(p.name for p in Path(tmp).iterdir()) == ["project", "sentinel"]

    check()


def _retarget(value, old: Path, new: Path):
    """Point the hostile paths drawn for a placeholder sentinel at this example's."""
    if isinstance(value, str):
        return value.replace(str(old), str(new))
    if isinstance(value, list):
        return [_retarget(v, old, new) for v in value]
    if isinstance(value, dict):
        return {k: _retarget(v, old, new) for k, v in value.items()}
    return value


# --- symbolic links, special files and oversized files in every position (issue #22) -------

POSITIONS = ["nbpipe.yaml", "nbpipe.lock", ".nbpipe/state.json", ".nbpipe/prices.json",
             ".nbpipe/journal.jsonl", ".nbpipe/build.lock", ".nbpipe/index/cache.db", "blob",
             "pin", "out/a.png", "out/e.png"]
KINDS = ["link-out", "dev-zero", "fifo", "folder", "huge"]
HUGE = 40 << 20  # sparse: costs no disk; past the manifest's cap, under the lock's


def _position(root: Path, where: str) -> Path:
    if where == "blob":
        return next((root / ".nbpipe" / "blobs").glob("*/*"))
    if where == "pin":
        return next((root / ".nbpipe" / "pins").glob("*.json"))
    return root / where


def plant(root: Path, where: str, kind: str, sentinel: Path) -> None:
    """Put a hostile thing of `kind` where nbpipe reads `where`."""
    path = _position(root, where)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
    if kind == "link-out":
        path.symlink_to(sentinel / "victim.png")
    elif kind == "dev-zero":
        path.symlink_to("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "folder":
        (path / "inside").mkdir(parents=True)
    else:
        with open(path, "wb") as handle:
            handle.truncate(HUGE)


class _Stalled(Exception):
    pass


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("where", POSITIONS)
def test_a_link_special_or_huge_file_anywhere_never_crashes_stalls_nor_reaches_out(
        built, where, kind):
    """0 exit 3, no command stalled (a FIFO, /dev/zero), and the sentinel beside the project
    neither read into the output nor written (SECURITY.md, "What a shared cache's other users
    can do")."""
    import resource
    import signal

    def stalled(*_):
        raise _Stalled

    # an unbounded read of /dev/zero fails this test with MemoryError, not the machine
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (min(4 << 30, hard), hard))

    with tempfile.TemporaryDirectory() as tmp:
        root, sentinel = _project_beside_a_sentinel(built, Path(tmp))
        before = snapshot(sentinel)
        plant(root, where, kind, sentinel)
        previous = signal.signal(signal.SIGALRM, stalled)
        try:
            for command in (["build", "--check"], ["build"], ["build", "*"], ["plan"],
                            ["pull"], ["report"], ["clean", "--orphans"], ["gc"]):
                signal.alarm(60)
                try:
                    code = nbpipe("-C", str(root), *command)
                except _Stalled:
                    pytest.fail(f"{command} stalled on {where} as {kind}")
                finally:
                    signal.alarm(0)
                assert code != EXIT_INTERNAL, (where, kind, command)
        finally:
            signal.signal(signal.SIGALRM, previous)
            resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
        assert snapshot(sentinel) == before
        assert sorted(p.name for p in Path(tmp).iterdir()) == ["project", "sentinel"]


def _project_beside_a_sentinel(built: Path, tmp: Path) -> tuple[Path, Path]:
    """A copy of the built project, and beside it a folder nothing may read or write."""
    root = tmp / "project"
    shutil.copytree(built, root, symlinks=True)
    sentinel = tmp / "sentinel"
    sentinel.mkdir()
    (sentinel / "victim.png").write_bytes((root / "out" / "a.png").read_bytes())
    (sentinel / "other.txt").write_text("keep me")
    return root, sentinel
