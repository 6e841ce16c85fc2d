"""Builds at scale: budget, fail-fast, one build at a time, kill -9 and Ctrl-C survival."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import read_until, wait_for
from tests.fakes.hiapi import FakeHiApi


def grid(n: int, model: str = "Nano-Banana") -> str:
    values = ", ".join(f"v{i}" for i in range(n))
    return (f"version: 1\ndefaults: {{backend: hiapi, model: {model}}}\n"
            f"targets:\n  tile:\n    prompt: \"tile {{{{ v }}}}\"\n    matrix: {{v: [{values}]}}\n")


def test_budget_is_never_exceeded_at_the_servers_count(fake_hiapi, run, make_project):
    root = make_project(grid(20))  # 20 × 0.05 = USD 1.00
    plan = json.loads(run("-C", str(root), "plan", "--json").out)
    assert plan["summary"]["cost_usd"] == 1.0
    result = run("-C", str(root), "build", "--max-cost", "0.50", "-j", "4")
    assert result.code == 1  # frames skipped over budget: CI must not look green
    assert fake_hiapi.counts["creates"] * 0.05 <= 0.50
    assert fake_hiapi.counts["creates"] == 10
    assert "over budget: 10 frame(s) not rendered to stay within USD 0.50" in result.out
    assert result.out.splitlines()[-1].startswith("10 rendered · 0 restored · 0 fresh · "
                                                 "10 skipped · spent USD 0.50")


def test_manifest_max_cost(fake_hiapi, run, make_project):
    root = make_project(grid(4).replace("version: 1\n", "version: 1\nmax_cost: 0.1\n"))
    run("-C", str(root), "build", "-j", "1")
    assert fake_hiapi.counts["creates"] == 2


def test_fail_fast_sends_nothing_new_after_a_failure(fake_hiapi, run, make_project):
    fake_hiapi.faults.add("create", "400")
    result = run("-C", str(make_project(grid(6))), "build", "-j", "1", "--fail-fast", "--json")
    summary = json.loads(result.out.splitlines()[-1])
    assert (result.code, summary["failed"], summary["skipped"], summary["rendered"]) == (1, 1, 5, 0)
    assert fake_hiapi.counts["creates"] == 0


def test_keep_going_is_the_default(fake_hiapi, run, make_project):
    fake_hiapi.faults.add("create", "400")
    result = run("-C", str(make_project(grid(6))), "build", "-j", "1", "--json")
    summary = json.loads(result.out.splitlines()[-1])
    assert (summary["failed"], summary["rendered"]) == (1, 5)


def test_a_second_build_waits_or_fails_with_no_wait(run, make_project):
    root = make_project(grid(2).replace("backend: hiapi", "backend: preview"))
    (root / ".nbpipe").mkdir()
    holder = subprocess.Popen(  # another process holds the project until its stdin closes
        [sys.executable, "-c", "import sys; from filelock import FileLock; "
         "lock = FileLock(sys.argv[1]); lock.acquire(); print('held', flush=True); "
         "sys.stdin.read()", str(root / ".nbpipe" / "build.lock")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "held\n"
    refused = run("-C", str(root), "build", "--no-wait")
    assert refused.code == 1 and "another nbpipe build holds" in refused.err
    waiting = subprocess.Popen([sys.executable, "-m", "nbpipe", "-C", str(root), "build"],
                               env={**os.environ, "PYTHONUNBUFFERED": "1"},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = read_until(waiting.stdout, "waiting for another nbpipe build to finish")
    assert waiting.poll() is None  # it waits, as long as the lock is held
    holder.stdin.close()
    holder.wait(timeout=60)
    out, err = waiting.communicate(timeout=120)
    assert waiting.returncode == 0, err
    assert first.startswith("waiting for another nbpipe build to finish")
    assert "2 rendered" in out


def _nbpipe(root: Path, fake: FakeHiApi, *args: str, **extra: str) -> subprocess.Popen:
    env = {**os.environ, "HIAPI_API_KEY": fake.key, "HIAPI_BASE_URL": fake.url,
           "NBPIPE_HIAPI_POLL_DELAY": "0.05", "NBPIPE_HIAPI_POLL_INTERVAL": "0.05",
           "NBPIPE_RETRY_BASE": "0.01", "PYTHONUNBUFFERED": "1", **extra}
    return subprocess.Popen([sys.executable, "-m", "nbpipe", "-C", str(root), "build", *args],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _check_complete(root: Path, fake: FakeHiApi, frames: int) -> None:
    from PIL import Image

    assert fake.counts["creates"] == frames  # exactly one task per frame key, ever
    assert len(set(fake.created_keys)) == frames
    lock = json.loads((root / "nbpipe.lock").read_text())["frames"]
    assert len(lock) == frames
    for entry in lock.values():
        Image.open(root / entry["output"]).load()
    leftovers = [p for p in root.rglob("*") if p.name.endswith(".part") or
                 (p.parent.name == "tmp" and p.is_file())]
    assert leftovers == []


# where a build may be when it is killed: a create, a poll or a download reaching the server
MOMENTS = ("POST /v1/tasks", "GET /v1/tasks/", "GET /files/")


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_kill_9_at_random_moments_never_pays_twice(seed, make_project):
    """Three builds killed at moments the seed draws (the n-th create, poll or download held
    at the fake: the same moments on any machine), then builds until one ends well."""
    rng = random.Random(seed)
    root = make_project(grid(12))
    with FakeHiApi() as fake:
        for _ in range(3):
            point = rng.choice(MOMENTS)
            fake.holds.hold(point, after=rng.randrange(8))
            proc = _nbpipe(root, fake, "-j", "4")
            fake.holds.wait_held(point, unless=lambda proc=proc: proc.poll() is not None)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            fake.holds.release()
            fake.wait_idle()
        for _ in range(3):
            done = _nbpipe(root, fake, "-j", "4")
            out, err = done.communicate(timeout=60)
            if done.returncode == 0:
                break
        assert done.returncode == 0, out + err
        _check_complete(root, fake, 12)


def test_ctrl_c_collects_what_is_in_flight_and_exits_130(make_project):
    root = make_project(grid(8))
    with FakeHiApi() as fake:
        fake.holds.hold("tasks")  # four tasks in flight, none done, until the ^C is taken
        proc = _nbpipe(root, fake, "-j", "4", NBPIPE_INTERRUPT_GRACE="600")
        wait_for(lambda: fake.counts["creates"] >= 4 or proc.poll() is not None)
        proc.send_signal(signal.SIGINT)
        heard = read_until(proc.stdout, "interrupted: nothing new is sent")
        fake.holds.release()  # the grace period collects them (600 s: never the clock's doing)
        out, err = proc.communicate(timeout=120)
        out = heard + out
        assert proc.returncode == 130, out + err
        assert "interrupted: nothing new is sent" in out
        assert fake.counts["creates"] == 4  # nothing new after Ctrl-C
        assert sum(line.startswith("rendered ") for line in out.splitlines()) == 4  # collected
        again = _nbpipe(root, fake)
        out, err = again.communicate(timeout=60)
        assert again.returncode == 0, out + err
        _check_complete(root, fake, 8)
