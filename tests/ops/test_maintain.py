from __future__ import annotations

import json
import time

import pytest

from nbpipe.errors import UsageError
from nbpipe.ops.maintain import gc, parse_age, parse_size


@pytest.mark.parametrize("text, size", [("800", 800), ("2K", 2048), ("1.5MB", 1572864),
                                        ("2G", 2 * 1024 ** 3), ("3GiB", 3 * 1024 ** 3)])
def test_sizes(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text, seconds", [("30d", 30 * 86400), ("12h", 43200), ("2w", 1209600),
                                           ("90s", 90)])
def test_ages(text, seconds):
    assert parse_age(text) == seconds


@pytest.mark.parametrize("bad", ["", "lots", "-1G", "3 parsecs"])
def test_bad_values_are_usage_errors(bad):
    with pytest.raises(UsageError):
        parse_size(bad)
    with pytest.raises(UsageError):
        parse_age(bad)


KEY = "d" * 64


def one_take(root, data: bytes = b"\x89PNG a paid image") -> tuple:
    """A project whose cache holds one take (key KEY, number 1) no lock pins: what a build
    killed before saving its lock leaves."""
    from nbpipe.store.cache import Cache, Take
    from nbpipe.store.lock import Lock

    cache = Cache(root / ".nbpipe")
    with cache.writer() as sink:
        sink.write(data)
        sink.flush()
        digest = sink.commit()
    cache.add_take(KEY, {"frame": "a", "prompt": "a lighthouse"},
                   Take(digest=digest, backend="hiapi", model="Nano-Banana", format="png",
                        cost_usd="0.05", created=time.time() - 60, take=1))
    return cache, Lock.load(root), digest


def kept(cache, digest: str) -> bool:
    return digest in {t.digest for t in cache.takes(KEY)} and cache.has_blob(digest)


def test_gc_keeps_the_takes_of_a_build_that_stopped_before_pinning_them(tmp_path):
    """Its journal entry is done and said by no summary (kill -9 before the lock was saved):
    the next build pins the take for free, if gc leaves it."""
    from nbpipe.store.journal import unfinished

    cache, lock, digest = one_take(tmp_path)
    journal = tmp_path / ".nbpipe" / "journal.jsonl"
    journal.write_text("\n".join(json.dumps(r) for r in [
        {"op": "intent", "key": KEY, "take": 1, "frame": "a", "backend": "hiapi",
         "request": {"model": "Nano-Banana", "prompt": "a lighthouse", "params": {}}},
        {"op": "done", "key": KEY, "take": 1, "digest": digest}]) + "\n")
    try:
        lines = gc(cache, lock, None, 0.0, False, unpinned_yet=unfinished(journal))
        assert kept(cache, digest), lines
        assert lines[-1].endswith("; 1 take(s) of a build that stopped before pinning them kept "
                                  "(the next build pins them)")
        journal.write_text(journal.read_text() + json.dumps(
            {"op": "reported", "key": KEY, "take": 1}) + "\n")  # a build said it since
        gc(cache, lock, None, 0.0, False, unpinned_yet=unfinished(journal))
        assert not kept(cache, digest)
    finally:
        cache.close()


def test_gc_keeps_an_image_a_file_in_the_project_holds(tmp_path):
    """A killed build wrote the output, then another build (of other frames) said its payment:
    the output is the only other trace of it. Without its take the next build would leave that
    file alone as one made outside nbpipe, its frame out of the lock. Copies under .git, or
    reached through a link, are not the project's files."""
    cache, lock, digest = one_take(tmp_path)
    data = cache.read_verified(digest)
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "a.png").write_bytes(data)
    elsewhere = tmp_path.parent / f"{tmp_path.name}-elsewhere"
    elsewhere.mkdir()
    (elsewhere / "a.png").write_bytes(data)
    (tmp_path / "linked").symlink_to(elsewhere)
    (tmp_path / "same-size.png").write_bytes(bytes(len(data)))
    try:
        assert gc(cache, lock, None, 0.0, True, root=tmp_path)[0].startswith("would remove a, ")
        (tmp_path / "out").mkdir()
        (tmp_path / "out" / "a.png").write_bytes(data)
        lines = gc(cache, lock, None, 0.0, False, root=tmp_path)
        assert kept(cache, digest), lines
        assert lines[-1].endswith("; 1 image(s) a file in the project holds kept (out/a.png)")
        (tmp_path / "out" / "a.png").unlink()  # `clean --orphans`, say: now it may go
        gc(cache, lock, None, 0.0, False, root=tmp_path)
        assert not kept(cache, digest)
    finally:
        cache.close()
