"""The shared remote cache against a real S3 API on loopback (moto's server mode)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES_DIR


def _pins(repo: Path) -> set[str]:
    frames = json.loads((repo / "nbpipe.lock").read_text())["frames"]
    return {entry["digest"] for entry in frames.values()}


class Bucket:
    def __init__(self, fs, name: str):
        self.fs, self.name = fs, name
        self.requests: list[tuple[str, str]] = []  # (method, path?query) as moto received them

    def find(self, path: str) -> list[str]:
        return self.fs.find(f"{self.name}/{path}")

    def pipe_file(self, path: str, data: bytes) -> None:
        self.fs.pipe_file(f"{self.name}/{path}", data)


@pytest.fixture
def bucket(monkeypatch):
    """A bucket of its own on this process's moto server (tests/fakes/s3.py), nbpipe pointed at
    it; `requests` lists what the server received during the test."""
    import uuid

    import s3fs

    from tests.fakes import s3

    endpoint = s3.endpoint()
    name = f"team-{uuid.uuid4().hex[:8]}"  # moto keeps buckets per process: one per test
    for var, value in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                       "AWS_DEFAULT_REGION": "us-east-1", "NBPIPE_REMOTE": f"s3://{name}/cache",
                       "NBPIPE_REMOTE_ENDPOINT": endpoint}.items():
        monkeypatch.setenv(var, value)
    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": endpoint}, skip_instance_cache=True)
    fs.mkdir(name)
    bucket = Bucket(fs, name)

    def counted(environ) -> None:
        query = environ.get("QUERY_STRING", "")
        bucket.requests.append((environ["REQUEST_METHOD"],
                                environ["PATH_INFO"] + (f"?{query}" if query else "")))
    with s3.watching(counted):
        yield bucket


def remote_down(monkeypatch) -> str:
    """The network is down: nbpipe pointed at a port nothing listens on. Returns the remote's
    endpoint, for `remote_up`. One attempt per request (AWS_MAX_ATTEMPTS, which README lets a
    user set): botocore's retries of a refused connection only wait out their backoff, a second
    or two each, and what these tests check is what nbpipe says and pays once the remote has
    failed. nbpipe's own three attempts meet a dead port in
    test_push_with_the_remote_unreachable_says_so and dropped connections in
    test_a_remote_that_drops_connections_costs_a_build_seconds_not_minutes."""
    import os

    endpoint = os.environ["NBPIPE_REMOTE_ENDPOINT"]
    monkeypatch.setenv("NBPIPE_REMOTE_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    return endpoint


def remote_up(monkeypatch, endpoint: str) -> None:
    """The network is back, and nbpipe's own retries with it."""
    monkeypatch.setenv("NBPIPE_REMOTE_ENDPOINT", endpoint)
    monkeypatch.delenv("AWS_MAX_ATTEMPTS")


def clone(tmp_path: Path, name: str, files=("nbpipe.yaml",)) -> Path:
    root = tmp_path / name
    root.mkdir()
    for f in files:
        shutil.copy(EXAMPLES_DIR / "mira-storyboard" / f, root / f)
    return root


def build(run, root: Path, *args: str) -> dict:
    result = run("-C", str(root), "build", "--json", *args)
    assert result.code == 0, result.err
    lines = [json.loads(line) for line in result.out.splitlines()]
    return {**lines[-1], "events": lines[:-1]}


def test_second_clone_renders_nothing(bucket, fake_hiapi, run, tmp_path):
    first = build(run, clone(tmp_path, "a"))
    assert (first["rendered"], fake_hiapi.counts["creates"]) == (5, 5)
    assert len(bucket.find("cache/blobs")) == 5
    assert len(bucket.find("cache/takes")) == 5
    b = clone(tmp_path, "b")
    plan = run("-C", str(b), "plan").out
    assert plan.count("(from the remote cache)") == 5 and "USD 0.00 to spend" in plan
    second = build(run, b)
    assert (second["rendered"], second["restored"]) == (0, 5)
    assert fake_hiapi.counts["creates"] == 5  # counted at the API: the second clone paid nothing
    assert run("-C", str(b), "build", "--check").code == 0
    offline = run("-C", str(clone(tmp_path, "c")), "plan", "--offline", "--json").out
    assert json.loads(offline)["summary"]["render"] == 5


def test_a_failed_push_never_fails_the_build_and_the_next_build_sends_it(
        bucket, fake_hiapi, run, tmp_path, monkeypatch):
    a = clone(tmp_path, "a")
    endpoint = remote_down(monkeypatch)
    down = build(run, a, "--remote-errors=render")
    assert down["rendered"] == 5
    notes = [e["message"] for e in down["events"] if e["event"] == "note"]
    assert notes[0].startswith("remote: unreachable (EndpointConnectionError")
    assert notes[1].startswith("remote: 5 image(s) not pushed (EndpointConnectionError)")
    remote_up(monkeypatch, endpoint)
    build(run, a)  # nothing to render; it sends what is left
    assert len(bucket.find("cache/blobs")) == 5
    assert build(run, clone(tmp_path, "b"))["rendered"] == 0
    assert fake_hiapi.counts["creates"] == 5


def test_the_unpushed_list_an_older_nbpipe_kept_is_sent_then_dropped(bucket, fake_hiapi, run,
                                                                     tmp_path):
    import shutil

    a = clone(tmp_path, "a")
    build(run, a, "--offline")  # rendered, never pushed
    shutil.rmtree(a / ".nbpipe" / "unpushed")  # as older nbpipe left it: no mark says so
    entry = next(iter(json.loads((a / "nbpipe.lock").read_text())["frames"].values()))
    state = a / ".nbpipe" / "state.json"
    doc = json.loads(state.read_text())
    state.write_text(json.dumps({**doc, "unpushed": [[entry["key"], entry["digest"]]],
                                 "synced": f"s3://{bucket.name}/cache"}))  # no catch-up
    build(run, a)
    assert bucket.find("cache/blobs") == [f"{bucket.name}/cache/blobs/{entry['digest']}"]
    assert "unpushed" not in json.loads(state.read_text())
    assert not list((a / ".nbpipe" / "unpushed").glob("*"))


def test_an_offline_build_leaves_its_images_for_the_next_build_to_push(bucket, fake_hiapi,
                                                                        run, tmp_path):
    """`--offline` sends nothing, but what it paid for is the team's too: the next build with
    the remote (not only `nbpipe push`) sends it, so a teammate never pays for it again."""
    from nbpipe.engine.noop import still_fresh

    a = clone(tmp_path, "a")
    offline = build(run, a, "--offline")
    assert offline["rendered"] == 5 and bucket.find("cache/blobs") == []
    assert [e["message"] for e in offline["events"] if e["event"] == "note"] == [
        "remote: offline; 5 new image(s) to push: the next build with the remote, or "
        "`nbpipe push`, sends them"]
    journal = a / ".nbpipe" / "journal.jsonl"
    assert still_fresh(a, {"backend": None, "profile": None}, journal) is None
    assert build(run, a)["fresh"] == 5
    assert len(bucket.find("cache/blobs")) == 5
    assert still_fresh(a, {"backend": None, "profile": None}, journal) == 5
    assert build(run, clone(tmp_path, "b"))["rendered"] == 0
    assert fake_hiapi.counts["creates"] == 5


def test_a_project_that_gains_a_remote_sends_it_what_it_had(bucket, fake_hiapi, run,
                                                              tmp_path, monkeypatch):
    """Images rendered before the project had a remote (or while it was down) are in no mark:
    the first build that can list the remote sends what it lacks, once, so a clone never
    pays for them again."""
    import os

    url, endpoint = os.environ["NBPIPE_REMOTE"], os.environ["NBPIPE_REMOTE_ENDPOINT"]
    monkeypatch.delenv("NBPIPE_REMOTE")
    a = clone(tmp_path, "a")
    assert build(run, a)["rendered"] == 5
    monkeypatch.setenv("NBPIPE_REMOTE", url)
    remote_down(monkeypatch)
    down = build(run, a)
    assert down["fresh"] == 5 and not (a / ".nbpipe" / "unpushed").exists()
    remote_up(monkeypatch, endpoint)
    up = build(run, a)
    assert [e["message"] for e in up["events"] if e["event"] == "note"] == [
        "remote: sending 5 image(s) it lacks (made before this project used it, or by another "
        "project)"]
    assert len(bucket.find("cache/blobs")) == 5
    again = build(run, a, "*")  # '*': the full path, not the fast one
    assert [e for e in again["events"] if e["event"] == "note"] == []
    assert build(run, clone(tmp_path, "b"))["rendered"] == 0
    assert fake_hiapi.counts["creates"] == 5


def test_push_command(bucket, fake_hiapi, run, tmp_path, monkeypatch):
    a = clone(tmp_path, "a")
    build(run, a, "--offline")
    assert bucket.find("cache/blobs") == []
    assert run("-C", str(a), "push").out == f"pushed 5 image(s) to s3://{bucket.name}/cache; " \
                                            "0 were there already\n"
    assert run("-C", str(a), "push").out.endswith("5 were there already\n")


def test_push_clears_the_marks_of_its_remote_only(bucket, fake_hiapi, run, tmp_path):
    """A cache shared by projects may hold pushes still to do to another remote: pushing to
    this one sends nothing there, so those stay to do."""
    from nbpipe.store.cache import Cache

    a = clone(tmp_path, "a")
    build(run, a, "--offline")
    entries = list(json.loads((a / "nbpipe.lock").read_text())["frames"].values())
    cache = Cache(a / ".nbpipe")
    ours = f"s3://{bucket.name}/cache"
    try:
        cache.mark_unpushed(entries[0]["key"], entries[0]["digest"], ours)
        cache.mark_unpushed(entries[1]["key"], entries[1]["digest"], "s3://elsewhere/cache")
        cache.mark_unpushed(entries[1]["key"], entries[1]["digest"], ours)  # the same take
    finally:
        cache.close()
    assert run("-C", str(a), "push").out.startswith("pushed 5 image(s)")
    cache = Cache(a / ".nbpipe")
    try:
        assert cache.unpushed(ours) == []
        assert cache.unpushed() == [(entries[1]["key"], entries[1]["digest"])]
        assert cache.unpushed("s3://elsewhere/cache") == cache.unpushed()
    finally:
        cache.close()


def test_only_a_push_waiting_for_this_projects_remote_keeps_the_fast_path_off(
        bucket, fake_hiapi, run, tmp_path):
    """On a cache shared by projects, another project's push still to do is that project's
    build's to send: this project's no-op stays on the fast path."""
    from nbpipe.engine.noop import still_fresh
    from nbpipe.store.cache import Cache

    a = clone(tmp_path, "a")
    build(run, a)
    entry = next(iter(json.loads((a / "nbpipe.lock").read_text())["frames"].values()))

    def fresh():
        return still_fresh(a, {"backend": None, "profile": None}, a / ".nbpipe" / "journal.jsonl")

    def mark(remote):
        cache = Cache(a / ".nbpipe")
        try:
            cache.mark_unpushed(entry["key"], entry["digest"], remote)
        finally:
            cache.close()

    assert fresh() == 5
    mark("s3://elsewhere/cache")
    assert fresh() == 5
    mark(f"s3://{bucket.name}/cache")
    assert fresh() is None  # the full path sends it
    build(run, a)
    assert fresh() == 5


def test_corrupted_remote_blob_is_detected_and_ignored(bucket, fake_hiapi, run, tmp_path):
    build(run, clone(tmp_path, "a"))
    lock = json.loads((tmp_path / "a" / "nbpipe.lock").read_text())["frames"]
    bucket.pipe_file(f"cache/blobs/{lock['workshop']['digest']}", b"not the image")
    second = build(run, clone(tmp_path, "b"))
    assert (second["rendered"], second["restored"]) == (1, 4)  # the bad blob was not used
    # Same key, same take number: the same Idempotency-Key, so HiAPI replays the task of the
    # first clone instead of billing a new one.
    assert (fake_hiapi.counts["creates"], fake_hiapi.counts["replays"]) == (5, 1)


def test_fresh_clone_with_only_the_lock_pulls_every_pinned_image(bucket, fake_hiapi, run,
                                                                 tmp_path):
    build(run, clone(tmp_path, "a"))
    b = clone(tmp_path, "b")
    shutil.copy(tmp_path / "a" / "nbpipe.lock", b / "nbpipe.lock")
    result = run("-C", str(b), "pull")
    assert result.code == 0 and result.out.count("pulled ") == 5
    assert run("-C", str(b), "build", "--check").code == 0
    assert fake_hiapi.counts["creates"] == 5
    for entry in json.loads((b / "nbpipe.lock").read_text())["frames"].values():
        assert (b / entry["output"]).is_file()


def test_restored_takes_are_known_locally_afterwards(bucket, fake_hiapi, run, tmp_path):
    build(run, clone(tmp_path, "a"))
    b = clone(tmp_path, "b")
    second = build(run, b)
    assert all(e["detail"].endswith("from the remote cache, free")
               for e in second["events"] if e.get("status") == "restored")
    for output in (b / "out").iterdir():
        output.unlink()
    offline = build(run, b, "--offline")
    assert (offline["rendered"], offline["restored"]) == (0, 5)


def test_hiapi_inputs_are_uploaded_and_sent_as_presigned_urls(bucket, fake_hiapi, run,
                                                              make_project):
    from tests.conftest import tiny_png

    root = make_project("""\
version: 1
defaults: {backend: hiapi, model: Nano-Banana-Pro}
bibles:
  mira: {text: "Mira.", references: [refs/mira-face.png]}
targets:
  shot: {prompt: "{{ bible }} at work", bible: mira}
""", {"refs/mira-face.png": tiny_png()})
    assert build(run, root)["rendered"] == 1
    (task,) = fake_hiapi.tasks.values()
    (url,) = task.input["image_input"]
    import hashlib

    digest = hashlib.sha256(tiny_png()).hexdigest()
    assert f"/{bucket.name}/cache/blobs/{digest}?" in url and "Signature=" in url
    assert bucket.find(f"cache/blobs/{digest}") == [f"{bucket.name}/cache/blobs/{digest}"]


def test_gc_remote_keeps_every_take_pinned_by_a_lock_in_any_branch(bucket, fake_hiapi, run,
                                                                   tmp_path, monkeypatch):
    monkeypatch.setenv("NBPIPE_GC_GRACE", "0")  # these blobs are seconds old
    import subprocess

    repo = clone(tmp_path, "repo")

    def git(*args):
        subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)

    git("init", "-q", "-b", "main")
    git("config", "user.email", "t@example.com")
    git("config", "user.name", "t")
    build(run, repo)
    git("add", "nbpipe.yaml", "nbpipe.lock")
    git("commit", "-q", "-m", "main")
    main_pins = _pins(repo)
    git("checkout", "-q", "-b", "feature")
    text = (repo / "nbpipe.yaml").read_text()
    (repo / "nbpipe.yaml").write_text(text.replace("kneeling to bolt", "kneeling to weld"))
    build(run, repo)
    git("commit", "-q", "-am", "feature")
    feature_pins = _pins(repo)
    (repo / "nbpipe.yaml").write_text(text.replace("kneeling to bolt", "kneeling to paint"))
    build(run, repo)  # an experiment, pushed but never committed
    git("checkout", "-q", "--", "nbpipe.yaml", "nbpipe.lock")
    assert len(bucket.find("cache/blobs")) == 9
    result = run("-C", str(repo), "gc", "--remote", "--older-than", "0s")
    assert result.code == 0, result.err
    assert result.out.startswith("pins read from 2 git ref(s) and the working tree")
    left = {p.rpartition("/")[2] for p in bucket.find("cache/blobs")}
    assert left == main_pins | feature_pins and len(left) == 7


def test_a_lost_create_reply_with_an_uploaded_input_is_collected_not_wedged(
        bucket, fake_hiapi, run, make_project):
    """12.1: the presigned input URL was signed again on the next build, so the resent create
    carried the same Idempotency-Key with another body: 422 on every build, the task lost."""
    import time

    from tests.conftest import tiny_png

    root = make_project("""\
version: 1
defaults: {backend: hiapi, model: Nano-Banana-Pro}
targets:
  shot: {prompt: "at work", inputs: [refs/face.png]}
""", {"refs/face.png": tiny_png()})
    fake_hiapi.faults.add("create", "drop", "503", "503", "503", "503")  # created; reply lost
    first = run("-C", str(root), "build", "--json")
    assert first.code == 1 and fake_hiapi.counts["creates"] == 1
    time.sleep(1.1)  # the next signature differs
    second = build(run, root)
    assert second["rendered"] + second["restored"] == 1, second
    assert fake_hiapi.counts["creates"] == 1 and fake_hiapi.counts["replays"] >= 1


def test_an_unknown_remote_never_silently_becomes_a_paid_render(bucket, fake_hiapi, run,
                                                                tmp_path, monkeypatch):
    """12.6: every remote read error was a "miss", and so a paid render of an image the team
    already owns."""
    build(run, clone(tmp_path, "a"))
    remote_down(monkeypatch)
    b = clone(tmp_path, "b")
    result = run("-C", str(b), "build")
    assert result.code == 1 and "Traceback" not in result.err
    assert "remote unavailable (EndpointConnectionError" in result.out
    assert "--remote-errors=render" in result.out
    assert fake_hiapi.counts["creates"] == 5  # nothing paid twice


def test_an_unreachable_remote_never_crashes_a_build_that_uploads_an_input(
        bucket, fake_hiapi, run, make_project, monkeypatch):
    """12.6: the presign upload's botocore error crossed the boundary: exit 3."""
    from tests.conftest import tiny_png

    root = make_project("""\
version: 1
defaults: {backend: hiapi, model: Nano-Banana-Pro}
targets:
  shot: {prompt: "at work", inputs: [refs/face.png]}
  plain: {prompt: "no input"}
""", {"refs/face.png": tiny_png()})
    remote_down(monkeypatch)
    result = run("-C", str(root), "build", "--remote-errors=render")
    assert result.code == 1 and "Traceback" not in result.err
    assert "failed   shot  remote unavailable" in result.out
    assert "rendered plain" in result.out


def test_an_image_collected_from_an_earlier_build_is_pushed(bucket, fake_hiapi, run,
                                                            make_project):
    """Found by the remote money model: a task an earlier build left (Ctrl-C, a lost create
    reply) was collected into the local cache and never pushed, so a second clone paid again."""
    root = make_project("""\
version: 1
defaults: {backend: hiapi, model: Nano-Banana}
targets:
  shot: {prompt: "at work"}
""")
    fake_hiapi.faults.add("create", "drop", "503", "503", "503", "503")  # created; reply lost
    assert run("-C", str(root), "build").code == 1
    second = build(run, root)
    assert second["rendered"] + second["restored"] == 1, second
    assert fake_hiapi.counts["creates"] == 1
    (blob,) = bucket.find("cache/blobs")
    (record,) = bucket.find("cache/takes")
    assert record.endswith(f"/{blob.rpartition('/')[2]}.json")
    assert json.loads(bucket.fs.cat_file(record))["request"]["prompt"] == "at work"


def test_a_remote_that_drops_connections_costs_a_build_seconds_not_minutes(
        bucket, fake_hiapi, run, tmp_path, monkeypatch):
    """Found by the remote money model: with connections dropped, each remote request took
    ~45 s (botocore's retries inside s3fs's), and every push of the build waited its turn."""
    import os
    import time
    from urllib.parse import urlsplit

    from tests.fakes.cable import Cable

    a = clone(tmp_path, "a")
    moto = urlsplit(os.environ["NBPIPE_REMOTE_ENDPOINT"])
    with Cable((moto.hostname, moto.port)) as cable:
        monkeypatch.setenv("NBPIPE_REMOTE_ENDPOINT", cable.url)
        cable.unplug()
        started = time.monotonic()
        down = build(run, a, "--remote-errors=render")
        elapsed = time.monotonic() - started
        assert down["rendered"] == 5 and cable.cut > 0
        notes = [e["message"] for e in down["events"] if e["event"] == "note"]
        assert notes[-1].startswith("remote: 5 image(s) not pushed (ConnectionClosedError)")
        assert elapsed < 60, elapsed  # ~130 s before (room for a loaded machine)
        cable.plug()
        build(run, a)
    assert len(bucket.find("cache/blobs")) == 5


def test_push_with_the_remote_unreachable_says_so(bucket, fake_hiapi, run, tmp_path,
                                                  monkeypatch):
    """`nbpipe push` let the storage error through: a traceback and exit 3."""
    a = clone(tmp_path, "a")
    build(run, a, "--offline")
    monkeypatch.setenv("NBPIPE_REMOTE_ENDPOINT", "http://127.0.0.1:9")
    result = run("-C", str(a), "push")
    assert result.code == 1 and "Traceback" not in result.err
    assert result.err.startswith("error: remote unavailable (EndpointConnectionError: ")


def test_pull_and_plan_with_the_remote_unreachable_say_so(bucket, fake_hiapi, run, tmp_path,
                                                          monkeypatch):
    """A remote that did not answer was reported as not holding the images: `pull` said "is no
    take of its key", and `plan` priced every frame as a render with no word of the remote."""
    a = clone(tmp_path, "a")
    build(run, a)
    b = clone(tmp_path, "b", files=())
    shutil.copy(a / "nbpipe.yaml", b / "nbpipe.yaml")
    shutil.copy(a / "nbpipe.lock", b / "nbpipe.lock")
    remote_down(monkeypatch)
    pulled = run("-C", str(b), "pull")
    assert pulled.code == 1
    lines = pulled.out.splitlines()
    assert len(lines) == 5 and all(
        line.startswith("missing  ") and "  (remote unavailable (EndpointConnectionError: " in line
        and line.endswith("): retry)") for line in lines), pulled.out
    steps = json.loads(run("-C", str(b), "plan", "--json").out)["frames"]
    assert {s["action"] for s in steps} == {"render"}
    assert all(s["reason"].endswith(" (remote unavailable: the team's cache may hold it)")
               for s in steps)
    assert fake_hiapi.counts["creates"] == 5


@pytest.fixture
def unreadable_records(monkeypatch):
    """The remote lists its take records but refuses to serve them (AccessDenied on GET, as
    s3fs reports a 403)."""
    import s3fs

    cat_file = s3fs.S3FileSystem._cat_file

    async def refused(self, path, *args, **kwargs):
        if "/takes/" in path:
            raise PermissionError("Access Denied")
        return await cat_file(self, path, *args, **kwargs)
    monkeypatch.setattr(s3fs.S3FileSystem, "_cat_file", refused)


def test_unreadable_take_records_are_unknown_not_absent(bucket, fake_hiapi, run, tmp_path,
                                                        request):
    """The batch read of take records before planning dropped every failed read: a record the
    remote refused to serve was a miss, and the frame a paid render. (Blobs as an older nbpipe
    pushed them, without the take in their metadata: their records must be read.)"""
    build(run, clone(tmp_path, "a"))
    for name in bucket.find("cache/blobs"):
        bucket.fs.pipe_file(name, bucket.fs.cat_file(name))
    request.getfixturevalue("unreadable_records")
    result = run("-C", str(clone(tmp_path, "b")), "build")
    assert result.code == 1, result.out
    assert "remote unavailable (PermissionError: Access Denied)" in result.out
    assert fake_hiapi.counts["creates"] == 5


def test_gc_remote_never_removes_what_it_could_not_read(bucket, fake_hiapi, run, tmp_path,
                                                        request):
    """gc --remote took a take record it could not read for one of unknown age, and removed
    it (and listing errors crossed the boundary as a traceback)."""
    import subprocess

    a = clone(tmp_path, "a")
    subprocess.run(["git", "init", "-q", str(a)], check=True)
    build(run, a)
    text = (a / "nbpipe.yaml").read_text()
    (a / "nbpipe.yaml").write_text(text.replace("kneeling to bolt", "kneeling to weld"))
    build(run, a)  # the superseded takes are young: gc --older-than 30d keeps them
    records = bucket.find("cache/takes")
    assert len(records) > 5
    request.getfixturevalue("unreadable_records")
    result = run("-C", str(a), "gc", "--remote", "--older-than", "30d")
    assert result.code == 1 and "Traceback" not in result.err
    assert result.err.startswith("error: remote unavailable (PermissionError: Access Denied)")
    assert bucket.find("cache/takes") == records


def test_a_push_left_by_a_killed_build_is_sent_by_the_next_build(bucket, fake_hiapi, run,
                                                                 make_project, monkeypatch):
    """Found by the remote money model: the pushes still to do were remembered only when a
    build ended, so a build killed (kill -9, a crash) while the remote was out lost them: the
    image stayed local and a second clone paid for it again."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from urllib.parse import urlsplit

    from tests.fakes.cable import Cable

    root = make_project("""\
version: 1
defaults: {backend: hiapi, model: Nano-Banana}
targets:
  one: {prompt: "a lighthouse"}
  two: {prompt: "a harbour"}
""")
    fake_hiapi.faults.add("task", "ok", "stuck")  # the first task done, the second stuck
    moto = urlsplit(os.environ["NBPIPE_REMOTE_ENDPOINT"])
    with Cable((moto.hostname, moto.port)) as cable:
        monkeypatch.setenv("NBPIPE_REMOTE_ENDPOINT", cable.url)
        cable.unplug()
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # no backoff waited out: see remote_down
        proc = subprocess.Popen([sys.executable, "-m", "nbpipe", "-C", str(root), "build",
                                 "-j", "1", "--remote-errors=render"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while not list((root / "out").glob("*.png")) and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        assert len(fake_hiapi.tasks) == 2 and len(list((root / "out").glob("*.png"))) == 1
        cable.plug()
        monkeypatch.delenv("AWS_MAX_ATTEMPTS")
        for task in fake_hiapi.tasks.values():
            task.outcome = "success"
        build(run, root)
    assert len(bucket.find("cache/blobs")) == 2
    assert fake_hiapi.counts["creates"] == 2


def test_gc_keeps_a_take_not_yet_pushed(bucket, fake_hiapi, run, make_project, monkeypatch):
    """gc removed a superseded take that a build with the remote out could not push yet: an
    image paid for, gone before the team's cache ever had it."""
    root = make_project("""\
version: 1
defaults: {backend: hiapi, model: Nano-Banana}
targets:
  shot: {prompt: "a lighthouse"}
""")
    endpoint = remote_down(monkeypatch)
    build(run, root, "--remote-errors=render")
    (root / "nbpipe.yaml").write_text((root / "nbpipe.yaml").read_text().replace(
        "a lighthouse", "a harbour"))
    build(run, root, "--remote-errors=render")
    gc = run("-C", str(root), "gc", "--older-than", "0s")
    assert gc.code == 0 and "1 take(s) not yet pushed kept" in gc.out, gc.out
    remote_up(monkeypatch, endpoint)
    build(run, root)
    assert len(bucket.find("cache/blobs")) == 2 and fake_hiapi.counts["creates"] == 2
    assert "removed shot, take 1" in run("-C", str(root), "gc", "--older-than", "0s").out


def test_a_remote_folder_named_like_the_cache_is_the_remote_not_our_disk(tmp_path):
    """An OSError is this machine's disk (raised) only when it names a file of the local cache:
    a remote folder whose path starts like the cache's (`.nbpipe-team` beside `.nbpipe`) is the
    remote, its state unknown."""
    from nbpipe.store.cache import Cache
    from nbpipe.store.remote import Remote

    cache = Cache(tmp_path / ".nbpipe")
    try:
        team = Remote(f"file://{tmp_path}/.nbpipe-team")
        digest = "a" * 64
        (tmp_path / ".nbpipe-team" / "blobs" / digest).mkdir(parents=True)  # no file to read
        assert team.fetch(digest, cache) is False
        assert team.unreachable.startswith("IsADirectoryError")
    finally:
        cache.close()


def test_the_fast_path_waits_only_for_marks_the_full_path_sends(fake_hiapi, run, tmp_path,
                                                               monkeypatch):
    """What the fast path counts in `unpushed/` is what a build would send: a stray file (a
    Finder `.DS_Store`, a temp an interrupted write left) never keeps it off for good, and a
    mark an older nbpipe wrote counts only if it names this project's remote."""
    from nbpipe.engine.noop import still_fresh

    ours = "s3://team/cache"
    monkeypatch.setenv("NBPIPE_REMOTE", ours)
    a = clone(tmp_path, "a")
    build(run, a, "--offline")  # the fingerprint names the remote even offline
    entry = next(iter(json.loads((a / "nbpipe.lock").read_text())["frames"].values()))
    marks = a / ".nbpipe" / "unpushed"
    for mark in marks.iterdir():  # the offline build's own marks: as if sent since
        mark.unlink()
    state = a / ".nbpipe" / "state.json"  # and as if the remote had been caught up
    state.write_text(json.dumps({**json.loads(state.read_text()), "synced": ours}))
    build(run, a, "--offline")  # nothing left for the remote: this one writes a fingerprint

    def fresh():
        return still_fresh(a, {"backend": None, "profile": None}, a / ".nbpipe" / "journal.jsonl")

    assert fresh() == 5
    (marks / ".DS_Store").write_bytes(b"\0")
    (marks / "notes.txt").write_text(ours)
    (marks / f".{entry['key']}.{entry['digest']}.0123.part").write_text(ours)
    assert fresh() == 5
    legacy = marks / f"{entry['key']}.{entry['digest']}"
    legacy.write_text("s3://elsewhere/cache")  # older nbpipe, another project's remote
    assert fresh() == 5
    legacy.write_text(ours)
    assert fresh() is None  # the full path sends it


def _remote_reads(monkeypatch) -> tuple[list[str], list[str]]:
    """(prefixes listed, take records read by name) by every Remote of this test, as asked
    of its filesystem."""
    from nbpipe.store import remote

    listed: list[str] = []
    named: list[str] = []
    real_open = remote._open_fs

    def open_fs(url, endpoint_url):
        fs, root = real_open(url, endpoint_url)
        find, cat = fs.find, fs.cat

        def finding(path, *args, **kwargs):
            listed.append(path.rpartition("/cache/")[2])
            return find(path, *args, **kwargs)

        def reading(path, *args, **kwargs):
            paths = path if isinstance(path, list) else [path]
            named.extend(p.rpartition("/takes/")[2].removesuffix(".json") for p in paths
                         if "/takes/" in p)
            return cat(path, *args, **kwargs)
        fs.find, fs.cat = finding, reading
        return fs, root
    monkeypatch.setattr(remote, "_open_fs", open_fs)
    return listed, named


def test_a_clone_with_the_lock_restores_each_frame_in_one_get_of_its_blob(
        bucket, fake_hiapi, run, tmp_path, monkeypatch):
    """The proof that a pinned image is a take of its frame's key comes with the blob's own
    reply (its metadata): no take record is read, nothing is listed, one GET a frame."""
    a = clone(tmp_path, "a")
    assert build(run, a)["rendered"] == 5
    lock = json.loads((a / "nbpipe.lock").read_text())["frames"]
    bucket.requests.clear()
    b = clone(tmp_path, "b")
    shutil.copy(a / "nbpipe.lock", b / "nbpipe.lock")
    second = build(run, b)
    assert (second["rendered"], second["restored"]) == (0, 5)
    assert sorted(bucket.requests) == sorted(
        ("GET", f"/{bucket.name}/cache/blobs/{e['digest']}") for e in lock.values())
    assert all(e["detail"].endswith("from the remote cache, free")
               for e in second["events"] if e.get("status") == "restored")
    assert run("-C", str(b), "build", "--check", "--offline").code == 0  # indexed here


def test_a_clone_with_the_lock_reads_each_pinned_record_by_name_when_blobs_say_nothing(
        bucket, fake_hiapi, run, tmp_path, monkeypatch):
    """Blobs an older nbpipe pushed carry no metadata: each pin is proven by its take record,
    read by its known name; still nothing is listed, and no blob is fetched twice."""
    a = clone(tmp_path, "a")
    assert build(run, a)["rendered"] == 5
    lock = json.loads((a / "nbpipe.lock").read_text())["frames"]
    for entry in lock.values():  # as an older nbpipe wrote them: the same bytes, no metadata
        blob = f"cache/blobs/{entry['digest']}"
        bucket.pipe_file(blob, bucket.fs.cat_file(f"{bucket.name}/{blob}"))
    listed, named = _remote_reads(monkeypatch)
    bucket.requests.clear()
    b = clone(tmp_path, "b")
    shutil.copy(a / "nbpipe.lock", b / "nbpipe.lock")
    second = build(run, b)
    assert (second["rendered"], second["restored"]) == (0, 5)
    assert listed == []  # neither the remote's takes nor a key's: the lock names them
    assert sorted(set(named)) == sorted(f"{e['key']}/{e['digest']}" for e in lock.values())
    blob_gets = [path for method, path in bucket.requests if "/blobs/" in path]
    assert sorted(blob_gets) == sorted(f"/{bucket.name}/cache/blobs/{e['digest']}"
                                       for e in lock.values())
    assert run("-C", str(b), "build", "--check", "--offline").code == 0  # indexed here


def test_a_clone_without_the_lock_lists_its_own_keys_not_the_remote(bucket, fake_hiapi, run,
                                                                      tmp_path, monkeypatch):
    assert build(run, clone(tmp_path, "a"))["rendered"] == 5
    bucket.pipe_file(f"cache/takes/{'c' * 64}/{'d' * 64}.json", b"{}")  # another project's
    listed, _ = _remote_reads(monkeypatch)
    second = build(run, clone(tmp_path, "b"))
    assert (second["rendered"], second["restored"]) == (0, 5)
    assert "takes" not in listed and len(listed) == 5
    assert all(prefix.startswith("takes/") and prefix != f"takes/{'c' * 64}"
               for prefix in listed)


def test_a_lock_pinning_an_image_the_remote_never_made_for_that_key_restores_nothing(
        bucket, fake_hiapi, run, tmp_path):
    """The lock may come from a pull request: a pin is restored only when the remote holds a
    take of that very key with that digest (its record, read by name)."""
    a = clone(tmp_path, "a")
    assert build(run, a)["rendered"] == 5
    lock = json.loads((a / "nbpipe.lock").read_text())
    names = sorted(lock["frames"])
    first, other = lock["frames"][names[0]], lock["frames"][names[1]]
    first["digest"] = other["digest"]  # another frame's image, pinned to this frame
    b = clone(tmp_path, "b")
    (b / "nbpipe.lock").write_text(json.dumps(lock))
    second = build(run, b)
    restored = {e["frame"]: e for e in second["events"] if e.get("status") == "restored"}
    assert restored[names[0]]["frame"] == names[0]
    written = json.loads((b / "nbpipe.lock").read_text())["frames"][names[0]]["digest"]
    assert written != other["digest"]  # the frame's own take, found by its key, not the pin


def test_restoring_from_the_local_cache_asks_the_remote_nothing(bucket, fake_hiapi, run,
                                                               tmp_path, monkeypatch):
    """Outputs deleted, their takes in the local cache: a request per frame to the remote
    (a LIST of each key) was the price of a local restore with a remote configured."""
    a = clone(tmp_path, "a")
    assert build(run, a)["rendered"] == 5
    shutil.rmtree(a / "out")
    listed, named = _remote_reads(monkeypatch)
    assert build(run, a)["restored"] == 5
    assert (listed, named) == ([], [])


def test_a_damaged_blob_in_the_local_cache_is_fetched_again_not_rendered(bucket, fake_hiapi,
                                                                         run, tmp_path):
    """Pulled blobs become durable at the build's one sync: a power cut before it can leave
    one damaged. Its restore fetches it from the remote again instead of paying."""
    a = clone(tmp_path, "a")
    assert build(run, a)["rendered"] == 5
    b = clone(tmp_path, "b")
    shutil.copy(a / "nbpipe.lock", b / "nbpipe.lock")
    assert build(run, b)["restored"] == 5
    shutil.rmtree(b / "out")
    for blob in (b / ".nbpipe" / "blobs").rglob("*"):
        if blob.is_file():
            blob.write_bytes(b"")  # what a power cut leaves of a file not yet synced
    again = build(run, b)
    assert (again["rendered"], again["restored"]) == (0, 5)
    assert fake_hiapi.counts["creates"] == 5
    assert run("-C", str(b), "build", "--check", "--offline").code == 0
