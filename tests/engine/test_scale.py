"""Builds at scale: budget, fail-fast, one build at a time, kill -9 and Ctrl-C survival."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

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
    holder = subprocess.Popen(  # another process holds the project for a moment
        [sys.executable, "-c", "import sys, time; from filelock import FileLock; "
         "lock = FileLock(sys.argv[1]); lock.acquire(); print('held', flush=True); "
         "time.sleep(1.0)", str(root / ".nbpipe" / "build.lock")],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "held\n"
    refused = run("-C", str(root), "build", "--no-wait")
    assert refused.code == 1 and "another nbpipe build holds" in refused.err
    waited = run("-C", str(root), "build")
    holder.wait()
    assert waited.code == 0
    assert waited.out.startswith("waiting for another nbpipe build to finish")


def _nbpipe(root: Path, fake: FakeHiApi, *args: str) -> subprocess.Popen:
    env = {**os.environ, "HIAPI_API_KEY": fake.key, "HIAPI_BASE_URL": fake.url,
           "NBPIPE_HIAPI_POLL_DELAY": "0.05", "NBPIPE_HIAPI_POLL_INTERVAL": "0.05",
           "NBPIPE_RETRY_BASE": "0.01"}
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


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_kill_9_at_random_moments_never_pays_twice(seed, make_project):
    rng = random.Random(seed)
    root = make_project(grid(12))
    with FakeHiApi(latency=0.4) as fake:
        for _ in range(3):
            proc = _nbpipe(root, fake, "-j", "4")
            time.sleep(rng.uniform(0.05, 0.6))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        for _ in range(3):
            done = _nbpipe(root, fake, "-j", "4")
            out, err = done.communicate(timeout=60)
            if done.returncode == 0:
                break
        assert done.returncode == 0, out + err
        _check_complete(root, fake, 12)


def test_ctrl_c_collects_what_is_in_flight_and_exits_130(make_project):
    root = make_project(grid(8))
    with FakeHiApi(latency=0.6) as fake:
        proc = _nbpipe(root, fake, "-j", "4")
        deadline = time.monotonic() + 20
        while fake.counts["creates"] < 4 and time.monotonic() < deadline:
            time.sleep(0.01)  # four tasks in flight, none done yet
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 130, out + err
        assert "interrupted: nothing new is sent" in out
        assert fake.counts["creates"] == 4  # nothing new after Ctrl-C
        assert sum(line.startswith("rendered ") for line in out.splitlines()) == 4  # collected
        again = _nbpipe(root, fake)
        out, err = again.communicate(timeout=60)
        assert again.returncode == 0, out + err
        _check_complete(root, fake, 8)
