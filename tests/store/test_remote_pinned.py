"""A pinned take restored in one GET of its blob, proven by the blob's own metadata
(store/pinned.py), against moto's S3 server: what a push writes, and what a restore does with
metadata that is absent, damaged, forged or names another take."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from nbpipe.store.pinned import take_of
from nbpipe.store.remote import MAX_META, TAKE_META, take_metadata
from nbpipe.store.takes import Take
from tests.store.test_remote import bucket, build, clone  # noqa: F401  (bucket: a fixture)

SHA, OTHER = "a" * 64, "b" * 64


def _take(**change) -> Take:
    fields = {"digest": SHA, "backend": "hiapi", "model": "Nano-Banana", "format": "png",
              "cost_usd": "0.05", "created": 1.5, "task_id": "tk-1", "take": 1}
    return Take(**{**fields, **change})


# --- the metadata, alone --------------------------------------------------------------------


def test_a_take_reads_back_from_the_metadata_it_is_pushed_with():
    take = _take(url="https://example.com/a.png", url_expires=9.0, lane="batch")
    meta = take_metadata(OTHER, take)
    assert take_of(meta, OTHER, SHA) == _take(lane="batch")  # its URL was never pushed
    assert take_of(meta, SHA, SHA) is None  # another key's take
    assert take_of(meta, OTHER, OTHER) is None  # another blob's
    assert meta[TAKE_META].isascii()  # sent as an HTTP header


def test_a_take_too_long_for_s3_metadata_is_pushed_without_it():
    assert take_metadata(OTHER, _take(task_id="t" * MAX_META)) == {}


@pytest.mark.parametrize("meta", [
    None, "text", {}, {TAKE_META: None}, {TAKE_META: 5}, {TAKE_META: ""}, {TAKE_META: "{"},
    {TAKE_META: "[]"}, {TAKE_META: "null"}, {TAKE_META: "x" * 5000},
    {TAKE_META: json.dumps({"key": OTHER})},
    {TAKE_META: json.dumps({"key": OTHER, "take": {"digest": SHA}})},
    {TAKE_META: json.dumps({"key": OTHER.upper(), "take": json.loads(
        take_metadata(OTHER, _take())[TAKE_META])["take"]})},
    {TAKE_META: json.dumps({"key": OTHER, "take": {**json.loads(
        take_metadata(OTHER, _take())[TAKE_META])["take"], "cost_usd": 0.05}})},
    {TAKE_META: json.dumps({"key": OTHER, "take": {**json.loads(
        take_metadata(OTHER, _take())[TAKE_META])["take"], "take": True}})},
    {TAKE_META: json.dumps({"key": OTHER, "take": {**json.loads(
        take_metadata(OTHER, _take())[TAKE_META])["take"], "cost_usd": "-1"}})},
])
def test_metadata_that_is_not_a_take_of_this_key_proves_nothing(meta):
    assert take_of(meta, OTHER, SHA) is None


# --- against moto -----------------------------------------------------------------------------


def _lock(root: Path) -> dict:
    return json.loads((root / "nbpipe.lock").read_text())["frames"]


def _head(bucket, digest: str) -> dict[str, str]:
    return bucket.fs.call_s3("head_object", Bucket=bucket.name,
                             Key=f"cache/blobs/{digest}")["Metadata"]


def _rewrite(bucket, digest: str, metadata: dict[str, str]) -> None:
    """The blob's bytes as they are, with other metadata (as a hostile or older writer)."""
    name = f"cache/blobs/{digest}"
    data = bucket.fs.cat_file(f"{bucket.name}/{name}")
    bucket.fs.call_s3("put_object", Bucket=bucket.name, Key=name, Body=data, Metadata=metadata)


def _records_read(bucket) -> list[str]:
    return [path.rpartition("/takes/")[2] for method, path in bucket.requests
            if method == "GET" and "/takes/" in path and "list-type" not in path]


def _with_lock(tmp_path: Path, a: Path, name: str) -> Path:
    b = clone(tmp_path, name)
    shutil.copy(a / "nbpipe.lock", b / "nbpipe.lock")
    return b


def test_a_push_writes_the_take_into_its_blobs_metadata(bucket, fake_hiapi, run, tmp_path):
    a = clone(tmp_path, "a")
    assert build(run, a)["rendered"] == 5
    for entry in _lock(a).values():
        take = take_of(_head(bucket, entry["digest"]), entry["key"], entry["digest"])
        assert take is not None and (take.backend, take.model) == (entry["backend"],
                                                                    entry["model"])
        assert float(take.cost_usd) == entry["cost_usd"]


def test_restored_takes_land_in_the_local_cache_with_their_fields(bucket, fake_hiapi, run,
                                                                  tmp_path):
    """A take proven by metadata is indexed here like one read from its record: the same
    fields, and the request of the frame the key is the hash of."""
    from nbpipe.store.cache import Cache

    a = clone(tmp_path, "a")
    assert build(run, a)["rendered"] == 5
    b = _with_lock(tmp_path, a, "b")
    bucket.requests.clear()
    assert build(run, b)["restored"] == 5
    assert _records_read(bucket) == []
    here, there = Cache(b / ".nbpipe"), Cache(a / ".nbpipe")
    for entry in _lock(a).values():
        assert here.takes(entry["key"]) == [
            Take(**{**vars(t), "url": None, "url_expires": None})
            for t in there.takes(entry["key"])]
        request = here.index.request(entry["key"])
        assert request is not None and request["prompt"] == there.index.request(
            entry["key"])["prompt"]
    for frame in _lock(a):  # where each came from: backend, model, cost, task
        listed = run("-C", str(b), "takes", frame)
        assert listed.code == 0 and listed.out == run("-C", str(a), "takes", frame).out


def test_a_pin_of_another_keys_blob_is_not_restored_as_this_frames_take(bucket, fake_hiapi,
                                                                        run, tmp_path):
    """The lock may come from a pull request: another frame's image pinned to this frame.
    That blob's metadata names the other key, so it proves nothing here; its record under
    this key is absent too: the frame gets its own take, found by its key."""
    a = clone(tmp_path, "a")
    assert build(run, a)["rendered"] == 5
    lock = json.loads((a / "nbpipe.lock").read_text())
    names = sorted(lock["frames"])
    mine, other = lock["frames"][names[0]], lock["frames"][names[1]]
    forged = other["digest"]
    mine["digest"] = forged
    b = clone(tmp_path, "b")
    (b / "nbpipe.lock").write_text(json.dumps(lock))
    bucket.requests.clear()
    second = build(run, b)
    assert (second["rendered"], second["restored"]) == (0, 5)
    assert _lock(b)[names[0]]["digest"] not in (forged, None)
    assert f"{mine['key']}/{forged}.json" in _records_read(bucket)  # asked, and absent


@pytest.mark.parametrize("metadata", [
    {TAKE_META: "not json"},
    {TAKE_META: "{}"},
    {TAKE_META: json.dumps({"key": "c" * 64, "take": {"digest": "d" * 64}})},
    {TAKE_META: "x" * 1800},  # as much as S3 keeps, and no take
    {"other": "value"},
], ids=["garbage", "empty", "other-take", "oversized", "unrelated"])
def test_damaged_metadata_falls_back_to_the_record(bucket, fake_hiapi, run, tmp_path, metadata):
    a = clone(tmp_path, "a")
    assert build(run, a)["rendered"] == 5
    lock = _lock(a)
    for entry in lock.values():
        _rewrite(bucket, entry["digest"], metadata)
    bucket.requests.clear()
    b = _with_lock(tmp_path, a, "b")
    second = build(run, b)
    assert (second["rendered"], second["restored"]) == (0, 5)
    assert sorted(_records_read(bucket)) == sorted(f"{e['key']}/{e['digest']}.json"
                                                   for e in lock.values())
    blob_gets = [p for m, p in bucket.requests if m == "GET" and "/blobs/" in p]
    assert len(blob_gets) == 5  # each blob once: the bytes the first GET brought are kept
    assert fake_hiapi.counts["creates"] == 5


def test_metadata_naming_the_right_key_and_digest_without_a_record_is_trusted_alone(
        bucket, fake_hiapi, run, tmp_path):
    """What the proof rests on: a blob is written only by whoever may write the remote, with
    the take it is. With its record gone (a gc racing, a partial push), the metadata stands."""
    a = clone(tmp_path, "a")
    assert build(run, a)["rendered"] == 5
    for name in bucket.find("cache/takes"):
        bucket.fs.rm_file(name)
    b = _with_lock(tmp_path, a, "b")
    second = build(run, b)
    assert (second["rendered"], second["restored"]) == (0, 5)


def test_a_forged_metadata_take_on_a_missing_record_and_a_digest_mismatch_is_a_miss(
        bucket, fake_hiapi, run, tmp_path):
    """Metadata that names this key but another digest, on a blob with no record under this
    key: neither proves the pin; nothing crashes, the frame gets its own take."""
    a = clone(tmp_path, "a")
    assert build(run, a)["rendered"] == 5
    lock = json.loads((a / "nbpipe.lock").read_text())
    names = sorted(lock["frames"])
    mine, other = lock["frames"][names[0]], lock["frames"][names[1]]
    meta = json.loads(take_metadata(mine["key"], _take(digest=mine["digest"]))[TAKE_META])
    _rewrite(bucket, other["digest"], {TAKE_META: json.dumps(meta)})  # names mine's digest
    mine["digest"] = other["digest"]
    b = clone(tmp_path, "b")
    (b / "nbpipe.lock").write_text(json.dumps(lock))
    second = build(run, b)
    assert second["rendered"] == 0
    assert _lock(b)[names[0]]["digest"] != other["digest"]


def test_a_blob_already_in_the_local_cache_is_proven_by_its_metadata_not_fetched(
        bucket, fake_hiapi, run, tmp_path):
    """The bytes are here, their take is not: one HEAD of each blob asks its metadata (as
    the GET of a restore would), no bytes are downloaded and no record is read."""
    a = clone(tmp_path, "a")
    assert build(run, a)["rendered"] == 5
    lock = _lock(a)
    b = _with_lock(tmp_path, a, "b")
    shutil.copytree(a / ".nbpipe" / "blobs", b / ".nbpipe" / "blobs")  # bytes, no takes
    bucket.requests.clear()
    second = build(run, b)
    assert (second["rendered"], second["restored"]) == (0, 5)
    assert sorted(bucket.requests) == sorted(("HEAD", f"/{bucket.name}/cache/blobs/{e['digest']}")
                                             for e in lock.values())  # one request a frame


def test_a_cached_blob_whose_metadata_proves_nothing_is_proven_by_its_record(
        bucket, fake_hiapi, run, tmp_path):
    a = clone(tmp_path, "a")
    assert build(run, a)["rendered"] == 5
    lock = _lock(a)
    for entry in lock.values():
        _rewrite(bucket, entry["digest"], {})  # an older nbpipe's blobs
    b = _with_lock(tmp_path, a, "b")
    shutil.copytree(a / ".nbpipe" / "blobs", b / ".nbpipe" / "blobs")
    bucket.requests.clear()
    second = build(run, b)
    assert (second["rendered"], second["restored"]) == (0, 5)
    assert sorted(_records_read(bucket)) == sorted(f"{e['key']}/{e['digest']}.json"
                                                   for e in lock.values())
    assert not [p for m, p in bucket.requests if m == "GET" and "/blobs/" in p]


def test_a_fresh_output_fetches_no_blob(bucket, fake_hiapi, run, tmp_path):
    """Outputs committed beside the lock, the cache empty: nothing to restore, nothing
    downloaded (an image may be megabytes)."""
    a = clone(tmp_path, "a")
    assert build(run, a)["rendered"] == 5
    b = _with_lock(tmp_path, a, "b")
    shutil.copytree(a / "out", b / "out")
    bucket.requests.clear()
    second = build(run, b)
    assert second["fresh"] == 5
    assert not [p for m, p in bucket.requests if "/blobs/" in p]


def test_a_clone_without_the_lock_lists_each_key_and_gets_its_blob_reading_no_record(
        bucket, fake_hiapi, run, tmp_path):
    """Without a lock a key's takes are listed under its own prefix; a key with one take
    restores it from its blob's reply: a LIST and a GET a frame, no record read."""
    a = clone(tmp_path, "a")
    assert build(run, a)["rendered"] == 5
    lock = _lock(a)
    bucket.requests.clear()
    b = clone(tmp_path, "b")
    second = build(run, b)
    assert (second["rendered"], second["restored"]) == (0, 5)
    assert _records_read(bucket) == []
    assert sorted(p for m, p in bucket.requests if "/blobs/" in p) == sorted(
        f"/{bucket.name}/cache/blobs/{e['digest']}" for e in lock.values())
    assert len([p for m, p in bucket.requests if "list-type" in p]) == 5
    assert len(bucket.requests) == 10
    for frame in lock:
        assert run("-C", str(b), "takes", frame).out == run("-C", str(a), "takes", frame).out


def test_a_key_with_two_takes_reads_their_records_to_choose(bucket, fake_hiapi, run,
                                                            tmp_path):
    """Which take a key restores without a lock is its newest, by the records' times: a key
    with more than one take has its records read, as before."""
    a = clone(tmp_path, "a")
    assert build(run, a)["rendered"] == 5
    frame = sorted(_lock(a))[0]
    assert build(run, a, "--force", frame)["rendered"] == 1  # a second take of that key
    newest = _lock(a)[frame]["digest"]
    bucket.requests.clear()
    b = clone(tmp_path, "b")
    second = build(run, b)
    assert (second["rendered"], second["restored"]) == (0, 5)
    assert _lock(b)[frame]["digest"] == newest
    assert len([r for r in _records_read(bucket) if r.startswith(_lock(a)[frame]["key"])]) == 2


def test_blobs_the_remote_refuses_to_serve_are_unknown_never_a_paid_render(
        bucket, fake_hiapi, run, tmp_path, monkeypatch):
    """A GET of a pinned blob answered 403: what the remote holds is unknown. The build says
    so and pays for nothing; the GETs not yet sent are not sent (one round, not one a frame)."""
    import s3fs

    call = s3fs.S3FileSystem._call_s3
    refused: list[str] = []

    async def refusing(self, method, *args, **kwargs):
        if method == "get_object" and "/blobs/" in kwargs.get("Key", ""):
            refused.append(kwargs["Key"])
            raise PermissionError("Access Denied")
        return await call(self, method, *args, **kwargs)

    from nbpipe.store import pinned

    sent: list[str] = []
    get = pinned._get

    async def counted(fs, path, temp):
        sent.append(path)
        return await get(fs, path, temp)

    a = clone(tmp_path, "a")
    assert build(run, a)["rendered"] == 5
    monkeypatch.setattr(s3fs.S3FileSystem, "_call_s3", refusing)
    monkeypatch.setattr(pinned, "_get", counted)
    monkeypatch.setattr(pinned, "GETS", 1)  # one at a time: the first refusal stops the rest
    result = run("-C", str(_with_lock(tmp_path, a, "b")), "build")
    assert result.code == 1 and "Traceback" not in result.err
    assert "remote unavailable (PermissionError: Access Denied)" in result.out
    assert fake_hiapi.counts["creates"] == 5  # nothing paid twice
    assert len(sent) == 1


def test_a_blob_first_pushed_as_another_keys_take_is_proven_by_this_keys_record(
        bucket, fake_hiapi, run, tmp_path):
    """The same bytes rendered for two keys: the blob names the key it was first pushed as, a
    valid take of that digest, but not this key's. The record under this key decides."""
    a = clone(tmp_path, "a")
    assert build(run, a)["rendered"] == 5
    lock = _lock(a)
    for entry in lock.values():
        _rewrite(bucket, entry["digest"], take_metadata("c" * 64, _take(digest=entry["digest"])))
    bucket.requests.clear()
    second = build(run, _with_lock(tmp_path, a, "b"))
    assert (second["rendered"], second["restored"]) == (0, 5)
    assert sorted(_records_read(bucket)) == sorted(f"{e['key']}/{e['digest']}.json"
                                                   for e in lock.values())
