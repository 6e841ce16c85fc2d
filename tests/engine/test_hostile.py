"""Hostile combinations of faults, signals and concurrent commands, driving the real CLI
(`python -m nbpipe` processes) against the loopback fakes, judged only from outside: tasks created
and requests billed at the fake, exit codes, files on disk and the lock.

1. kill -9 around a lost HiAPI create reply (and a lost Gemini reply), then builds again;
2. one and two Ctrl-C with ten HiAPI tasks longer than the grace period, then a build after they
   finish;
3. two commands at once on one cache: two projects sharing NBPIPE_CACHE_DIR, two builds of one
   project, and `gc --older-than 0s` beside a build.
4. an --offline build of a project with a remote (moto on loopback), stopped (kill -9, Ctrl-C)
   while a create's reply is lost and tasks are stuck; the next build (with `nbpipe push` beside
   it) must bring every image to the remote, and a clone must pay nothing.

Every moment a test acts at is held, not timed: the fakes keep a request (or a task) waiting
until the test releases it (`fake.holds`), and a command is known to be at a point by what it
said there. Nothing depends on a process being slow or fast enough.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest

from tests.conftest import read_until, wait_for
from tests.fakes.gemini import FakeGemini
from tests.fakes.hiapi import FakeHiApi
from tests.samples import THREE, on_gemini
from tests.store.test_remote import bucket  # noqa: F401 - the fixture (moto on loopback)

TEN = """\
version: 1
defaults: {backend: hiapi, model: Nano-Banana}
targets:
  t: {prompt: "tile {{ n }}", matrix: {n: ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]}}
"""
OK = (0, 1, 130)  # what a build may exit with here: never 2 or 3


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def hiapi_env(fake: FakeHiApi, **extra: str) -> dict:
    return {**os.environ, "PYTHONUNBUFFERED": "1",
            "HIAPI_API_KEY": fake.key, "HIAPI_BASE_URL": fake.url,
            "NBPIPE_HIAPI_POLL_DELAY": "0", "NBPIPE_HIAPI_POLL_INTERVAL": "0.02",
            "NBPIPE_RETRY_BASE": "0.01", "NBPIPE_RECOVER_TIMEOUT": "20", **extra}


def gemini_env(fake: FakeGemini, **extra: str) -> dict:
    env = {**os.environ, "PYTHONUNBUFFERED": "1",
           "GEMINI_API_KEY": fake.key, "GOOGLE_GEMINI_BASE_URL": fake.url,
           "NBPIPE_RETRY_BASE": "0.01", **extra}
    env.pop("GOOGLE_API_KEY", None)
    return env


def start(root: Path, env: dict, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "nbpipe", "-C", str(root), *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def start_until(fake, what: str, count: int, root: Path, env: dict,
                *args: str) -> subprocess.Popen:
    """Start a command; return once the fake counts `count` of `what` (or the command ended)."""
    proc = start(root, env, *args)
    wait_for(lambda: fake.counts.get(what, 0) >= count or proc.poll() is not None)
    return proc


def finish(proc: subprocess.Popen, allowed=OK) -> tuple[int, str]:
    """Wait for a command; its exit code and everything it said (no traceback, ever)."""
    out, err = proc.communicate(timeout=120)
    said = err + out
    assert "Traceback" not in said, said[-3000:]
    if proc.returncode != -signal.SIGKILL:
        assert proc.returncode in allowed, (proc.returncode, said[-3000:])
    return proc.returncode, said


def nbpipe(root: Path, env: dict, *args: str, allowed=OK) -> tuple[int, str]:
    return finish(start(root, env, *args), allowed)


def project(root: Path, manifest: str) -> Path:
    root.mkdir(parents=True)
    (root / "nbpipe.yaml").write_text(manifest)
    return root


def lock_frames(root: Path) -> dict:
    path = root / "nbpipe.lock"
    return json.loads(path.read_text())["frames"] if path.exists() else {}


def blobs(root: Path, cache: Path | None = None) -> set[str]:
    """The images in a project's cache (or in `cache`)."""
    return {p.name for p in (cache or root / ".nbpipe").joinpath("blobs").glob("*/*")}


def first_line(stream) -> str:
    import select

    assert select.select([stream], [], [], 60)[0], "no word from the command"
    return stream.readline()


def settle(root: Path, env: dict, jobs: list[str]) -> list[int]:
    """Build again with each -j in turn until one exits 0; then one more build. The codes."""
    codes = []
    for j in jobs:
        code, said = nbpipe(root, env, "build", *(["-j", j] if j else []))
        codes.append(code)
        if code == 0:
            break
    assert codes[-1] == 0, said
    return codes


def one_task_per_request(fake: FakeHiApi) -> Counter:
    """Tasks the fake created per prompt; no two under one Idempotency-Key."""
    assert len(fake.created_keys) == len(set(fake.created_keys)), fake.created_keys
    return Counter(t.input["prompt"] for t in fake.tasks.values())


def pins_the_tasks(root: Path, fake: FakeHiApi) -> None:
    """The lock pins, for each frame, the image of the task made for its prompt, on disk."""
    images = {t.input["prompt"]: sha(t.image) for t in fake.tasks.values()}
    lock = lock_frames(root)
    manifest = (root / "nbpipe.yaml").read_text()
    for name, entry in lock.items():
        prompt = manifest.split(f"  {name}: {{prompt: ")[1].split("}")[0]
        assert entry["digest"] == images[prompt], (name, entry)
        assert sha((root / entry["output"]).read_bytes()) == entry["digest"]


# --- 1. kill -9 around a lost create reply ----------------------------------------------------

CREATE, POLL = "POST /v1/tasks", "GET /v1/tasks/"
# where the fake holds the build when it is killed: (point, requests let through first); the
# three creates at -j 3 each lose their reply, and each is then sent again (a replay)
MOMENTS = {"before any create": (CREATE, 0),
           "as the first task is created": (CREATE, 1),
           "just after the lost replies": (CREATE, 3),
           "while the resent creates are answered": (CREATE, 4),
           "while polling": (POLL, 0)}


def kill_held(fake, point: str, after: int, root: Path, env: dict, *args: str) -> None:
    """Start a command, hold it at `point` once `after` requests went through there, kill -9 it
    there (unless it ended first), then let the fake serve what it held."""
    fake.holds.hold(point, after)
    proc = start(root, env, *args)
    fake.holds.wait_held(point, unless=lambda: proc.poll() is not None)
    proc.kill()
    finish(proc)
    fake.holds.release()
    fake.wait_idle()  # a held request reached the fake: it is served, for a dead client


@pytest.mark.parametrize("moment", sorted(MOMENTS))
def test_kill_9_around_lost_create_replies_pays_each_request_once(moment, tmp_path):
    point, after = MOMENTS[moment]
    with FakeHiApi() as fake:
        env = hiapi_env(fake)
        root = project(tmp_path / "p", THREE)
        fake.faults.add("create", "drop", "drop", "drop")  # every first reply is lost
        kill_held(fake, point, after, root, env, "build", "-j", "3")
        # the resumed build loses its replies too, and is killed once a create reaches the fake
        fake.faults.add("create", "drop", "drop", "drop")
        kill_held(fake, CREATE, 1, root, env, "build", "-j", "2")
        codes = settle(root, env, ["", "1", "3"])
        assert one_task_per_request(fake) == {"a lighthouse": 1, "a harbour": 1, "a pier": 1}
        assert set(lock_frames(root)) == {"a", "b", "c"}
        pins_the_tasks(root, fake)
        creates = fake.counts["creates"]
        assert nbpipe(root, env, "build", "-j", "3")[0] == 0
        assert fake.counts["creates"] == creates == 3
        print(f"[{moment}] creates {creates}, replays {fake.counts['replays']}, "
              f"settle codes {codes}, lock {len(lock_frames(root))}")


@pytest.mark.parametrize("after", [0, 1, 3])
def test_kill_9_during_a_lost_gemini_reply_bills_each_lost_image_once_more_at_most(after,
                                                                                   tmp_path):
    """A lost Gemini reply is billed (and nothing can resume it); a kill while requests are in
    flight loses those too. Each request is billed at most once more than the images lost.
    The kill lands once `after` billed replies went back (the first one lost), the next ones
    held at the fake."""
    with FakeGemini() as fake:
        env = gemini_env(fake)
        root = project(tmp_path / "p", on_gemini(THREE))
        fake.faults.add("generate", "drop")
        fake.holds.hold("reply", after)
        proc = start(root, env, "build", "-j", "3")
        fake.holds.wait_held("reply", unless=lambda: proc.poll() is not None)
        # every frame's request read (billed) before the kill: one still on its way would be
        # billed at any moment after it, and could not be told from the next build's
        wait_for(lambda: len(fake.billed) >= 3 or proc.poll() is not None)
        proc.kill()
        finish(proc)
        sent_before_kill = len(fake.billed)  # the killed build's, every one
        fake.holds.release()
        fake.wait_idle()
        cached = blobs(root)  # what the killed build kept
        codes = settle(root, env, ["3", "1", ""])
        billed = Counter(b.prompt for b in fake.billed if b.paid_image)
        delivered = Counter(b.prompt for b in fake.billed if b.image)
        lost = Counter(b.prompt for b in fake.billed[:sent_before_kill]  # dropped or killed
                       if b.fault == "drop" or sha(b.image) not in cached)
        for prompt, n in billed.items():
            assert n <= 1 + lost[prompt], (prompt, n, lost)
        assert set(delivered) == {"a lighthouse", "a harbour", "a pier"}
        images = {sha(b.image) for b in fake.billed if b.image}
        for name, entry in lock_frames(root).items():
            assert entry["digest"] in images and \
                sha((root / entry["output"]).read_bytes()) == entry["digest"]
        assert set(lock_frames(root)) == {"a", "b", "c"}
        generates = fake.counts["generates"]
        assert nbpipe(root, env, "build")[0] == 0 and fake.counts["generates"] == generates
        print(f"[gemini kill after {after} replies] billed {dict(billed)}, in flight at kill "
              f"{sent_before_kill}, settle codes {codes}")


# --- 2. Ctrl-C with tasks longer than the grace period ----------------------------------------

@pytest.mark.parametrize("presses", [1, 2])
def test_ctrl_c_with_ten_stuck_tasks_then_a_build_collects_every_paid_image(presses, tmp_path):
    """Ten frames at -j 10, three of whose create replies are lost, every task stuck past
    NBPIPE_INTERRUPT_GRACE: exit 130; once the tasks finish, a build pays nothing and pins all."""
    with FakeHiApi() as fake:
        # a second press must land inside the grace period, whatever the load: make it long
        env = hiapi_env(fake, NBPIPE_INTERRUPT_GRACE="0.5" if presses == 1 else "600")
        root = project(tmp_path / "p", TEN)
        fake.faults.add("create", "drop", None, "drop", None, "drop")
        fake.faults.add("task", *["stuck"] * 10)
        proc = start(root, env, "build", "-j", "10")
        wait_for(lambda: fake.counts.get("creates", 0) == 10 and fake.counts["replays"] == 3
                 and fake.counts.get("polls", 0) >= 10)
        heard = ""
        for press in range(presses):
            proc.send_signal(signal.SIGINT)
            if press < presses - 1:  # the build has taken this press before the next one
                heard += read_until(proc.stdout, "interrupted: nothing new is sent")
        code, said = finish(proc)
        said += heard
        assert code == 130, said
        assert (root / ".nbpipe" / "state.json").is_file()
        for task in fake.tasks.values():
            task.outcome = "success"
        code, said = nbpipe(root, env, "build", "-j", "10")
        assert code == 0, said
        assert one_task_per_request(fake) == {f"tile {n}": 1 for n in range(10)}
        assert fake.counts["creates"] == 10
        lock = lock_frames(root)
        assert len(lock) == 10
        images = {t.input["prompt"]: sha(t.image) for t in fake.tasks.values()}
        for name, entry in lock.items():
            assert entry["digest"] == images[f"tile {name.removeprefix('t/')}"]
        assert set(images.values()) <= blobs(root)
        assert nbpipe(root, env, "build")[0] == 0 and fake.counts["creates"] == 10
        print(f"[^C x{presses}] exit 130 then 0; creates {fake.counts['creates']}, "
              f"lock {len(lock)}, paid images cached {len(set(images.values()) & blobs(root))}")


# --- 3. two commands at once on one cache -----------------------------------------------------

def two_at_once(first: Path, second: Path, env: dict, fake: FakeHiApi) -> list[tuple[int, str]]:
    """Start a build of `first`, its tasks held; once one exists, a build of `second`; once that
    one waits for the first, release the tasks. Both results."""
    fake.holds.hold("tasks")
    one = start_until(fake, "creates", 1, first, env, "build")
    two = start(second, env, "build")
    waited = read_until(two.stdout, "waiting for another nbpipe build")
    fake.holds.release()
    code, said = finish(two, (0,))
    return [finish(one, (0,)), (code, waited + said)]


def test_two_projects_sharing_a_cache_pay_once_for_one_request(tmp_path):
    with FakeHiApi() as fake:
        env = hiapi_env(fake, NBPIPE_CACHE_DIR=str(tmp_path / "shared"))
        a = project(tmp_path / "a", THREE)
        b = project(tmp_path / "b", THREE)
        (_, said_a), (_, said_b) = two_at_once(a, b, env, fake)
        assert "waiting for another nbpipe build to finish" in said_b, said_b
        assert fake.counts["creates"] == 3, said_a + said_b
        assert lock_frames(a) == lock_frames(b) and len(lock_frames(a)) == 3
        print(f"[two projects, one cache] creates {fake.counts['creates']}; "
              f"b: {said_b.splitlines()[0]!r} / {said_b.splitlines()[-1]!r}")


def test_two_builds_of_one_project_at_once_pay_once(tmp_path):
    with FakeHiApi() as fake:
        env = hiapi_env(fake)
        a = project(tmp_path / "a", THREE)
        (_, said_one), (_, said_two) = two_at_once(a, a, env, fake)
        assert "waiting for another nbpipe build to finish" in said_two, said_two
        assert fake.counts["creates"] == 3
        pins_the_tasks(a, fake)
        print(f"[one project twice] creates {fake.counts['creates']}; second: "
              f"{said_two.splitlines()[-1]!r}")


def test_gc_beside_a_build_on_a_shared_cache_removes_no_paid_image(tmp_path):
    """Project a is built; project b (same cache) builds new requests while gc --older-than 0s
    runs in a and in b: gc waits for the build, and removes nothing either lock pins."""
    with FakeHiApi() as fake:
        env = hiapi_env(fake, NBPIPE_CACHE_DIR=str(tmp_path / "shared"))
        a = project(tmp_path / "a", THREE)
        assert nbpipe(a, env, "build", "-j", "3")[0] == 0
        b = project(tmp_path / "b", THREE.replace("a pier", "a quay").replace(
            "a harbour", "a dock"))
        fake.holds.hold("tasks")  # b's build holds the cache until both gcs wait for it
        build = start_until(fake, "creates", 5, b, env, "build", "-j", "3")
        gcs = [start(root, env, "gc", "--older-than", "0s") for root in (a, b)]
        waited = [read_until(gc.stderr, "waiting for another nbpipe build") for gc in gcs]
        fake.holds.release()
        code, said = finish(build, (0,))
        gc_said = [w + finish(gc, (0,))[1] for w, gc in zip(waited, gcs, strict=True)]
        assert all("waiting for another nbpipe build" in s for s in gc_said), gc_said
        assert fake.counts["creates"] == 5
        for root in (a, b):
            for entry in lock_frames(root).values():
                assert entry["digest"] in blobs(root, tmp_path / "shared"), (root, entry)
        creates = fake.counts["creates"]
        for root in (a, b):
            assert nbpipe(root, env, "build")[0] == 0
        assert fake.counts["creates"] == creates
        print(f"[gc beside a build] creates {creates}; gc said: {gc_said[0].splitlines()[-1]!r}")


def test_gc_after_a_killed_build_on_a_shared_cache(tmp_path):
    """b is killed with its tasks in flight; gc --older-than 0s from a; b's next build resumes
    its tasks from the journal and pays nothing."""
    with FakeHiApi() as fake:
        env = hiapi_env(fake, NBPIPE_CACHE_DIR=str(tmp_path / "shared"))
        a = project(tmp_path / "a", THREE)
        b = project(tmp_path / "b", THREE.replace("a pier", "a quay"))
        assert nbpipe(a, env, "build", "-j", "3")[0] == 0
        fake.holds.hold("tasks")  # in flight when b is killed
        build = start_until(fake, "creates", 4, b, env, "build", "-j", "3")
        build.kill()
        finish(build)
        fake.holds.release()
        code, said = nbpipe(a, env, "gc", "--older-than", "0s", allowed=(0,))
        assert nbpipe(b, env, "build")[0] == 0
        assert fake.counts["creates"] == 4, said
        assert one_task_per_request(fake) == {"a lighthouse": 1, "a harbour": 1, "a pier": 1,
                                              "a quay": 1}
        pins_the_tasks(b, fake)
        pins_the_tasks(a, fake)
        print(f"[gc after kill] creates {fake.counts['creates']}; gc: {said.splitlines()[-1]!r}")


def test_a_build_waiting_on_a_shared_cache_collects_the_tasks_of_one_killed_there(tmp_path):
    """a is killed with its three tasks in flight while b (same cache, same requests) waits for
    it: b gets the lock, re-attaches to a's tasks, and pays nothing; so does a's next build."""
    with FakeHiApi() as fake:
        env = hiapi_env(fake, NBPIPE_CACHE_DIR=str(tmp_path / "shared"))
        a = project(tmp_path / "a", THREE)
        b = project(tmp_path / "b", THREE)
        fake.holds.hold("tasks")  # a holds the cache, its tasks in flight, until it is killed
        first = start_until(fake, "creates", 3, a, env, "build", "-j", "3")
        second = start(b, env, "build", "-j", "3")
        waited = first_line(second.stdout)
        assert "waiting for another nbpipe build" in waited
        first.kill()
        finish(first)
        fake.holds.release()
        code, said = finish(second, (0,))
        assert nbpipe(a, env, "build")[0] == 0
        assert one_task_per_request(fake) == {"a lighthouse": 1, "a harbour": 1, "a pier": 1}
        pins_the_tasks(a, fake)
        pins_the_tasks(b, fake)
        print(f"[a killed, b waiting] creates {fake.counts['creates']}; b: "
              f"{said.splitlines()[-1]!r}")


def test_ctrl_c_while_waiting_for_the_lock_exits_130(tmp_path):
    with FakeHiApi() as fake:
        env = hiapi_env(fake)
        a = project(tmp_path / "a", THREE)
        fake.holds.hold("tasks")  # the first build holds the lock until the others are stopped
        first = start_until(fake, "creates", 3, a, env, "build", "-j", "3")
        commands = (["build"], ["gc", "--older-than", "0s"], ["pin", "a", "1"])
        waiting = [start(a, env, *args) for args in commands]
        for proc, args in zip(waiting, commands, strict=True):
            # a build says it on stdout, the other commands on stderr
            read_until(proc.stdout if args == ["build"] else proc.stderr,
                       "waiting for another nbpipe build")
            proc.send_signal(signal.SIGINT)
        # 130, or death by SIGINT, which a shell also reports as 130: CPython ends a process
        # that way, whatever it exits with, when the Ctrl-C landed inside an eval() (a
        # namedtuple being made while importing), though nbpipe handled it
        codes = [finish(proc, (130, -signal.SIGINT))[0] for proc in waiting]
        fake.holds.release()
        code, said = finish(first, (0,))
        no_wait = nbpipe(a, env, "build", "--no-wait")
        assert fake.counts["creates"] == 3
        print(f"[^C while waiting] codes {codes}, the holder {code}, then --no-wait {no_wait[0]}")



@pytest.mark.parametrize("killed", ["as the tasks are created", "while polling"])
def test_a_shared_cache_used_with_two_hiapi_keys_loses_no_paid_task(killed, tmp_path):
    """a (key 1) is killed with its tasks in flight; b (key 2, same cache, other requests) builds:
    it cannot see a's tasks (HiAPI answers 404 to another account, and takes a's Idempotency-Key
    as new), so it must leave them alone. a's next build collects them: 3 tasks for a, 3 for b,
    every succeeded task in the cache. (It lost them before the journal named the account.)"""
    with FakeHiApi() as fake:
        fake.add_account("sk-second-account")
        env = hiapi_env(fake, NBPIPE_CACHE_DIR=str(tmp_path / "shared"))
        a = project(tmp_path / "a", THREE)
        b = project(tmp_path / "b", THREE.replace("a ", "one "))
        what, count = ("creates", 3) if killed.startswith("as") else ("polls", 6)
        fake.holds.hold("tasks")  # a's tasks are in flight when it is killed
        first = start_until(fake, what, count, a, env, "build", "-j", "3")
        first.kill()
        finish(first)
        fake.holds.release()
        code, said_b = nbpipe(b, {**env, "HIAPI_API_KEY": "sk-second-account"}, "build", "-j", "3")
        code, said_a = nbpipe(a, env, "build")
        print(f"[two keys, a killed {killed}] creates {fake.counts['creates']}")
        assert code == 0
        cached = blobs(a, tmp_path / "shared")
        lost = [t.task_id for t in fake.tasks.values() if sha(t.image) not in cached]
        assert (fake.counts["creates"], lost) == (6, []), (said_b, said_a)


# --- 4. an --offline build killed during a lost create reply, with a remote; then the team ----

FOUR = THREE + "  d: {prompt: a quay}\n"


def marks(root: Path) -> list[str]:
    """The pushes still to do that a project's cache holds (`unpushed/`; not a temp file)."""
    return [p.name for p in (root / ".nbpipe" / "unpushed").glob("[0-9a-f]*")]


def polled(fake: FakeHiApi) -> list:
    """The tasks the client knows of: a task whose create reply was lost is never polled."""
    return [t for t in fake.tasks.values() if t.polls]


@pytest.mark.parametrize("stop", ["kill -9", "Ctrl-C, then a push beside the build"])
def test_an_offline_build_stopped_during_a_lost_reply_reaches_the_team_paid_once(
        stop, bucket, tmp_path):
    """A project with a remote builds --offline; one create's reply is lost (its resend held
    off), the other tasks are stuck but one, whose image is marked for the remote. The build
    is stopped. The next build (online) collects every task, the lost one by its resent
    create, and the remote gets every image; a clone then builds without paying anything."""
    with FakeHiApi() as fake:
        env = hiapi_env(fake, NBPIPE_INTERRUPT_GRACE="0.5")
        a = project(tmp_path / "a", FOUR)
        fake.faults.add("create", None, "drop")
        fake.faults.add("replay", "429:60")  # the resent create waits out the stop
        fake.faults.add("task", *["stuck"] * 4)
        offline = start(a, env, "build", "--offline", "-j", "4")
        wait_for(lambda: fake.counts["creates"] == 4 and len(polled(fake)) == 3
                 or offline.poll() is not None)
        polled(fake)[0].outcome = "success"
        wait_for(lambda: marks(a) or offline.poll() is not None)
        assert fake.counts["replays"] == 0 and marks(a)  # the lost reply is still unanswered
        if stop == "kill -9":
            offline.kill()
            assert finish(offline)[0] == -signal.SIGKILL
        else:
            offline.send_signal(signal.SIGINT)
            code, said = finish(offline)
            assert code == 130 and "remote: offline; 1 new image(s) to push" in said, said
        fake.faults.clear("replay")  # had the resend not been sent before the stop
        assert bucket.find("cache/blobs") == []  # offline: nothing sent
        if stop == "kill -9":
            for task in fake.tasks.values():
                task.outcome = "success"
            code, said = nbpipe(a, env, "build", allowed=(0,))
        else:  # `nbpipe push` beside the build: it waits for it (the tasks are still stuck)
            build = start(a, env, "build")
            wait_for(lambda: fake.counts["replays"] == 1 or build.poll() is not None)
            push = start(a, env, "push")
            assert "waiting for another nbpipe build" in first_line(push.stderr)
            for task in fake.tasks.values():
                task.outcome = "success"
            code, said = finish(build, (0,))
            assert finish(push, (0,))[1].startswith(
                f"pushed 0 image(s) to s3://{bucket.name}/cache; 4 were there already")
        images = {sha(t.image) for t in fake.tasks.values()}
        on_remote = {path.rpartition("/")[2] for path in bucket.find("cache/blobs")}
        assert (fake.counts["creates"], on_remote, marks(a)) == (4, images, []), said
        b = project(tmp_path / "b", FOUR)
        assert nbpipe(b, env, "build", allowed=(0,))[0] == 0
        assert fake.counts["creates"] == 4
        assert one_task_per_request(fake) == {"a lighthouse": 1, "a harbour": 1, "a pier": 1,
                                              "a quay": 1}
        digests = {name: entry["digest"] for name, entry in lock_frames(a).items()}
        assert {name: entry["digest"] for name, entry in lock_frames(b).items()} == digests
        assert set(digests.values()) == images and len(digests) == 4
        pins_the_tasks(a, fake)
        print(f"[offline, {stop}] creates {fake.counts['creates']}, replays "
              f"{fake.counts['replays']}, held {fake.counts['held replays']}, remote blobs "
              f"{len(on_remote)}, marks left {len(marks(a))}")


# --- two clones on their own caches, one killed while its replies are lost ---------------------

def summary_of(said: str) -> dict:
    """The last JSON line a `build --json` printed: its summary."""
    return json.loads([line for line in said.splitlines() if line.startswith("{")][-1])


def test_a_clone_killed_during_lost_replies_and_another_clone_pay_once_and_say_it_once(
        tmp_path):
    """A is killed -9 while the fake has billed its three creates and lost every reply; B, a
    clone on a cache of its own (no shared journal), then sends the same three requests under
    the same account: HiAPI replays A's tasks. A builds again and collects them. One task per
    request at the fake, and the summaries together report each payment exactly once."""
    with FakeHiApi() as fake:
        env = hiapi_env(fake)
        a = project(tmp_path / "a", THREE)
        b = project(tmp_path / "b", THREE)
        fake.faults.add("create", "drop", "drop", "drop")  # billed, every reply lost
        kill_held(fake, CREATE, 3, a, env, "build", "-j", "3")
        code_b, said_b = nbpipe(b, env, "build", "--json")
        code_a, said_a = nbpipe(a, env, "build", "--json")
        one, two = summary_of(said_b), summary_of(said_a)
        reported = sum(Decimal(str(s[k])) for s in (one, two)
                       for k in ("spent_usd", "spent_earlier_usd"))
        assert one_task_per_request(fake) == {"a lighthouse": 1, "a harbour": 1, "a pier": 1}
        assert (code_a, code_b, fake.counts["creates"]) == (0, 0, 3)
        assert reported == Decimal("0.15"), (one, two)  # three Nano-Banana tasks, once each
        assert lock_frames(a) == lock_frames(b) and len(lock_frames(a)) == 3
        pins_the_tasks(a, fake)
        print(f"[two clones, A killed in lost replies] creates {fake.counts['creates']}, "
              f"replays {fake.counts['replays']}, B spent {one['spent_usd']}, "
              f"A spent {two['spent_usd']} + earlier {two['spent_earlier_usd']}")
