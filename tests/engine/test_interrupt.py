"""Ctrl-C and kill -9 in real processes (issue 12.5, issue 17.1): exit 130, state saved, HiAPI
tasks resumed for free, Gemini requests in flight waited for, or announced and counted.

The fakes hold the tasks and the billed replies until a test releases them, and a second Ctrl-C
is sent once the build said it took the first: nothing here depends on a clock."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import read_until
from tests.samples import journal

FOUR = """\
version: 1
defaults: {backend: BACKEND, model: MODEL}
targets:
  t: {prompt: "tile {{ n }}", matrix: {n: ["1", "2", "3", "4"]}}
"""


def project(tmp_path: Path, backend: str, model: str) -> Path:
    root = tmp_path / "p"
    root.mkdir()
    (root / "nbpipe.yaml").write_text(FOUR.replace("BACKEND", backend).replace("MODEL", model))
    return root


def start(root: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "nbpipe", "-C", str(root), "build", "-j", "4"],
                            env={**os.environ, "NBPIPE_INTERRUPT_GRACE": "1",
                                 "NBPIPE_RETRY_BASE": "0.01", "PYTHONUNBUFFERED": "1", **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(condition, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def rebuild(root: Path, env: dict) -> dict:
    done = subprocess.run([sys.executable, "-m", "nbpipe", "-C", str(root), "build", "--json"],
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    return {**lines[-1], "notes": [e["message"] for e in lines if e["event"] == "note"]}


@pytest.fixture
def slow_hiapi():
    from tests.fakes.hiapi import FakeHiApi

    with FakeHiApi() as fake:
        fake.holds.hold("tasks")  # longer than any grace period: until the test releases them
        yield fake, {"HIAPI_API_KEY": fake.key, "HIAPI_BASE_URL": fake.url,
                     "NBPIPE_HIAPI_POLL_DELAY": "0.1", "NBPIPE_HIAPI_POLL_INTERVAL": "0.1"}


@pytest.fixture
def slow_gemini():
    from tests.fakes.gemini import FakeGemini

    with FakeGemini() as fake:
        fake.holds.hold("reply")  # billed; the replies come when the test releases them
        yield fake, {"GEMINI_API_KEY": fake.key, "GOOGLE_GEMINI_BASE_URL": fake.url}


def four_in_flight(tmp_path: Path, fake, env: dict, backend: str, model: str,
                   counter: str) -> tuple[Path, subprocess.Popen]:
    """A build of four frames (-j 4), once all four requests have reached the fake server."""
    root = project(tmp_path, backend, model)
    proc = start(root, env)
    wait_for(lambda: fake.counts.get(counter, 0) == 4)
    return root, proc


@pytest.fixture
def gemini_sent(slow_gemini, tmp_path):
    """Four Gemini requests (USD 0.268) sent and not yet answered: fake, env, root, process."""
    fake, env = slow_gemini
    root, proc = four_in_flight(tmp_path, fake, env, "gemini", "gemini-3.1-flash-image",
                                "generates")
    yield fake, env, root, proc
    if proc.poll() is None:  # a failed test leaves no build running
        proc.kill()
        proc.communicate()


@pytest.mark.parametrize("presses", [1, 2])
def test_ctrl_c_with_long_hiapi_tasks_exits_130_and_the_next_build_pays_nothing(
        presses, slow_hiapi, tmp_path):
    """12.5: tasks longer than the grace period, or a second Ctrl-C: KeyError, exit 3, and the
    state not saved."""
    fake, env = slow_hiapi
    if presses == 2:  # the second press lands inside the grace period, whatever the load
        env = {**env, "NBPIPE_INTERRUPT_GRACE": "600"}
    root, proc = four_in_flight(tmp_path, fake, env, "hiapi", "Nano-Banana", "creates")
    heard = ""
    for press in range(presses):
        proc.send_signal(signal.SIGINT)
        if press < presses - 1:
            heard = read_until(proc.stdout, "interrupted: nothing new is sent")
    out, err = proc.communicate(timeout=60)
    out = heard + out
    assert proc.returncode == 130, err
    assert "Traceback" not in err + out
    assert (root / ".nbpipe" / "state.json").is_file()
    assert len(journal(root).open) == 4  # every task kept
    fake.holds.release()
    summary = rebuild(root, env)
    assert summary["rendered"] == 4 and fake.counts["creates"] == 4


def test_ctrl_c_waits_for_gemini_requests_in_flight(gemini_sent):
    """17.1: in-flight requests were dropped after the grace period, then paid again."""
    fake, env, root, proc = gemini_sent
    proc.send_signal(signal.SIGINT)
    heard = read_until(proc.stdout, "already sent")
    assert "waiting for 4 Gemini request(s) (USD 0.268) already sent" in heard
    fake.holds.release()  # the replies come only now: the build waited for them
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    summary = rebuild(root, env)
    assert (summary["rendered"], fake.counts["generates"]) == (0, 4)  # 0 re-sent


def test_a_second_ctrl_c_abandons_gemini_requests_with_a_warning(gemini_sent):
    fake, env, root, proc = gemini_sent
    proc.send_signal(signal.SIGINT)
    heard = read_until(proc.stdout, "already sent")  # the first press taken, replies held
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    out = heard + out
    assert proc.returncode == 130, err
    assert "warning: abandoning 4 Gemini request(s) (USD 0.268): they may have been billed" in out
    # closing them while iterating the in-flight dict raised in the signal callback (a traceback
    # on stderr), and the build was never cancelled: it waited for the replies after all
    assert "Traceback" not in err, err
    assert "0 rendered" in out and "possibly billed USD 0.268 (4 request(s)" in out, out
    assert journal(root).open == {}  # said once, not again


def test_after_kill_9_gemini_requests_in_flight_are_announced_and_counted(gemini_sent):
    """17.1: after kill -9 the next build re-sent the in-flight requests silently."""
    fake, env, root, proc = gemini_sent
    proc.kill()
    proc.communicate(timeout=30)
    fake.holds.release()
    summary = rebuild(root, env)
    assert any(n.startswith("4 Gemini request(s) were in flight when an earlier build stopped")
               and "may have been billed (USD 0.268)" in n for n in summary["notes"])
    assert (summary["maybe_billed"], summary["maybe_billed_usd"]) == (4, 0.268)
    assert summary["rendered"] == 4


def test_a_second_ctrl_c_closes_an_abandoned_edit_of_another_frame(slow_gemini, tmp_path):
    """An abandoned request of a frame keyed on an upstream image was looked up under the
    frame's unkeyed form: its journal entry stayed open, and the next build announced it (and
    counted it as possibly billed) a second time."""
    fake, env = slow_gemini
    root = tmp_path / "p"
    root.mkdir()
    (root / "nbpipe.yaml").write_text(
        "version: 1\ndefaults: {backend: gemini, model: gemini-3.1-flash-image}\n"
        "targets:\n  a: {prompt: a lighthouse}\n  b: {prompt: paint it red, inputs: [a]}\n")
    fake.holds.release()
    fake.holds.hold("reply", after=1)  # a's reply comes back; b's, the edit, is held
    proc = start(root, env)
    fake.holds.wait_held("reply", unless=lambda: proc.poll() is not None)
    proc.send_signal(signal.SIGINT)
    heard = read_until(proc.stdout, "already sent")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    out = heard + out
    assert proc.returncode == 130, err
    assert "abandoning 1 Gemini request(s)" in out, out
    assert journal(root).open == {}


@pytest.mark.parametrize("between", [(), ("b",)])
def test_gc_after_a_kill_9_keeps_the_images_the_killed_build_wrote_to_outputs(between, tmp_path):
    """Found by the money soak: a build killed (-9) after writing one frame's output and before
    saving the lock, then `gc --older-than 0s`, then a build. gc took the killed build's take
    (no lock pinned it yet) and its blob, so the next build found a file it could not tell from
    a user's, left it `kept` and exited 0 with the frame out of the lock. gc keeps the take
    while the journal says no build finished with it, and (`between`: a build of another frame
    said its payment first) while a file in the project holds its image."""
    from tests.fakes.hiapi import FakeHiApi

    root = tmp_path / "p"
    root.mkdir()
    (root / "nbpipe.yaml").write_text("version: 1\ndefaults: {backend: hiapi, model: Nano-Banana}"
                                      "\ntargets:\n  a: {prompt: a lighthouse}\n"
                                      "  b: {prompt: a harbour}\n")

    def nbpipe(*args: str) -> subprocess.CompletedProcess:
        done = subprocess.run([sys.executable, "-m", "nbpipe", "-C", str(root), *args],
                              env={**os.environ, **env}, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        return done

    with FakeHiApi() as fake:
        env = {"HIAPI_API_KEY": fake.key, "HIAPI_BASE_URL": fake.url,
               "NBPIPE_HIAPI_POLL_DELAY": "0", "NBPIPE_HIAPI_POLL_INTERVAL": "0.02"}
        fake.holds.hold("POST /v1/tasks", after=1)  # a's create goes through; b's is held
        proc = subprocess.Popen([sys.executable, "-m", "nbpipe", "-C", str(root), "build",
                                 "-j", "1"], env={**os.environ, **env},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            fake.holds.wait_held("POST /v1/tasks", unless=lambda: proc.poll() is not None)
            wait_for(lambda: (root / "out" / "a.png").is_file())
        finally:
            proc.kill()
            proc.communicate(timeout=30)
        assert not (root / "nbpipe.lock").exists()  # killed before it pinned anything
        fake.holds.release()
        if between:
            nbpipe("build", *between)
        gc = nbpipe("gc", "--older-than", "0s").stdout
        why = "1 image(s) a file in the project holds kept (out/a.png)" if between else \
            "1 take(s) of a build that stopped before pinning them kept"
        assert f"gc: 0 take(s), 0 bytes freed; {len(between)} pinned image(s) kept; {why}" \
            in gc, gc
        summary = rebuild(root, env)
        lock = json.loads((root / "nbpipe.lock").read_text())["frames"]
        assert sorted(lock) == ["a", "b"], (summary, gc)
        assert (summary["kept"], summary["fresh"]) == (0, 1 + len(between)), summary
        assert summary["spent_earlier_usd"] == (0 if between else 0.05)
        assert fake.counts["creates"] == 2  # a paid once
