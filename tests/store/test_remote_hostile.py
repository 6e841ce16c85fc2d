"""A hostile or damaged remote, and a restore that must follow the plan (store/pinned.py,
engine/build.py prefetch), against moto's S3 server: a take's format that names a path, a
pin downloaded before the plan said "restore", a pin whose bytes are here already. (The
review of the one-GET remote restore, its proofs kept as tests.)"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest

from nbpipe.plan.frame import Frame
from nbpipe.store.cache import Cache
from nbpipe.store.outputs import OutputRefused, write_output
from nbpipe.store.pinned import fetch_pinned, take_of
from nbpipe.store.remote import TAKE_META, Remote
from nbpipe.store.state import State
from nbpipe.store.takes import Take
from tests.store.test_remote import bucket, build, clone  # noqa: F401  (bucket: a fixture)
from tests.store.test_remote_pinned import _head, _lock, _rewrite, _with_lock


def _meta_take(bucket, digest: str) -> dict:
    return json.loads(_head(bucket, digest)[TAKE_META])


def _outside(tmp_path: Path) -> list[Path]:
    """What a build of clone b left in `tmp_path` outside both clones."""
    return [p for p in tmp_path.iterdir() if p.name not in ("a", "b")]


def test_a_take_format_in_blob_metadata_never_writes_outside_the_project(
        bucket, fake_hiapi, run, tmp_path):
    """CRITICAL (fixed). The metadata is validated as a TakeRecord, whose `format` was any
    string; the planner makes the output path from it (Frame.output_for: stem + '.' +
    format), so metadata naming the right key and digest with format 'png/../../../escaped'
    wrote the blob (bytes of the attacker's choosing: they hash to their name) outside the
    project. Now that metadata proves nothing."""
    a = clone(tmp_path, "a")
    assert build(run, a)["rendered"] == 5
    entry = _lock(a)[sorted(_lock(a))[0]]
    doc = _meta_take(bucket, entry["digest"])
    doc["take"]["format"] = "png/../../../escaped"
    assert take_of({TAKE_META: json.dumps(doc)}, entry["key"], entry["digest"]) is None
    _rewrite(bucket, entry["digest"], {TAKE_META: json.dumps(doc, separators=(",", ":"))})
    run("-C", str(clone(tmp_path, "b")), "build", "--json")
    assert _outside(tmp_path) == []


def test_a_take_format_in_a_take_record_never_writes_outside_the_project(
        bucket, fake_hiapi, run, tmp_path):
    """The same through the take record (the fallback path, and older blobs): not new in
    this change, but the fix belongs in the same place (the model of a take's format)."""
    a = clone(tmp_path, "a")
    assert build(run, a)["rendered"] == 5
    entry = _lock(a)[sorted(_lock(a))[0]]
    _rewrite(bucket, entry["digest"], {})  # no metadata: the record decides
    path = f"{bucket.name}/cache/takes/{entry['key']}/{entry['digest']}.json"
    doc = json.loads(bucket.fs.cat_file(path))
    doc["take"]["format"] = "png/../../../escaped"
    bucket.fs.pipe_file(path, json.dumps(doc).encode())
    run("-C", str(clone(tmp_path, "b")), "build", "--json")
    assert _outside(tmp_path) == []


JPEG_AS_PNG = """\
version: 1
defaults: {backend: hiapi, model: Nano-Banana, output_format: jpeg, output: "out/{frame}.png"}
targets:
  shot: {prompt: "a lighthouse at dusk"}
"""


def _blob_gets(bucket) -> list[str]:
    return [p for m, p in bucket.requests if m == "GET" and "/blobs/" in p]


def test_a_clone_without_the_lock_whose_output_holds_the_take_under_its_format_fetches_no_blob(
        bucket, fake_hiapi, run, tmp_path):
    """listed_restores compares the take with the frame's declared output (out/shot.png),
    the planner with the take's format's (out/shot.jpg, Frame.output_for): an output already
    fresh is downloaded again, whole, before the plan says 'fresh'."""
    a = tmp_path / "a"
    a.mkdir()
    (a / "nbpipe.yaml").write_text(JPEG_AS_PNG)
    first = build(run, a)
    assert first["rendered"] == 1
    print(sorted(p.name for p in (a / "out").iterdir()))
    b = clone(tmp_path, "b", files=())
    shutil.copy(a / "nbpipe.yaml", b / "nbpipe.yaml")
    shutil.copytree(a / "out", b / "out")
    bucket.requests.clear()
    second = build(run, b)
    assert second["fresh"] == 1
    assert _blob_gets(bucket) == []


def test_a_pinned_output_modified_outside_nbpipe_is_blocked_without_downloading_its_image(
        bucket, fake_hiapi, run, tmp_path):
    """pinned_restores takes 'the output lacks the pinned image' for 'the plan restores it';
    an output someone edited by hand is blocked (never overwritten without --force), yet its
    image was downloaded whole (and kept in the cache with no take) before the plan said so."""
    a = clone(tmp_path, "a")
    assert build(run, a)["rendered"] == 5
    b = _with_lock(tmp_path, a, "b")
    shutil.copytree(a / "out", b / "out")
    edited = b / _lock(a)[sorted(_lock(a))[0]]["output"]
    edited.write_bytes(b"retouched by hand")
    bucket.requests.clear()
    result = run("-C", str(b), "build", "--json")
    assert "output modified outside nbpipe" in result.out
    assert _blob_gets(bucket) == []


def test_an_image_already_in_the_cache_is_proven_as_a_download_of_it_would_be(
        bucket, fake_hiapi, run, tmp_path):
    """The metadata alone proves a pin (its record gone: a partial push, a gc race; the
    authors' test_metadata_naming_the_right_key_and_digest_without_a_record_is_trusted_alone).
    But fetch_pinned skips a blob the cache already holds, so its metadata is never asked: the
    same pin on the same remote is restored by a clone that lacks the bytes and rendered
    again, paid, by one that has them (a cache shared by projects, a build interrupted after
    the preflight, or the blocked frame above)."""
    a = clone(tmp_path, "a")
    assert build(run, a)["rendered"] == 5
    for name in bucket.find("cache/takes"):
        bucket.fs.rm_file(name)
    b = _with_lock(tmp_path, a, "b")
    shutil.copytree(a / ".nbpipe" / "blobs", b / ".nbpipe" / "blobs")  # bytes, no takes
    fake_hiapi.advance(2 * 86400)  # the next day: HiAPI no longer replays a's tasks
    second = build(run, b)
    assert (second["rendered"], second["restored"], second["spent_usd"]) == (0, 5, 0)


def test_a_blocked_frame_then_unblocked_restores_its_pin_rather_than_paying(
        bucket, fake_hiapi, run, tmp_path):
    """The same, reached through the product alone: the blocked frame's image was downloaded
    and kept without its take; once the user removes the hand-edited file, the pin (its record
    gone) is no longer proven and the frame is rendered again."""
    a = clone(tmp_path, "a")
    assert build(run, a)["rendered"] == 5
    for name in bucket.find("cache/takes"):
        bucket.fs.rm_file(name)
    b = _with_lock(tmp_path, a, "b")
    shutil.copytree(a / "out", b / "out")
    edited = b / _lock(a)[sorted(_lock(a))[0]]["output"]
    edited.write_bytes(b"retouched by hand")
    run("-C", str(b), "build", "--json")  # blocked: output modified outside nbpipe
    edited.unlink()
    creates = fake_hiapi.counts["creates"]
    fake_hiapi.advance(2 * 86400)  # the next day: HiAPI no longer replays a's task
    again = build(run, b)
    assert (again["rendered"], again["restored"], again["spent_usd"]) == (0, 1, 0)
    assert fake_hiapi.counts["creates"] == creates




# --- a take's format, each of the three checks alone ------------------------------------------

SHA = "a" * 64
TAKE = {"digest": SHA, "backend": "hiapi", "model": "Nano-Banana", "format": "png",
        "cost_usd": "0.05", "created": 1.5}


@pytest.mark.parametrize("fmt", ["png/../../../escaped", "../x", "gif", "jpg", "PNG", "", 5])
def test_a_take_record_of_a_format_nbpipe_does_not_write_is_refused(fmt):
    with pytest.raises(ValueError):
        Take.from_json({**TAKE, "format": fmt})
    meta = {TAKE_META: json.dumps({"key": "b" * 64, "take": {**TAKE, "format": fmt}})}
    assert take_of(meta, "b" * 64, SHA) is None


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
def test_a_take_record_of_each_format_nbpipe_writes_reads(fmt):
    assert Take.from_json({**TAKE, "format": fmt}).format == fmt


def _frame(output: str) -> Frame:
    return Frame(name="shot", target="shot", backend="hiapi", model="Nano-Banana",
                 parts=("a lighthouse",), params={}, inputs=(), output=output,
                 cost=Decimal("0.05"))


@pytest.mark.parametrize("fmt", ["png/../../../escaped", "/etc/passwd", "gif", "", "jpg"])
def test_an_output_for_a_format_it_does_not_know_is_the_declared_one(fmt):
    assert _frame("out/shot.png").output_for(fmt) == "out/shot.png"
    assert _frame("out/shot.jpg").output_for(fmt) == "out/shot.jpg"


def test_an_output_follows_each_format_it_knows():
    frame = _frame("out/shot.png")
    assert [frame.output_for(f) for f in ("png", "jpeg", "webp")] == [
        "out/shot.png", "out/shot.jpg", "out/shot.webp"]


@pytest.mark.parametrize("output", ["../escaped.png", "out/../../escaped.png", "ABSOLUTE",
                                    "nbpipe.lock", ".git/hooks/post-checkout", ".nbpipe/x.png"])
def test_the_output_writer_refuses_a_path_outside_the_project(tmp_path, output):
    root = tmp_path / "project"
    root.mkdir()
    output = str(tmp_path / "escaped.png") if output == "ABSOLUTE" else output
    cache = Cache(root / ".nbpipe")
    with cache.writer() as sink:
        sink.write(b"image bytes")
        digest = sink.commit()
    with pytest.raises(OutputRefused, match="refused to write an image"):
        write_output(cache, State(root), root, output, digest)
    assert not (tmp_path / "escaped.png").exists() and not (root / "nbpipe.lock").exists()
    assert write_output(cache, State(root), root, "out/fine.png", digest)



# --- fetch_pinned on a remote that failed, and a HEAD that fails -----------------------------


def _remote(bucket) -> Remote:
    import os

    return Remote(f"s3://{bucket.name}/cache", os.environ["NBPIPE_REMOTE_ENDPOINT"])


def test_a_remote_already_unreachable_is_not_asked_again(bucket, tmp_path):
    remote, cache = _remote(bucket), Cache(tmp_path / ".nbpipe")
    remote.unreachable = "EndpointConnectionError: down"
    bucket.requests.clear()
    assert fetch_pinned(remote, {"b" * 64: (SHA, {})}, cache) == frozenset()
    assert bucket.requests == []


def test_a_head_the_remote_refuses_marks_it_unreachable_and_stops_the_rest(
        bucket, tmp_path, monkeypatch):
    import s3fs

    from nbpipe.store import pinned

    call, asked = s3fs.S3FileSystem._call_s3, []

    async def refusing(self, method, *args, **kwargs):
        asked.append(method)
        if method == "head_object":
            raise PermissionError("Access Denied")
        return await call(self, method, *args, **kwargs)

    remote, cache = _remote(bucket), Cache(tmp_path / ".nbpipe")
    digests = []
    for n in range(3):
        with cache.writer() as sink:
            sink.write(b"image %d" % n)
            digests.append(sink.commit())
    monkeypatch.setattr(s3fs.S3FileSystem, "_call_s3", refusing)
    monkeypatch.setattr(pinned, "GETS", 1)
    pins = {str(n) * 64: (digest, {}) for n, digest in enumerate(digests)}
    assert fetch_pinned(remote, pins, cache) == frozenset()
    assert remote.unreachable == "PermissionError: Access Denied"
    assert asked == ["head_object"]  # one round, not one a frame
    assert all(cache.has_blob(d) for d in digests)  # the bytes here are left as they were
