"""The cache: content addressing, atomic writes, corruption as a miss, JSON (never pickle)."""

from __future__ import annotations

import hashlib
import os
import sqlite3

import pytest

from nbpipe.store.cache import Cache, Take


def take(digest: str, created: float = 1.0) -> Take:
    return Take(digest=digest, backend="preview", model="m", format="png", cost_usd="0.05",
                created=created, task_id="t")


def test_blobs_are_named_by_digest_and_written_once(tmp_path):
    cache = Cache(tmp_path)
    digest = cache.blobs.put(b"image")
    assert digest == hashlib.sha256(b"image").hexdigest()
    assert cache.blob_path(digest).read_bytes() == b"image"
    assert cache.blobs.put(b"image") == digest
    assert list((tmp_path / "tmp").iterdir()) == []


def test_an_uncommitted_writer_leaves_nothing(tmp_path):
    cache = Cache(tmp_path)
    try:
        with cache.writer() as sink:
            sink.write(b"half an ima")
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        pass
    assert list((tmp_path / "tmp").iterdir()) == []
    assert not (tmp_path / "blobs").exists()


def test_corrupt_blob_is_a_miss_and_is_removed(tmp_path):
    cache = Cache(tmp_path)
    digest = cache.blobs.put(b"image")
    cache.blob_path(digest).write_bytes(b"rot")
    assert cache.read_verified(digest) is None
    assert not cache.has_blob(digest)
    digest = cache.blobs.put(b"image")
    cache.blob_path(digest).write_bytes(b"rot")
    assert cache.blobs.copy_verified(digest, tmp_path / "out" / "x.png") is False
    assert not (tmp_path / "out" / "x.png").exists()
    assert [p.name for p in (tmp_path / "out").iterdir()] == []


def test_takes_are_indexed_by_key_deduplicated_and_need_their_blob(tmp_path):
    cache = Cache(tmp_path)
    one, two = cache.blobs.put(b"one"), cache.blobs.put(b"two")
    cache.add_take("k", {"prompt": "p"}, take(one))
    cache.add_take("k", {"prompt": "p"}, take(two))
    cache.add_take("k", {"prompt": "p"}, take(one, created=3.0))
    assert [t.digest for t in cache.takes("k")] == [two, one]
    assert cache.index.request("k") == {"prompt": "p"}
    cache.blob_path(two).unlink()
    assert [t.digest for t in cache.takes("k")] == [one]


def test_index_holds_json_not_pickle(tmp_path):
    cache = Cache(tmp_path)
    cache.add_take("k", {"prompt": "p"}, take(cache.blobs.put(b"x")))
    cache.close()
    db = next((tmp_path / "index").glob("*.db"))
    rows = sqlite3.connect(db).execute("SELECT value FROM Cache").fetchall()
    texts = [value if isinstance(value, bytes) else value.encode() for (value,) in rows]
    assert rows and all(isinstance(value, (bytes, str)) for (value,) in rows)
    assert all(b"\x80" not in text for text in texts)


def test_truncated_index_is_set_aside(tmp_path):
    cache = Cache(tmp_path)
    cache.add_take("k", {}, take(cache.blobs.put(b"x")))
    cache.close()
    db = next((tmp_path / "index").glob("*.db"))
    db.write_bytes(db.read_bytes()[:50])
    fresh = Cache(tmp_path)
    assert fresh.takes("k") == []
    fresh.add_take("k", {}, take(fresh.blobs.put(b"x")))
    assert len(fresh.takes("k")) == 1
    assert list(tmp_path.glob("index.corrupt-*"))


def test_read_only_look_creates_nothing(tmp_path):
    cache = Cache(tmp_path / "none", create=False)
    assert cache.takes("k") == [] and cache.index.keys() == []
    assert not (tmp_path / "none").exists()


def test_pins_are_shared_through_the_cache(tmp_path):
    cache = Cache(tmp_path / "c")
    cache.record_pins(tmp_path / "a", {"d1"})
    cache.record_pins(tmp_path / "b", {"d2"})
    assert cache.pins.all() == {"d1", "d2"}


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640)])
def test_outputs_and_the_lock_respect_the_umask(umask, mode, make_project):
    import stat
    import subprocess
    import sys

    root = make_project("version: 1\ndefaults: {backend: preview}\ntargets:\n  a: {prompt: x}\n")
    done = subprocess.run([sys.executable, "-m", "nbpipe", "-C", str(root), "build"],
                          capture_output=True, text=True, preexec_fn=lambda: os.umask(umask))
    assert done.returncode == 0, done.stderr
    for path in (root / "out" / "a.png", root / "nbpipe.lock"):
        assert stat.S_IMODE(path.stat().st_mode) == mode, path
    (root / "out" / "a.png").unlink()  # a restore from the cache writes it again
    done = subprocess.run([sys.executable, "-m", "nbpipe", "-C", str(root), "build"],
                          capture_output=True, text=True, preexec_fn=lambda: os.umask(umask))
    assert stat.S_IMODE((root / "out" / "a.png").stat().st_mode) == mode


def test_each_remote_keeps_its_own_mark_of_a_push_still_to_do(tmp_path):
    """A cache shared by projects with different remotes: the same take waits for each of them
    until it is sent there; a mark an older nbpipe wrote (one per take) is read and cleared."""
    cache = Cache(tmp_path)
    key, digest, other = "a" * 64, "b" * 64, "c" * 64
    cache.mark_unpushed(key, digest, "s3://one/cache")
    cache.mark_unpushed(key, digest, "s3://two/cache")
    (tmp_path / "unpushed" / f"{other}.{digest}").write_bytes(b"s3://one/cache")  # older nbpipe
    assert set(cache.unpushed()) == {(key, digest), (other, digest)}
    cache.mark_pushed(key, digest, "s3://one/cache")
    assert cache.unpushed("s3://one/cache") == [(other, digest)]
    assert cache.unpushed("s3://two/cache") == [(key, digest)]
    cache.mark_pushed(other, digest, "s3://two/cache")  # not its remote: it stays
    cache.mark_pushed(other, digest, "s3://one/cache")
    assert cache.unpushed() == [(key, digest)]
    cache.close()


def test_only_marks_nbpipe_writes_and_clears_are_read(tmp_path):
    """A file in unpushed/ that no push of nbpipe would clear is no push to do (the fast path
    counts the same files): it would be sent again by every build and never cleared."""
    cache = Cache(tmp_path)
    key, digest, ours = "a" * 64, "b" * 64, "s3://one/cache"
    marks = tmp_path / "unpushed"
    marks.mkdir()
    (marks / f"{key}.{digest}.0123456789abcdef").write_text(ours)  # another remote's id
    (marks / f"{key}.{digest}.x.y").write_text(ours)
    (marks / f"{key}.{digest}").write_bytes(b"\xff\xfe")  # not a URL: no crash
    (marks / f".{key}.{digest}.0123.part").write_text(ours)  # an interrupted write
    assert cache.unpushed() == cache.unpushed(ours) == []
    cache.mark_unpushed(key, digest, ours)
    assert cache.unpushed(ours) == [(key, digest)]
    cache.mark_pushed(key, digest, ours)
    assert cache.unpushed() == []
    cache.close()
