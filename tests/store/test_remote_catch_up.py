"""Catching a remote up: the takes a project had before it used its remote (or while it had
none) reach the remote once, and never is the remote called caught up while one is missing."""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from tests.conftest import copy_example
from tests.store.test_remote import bucket, build, clone

__all__ = ["bucket"]


def _without_remote(monkeypatch) -> str:
    url = os.environ["NBPIPE_REMOTE"]
    monkeypatch.delenv("NBPIPE_REMOTE")
    return url


def test_catch_up_sends_the_takes_of_frames_keyed_only_during_a_build(
        bucket, fake_hiapi, run, tmp_path, monkeypatch):
    """An edit's key is known only once its upstream is built: catch-up knows it from the
    lock, or it called the remote caught up without it and a clone paid for the edits again."""
    url = _without_remote(monkeypatch)
    a = copy_example("golden-hour-edit", tmp_path / "a")
    assert build(run, a)["rendered"] == 3
    monkeypatch.setenv("NBPIPE_REMOTE", url)
    build(run, a)
    assert len(bucket.find("cache/blobs")) == 3
    b = copy_example("golden-hour-edit", tmp_path / "b")
    assert build(run, b)["rendered"] == 0
    assert fake_hiapi.counts["creates"] == 3


def test_catch_up_sends_what_other_profiles_pinned(bucket, fake_hiapi, run, tmp_path,
                                                   monkeypatch):
    """The remote is caught up once, by whichever profile builds first: the images another
    profile pinned before are sent then, or they never are."""
    url = _without_remote(monkeypatch)
    a = clone(tmp_path, "a")
    assert build(run, a)["rendered"] == 5
    assert build(run, a, "--profile", "production")["rendered"] == 4  # rooftop = its hero
    monkeypatch.setenv("NBPIPE_REMOTE", url)
    build(run, a)
    assert build(run, clone(tmp_path, "b"), "--profile", "production")["rendered"] == 0
    assert fake_hiapi.counts["creates"] == 9


def test_a_remote_dropped_then_configured_again_is_caught_up_again(bucket, fake_hiapi, run,
                                                                   tmp_path, monkeypatch):
    """While the project has no remote, nothing marks its renders for one: when the remote
    comes back, 'synced' from before must not skip what was paid for in between."""
    a = clone(tmp_path, "a")
    assert build(run, a)["rendered"] == 5
    url = _without_remote(monkeypatch)
    manifest = a / "nbpipe.yaml"
    manifest.write_text(manifest.read_text().replace("cold overcast", "warm hazy"))
    assert build(run, a)["rendered"] == 2  # rooftop and rooftop-hero
    monkeypatch.setenv("NBPIPE_REMOTE", url)
    build(run, a)
    b = clone(tmp_path, "b")
    (b / "nbpipe.yaml").write_text(manifest.read_text())
    assert build(run, b)["rendered"] == 0
    assert fake_hiapi.counts["creates"] == 7


def test_a_no_op_build_never_skips_a_catch_up_still_to_do(bucket, fake_hiapi, run, tmp_path,
                                                          monkeypatch):
    """The remote was down when the project gained it: nothing was marked (no listing, no
    catch-up), and the next build, the same in every way, took the fast path: the remote was
    never caught up and a clone paid again."""
    from nbpipe.engine.noop import still_fresh
    from tests.fakes.cable import Cable

    url = _without_remote(monkeypatch)
    a = clone(tmp_path, "a")
    assert build(run, a)["rendered"] == 5
    moto = urlsplit(os.environ["NBPIPE_REMOTE_ENDPOINT"])
    with Cable((moto.hostname, moto.port)) as cable:
        monkeypatch.setenv("NBPIPE_REMOTE", url)
        monkeypatch.setenv("NBPIPE_REMOTE_ENDPOINT", cable.url)
        cable.unplug()
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # no backoff waited out (see remote_down)
        assert build(run, a)["fresh"] == 5
        assert still_fresh(a, {"backend": None, "profile": None},
                           a / ".nbpipe" / "journal.jsonl") is None
        cable.plug()
        monkeypatch.delenv("AWS_MAX_ATTEMPTS")
        up = build(run, a)
        assert [e["message"] for e in up["events"] if e["event"] == "note"] == [
            "remote: sending 5 image(s) it lacks (made before this project used it, or by "
            "another project)"]
        assert build(run, clone(tmp_path, "b"))["rendered"] == 0
    assert len(bucket.find("cache/blobs")) == 5
    assert fake_hiapi.counts["creates"] == 5


def test_push_sends_the_takes_of_frames_keyed_only_during_a_build(bucket, fake_hiapi, run,
                                                                   tmp_path, monkeypatch):
    url = _without_remote(monkeypatch)
    a = copy_example("golden-hour-edit", tmp_path / "a")
    assert build(run, a)["rendered"] == 3
    monkeypatch.setenv("NBPIPE_REMOTE", url)
    assert run("-C", str(a), "push").out == f"pushed 3 image(s) to {url}; 0 were there already\n"
