"""kill -9 in a real build on fal's queue: requests queued are collected by the next build by
their id (0 new submits); submits whose reply never came are announced as possibly billed,
counted, and sent again once. The fake holds the queue (or the submits) until the test
releases it: nothing here depends on a clock."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest

from tests.fakes.fal import FakeFal
from tests.samples import journal

FOUR = """\
version: 1
defaults: {backend: fal, model: fal-ai/flux/dev}
targets:
  t: {prompt: "tile {{ n }}", matrix: {n: ["1", "2", "3", "4"]}}
  e: {prompt: "make it night", inputs: [t/1], model: fal-ai/flux-pro/kontext}
"""


@pytest.fixture
def fal_env():
    with FakeFal() as fake:
        yield fake, {"FAL_KEY": fake.key, "FAL_BASE_URL": fake.url,
                     "NBPIPE_FAL_POLL_INTERVAL": "0.05", "NBPIPE_RETRY_BASE": "0.01"}


def start(root: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "nbpipe", "-C", str(root), "build", "-j", "4"],
                            env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(condition, timeout: float = 60) -> None:
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


def killed(proc: subprocess.Popen) -> None:
    proc.kill()
    proc.communicate(timeout=30)


def project(tmp_path: Path) -> Path:
    root = tmp_path / "p"
    root.mkdir()
    (root / "nbpipe.yaml").write_text(FOUR)
    return root


def test_after_kill_9_queued_requests_are_collected_with_no_new_submit(fal_env, tmp_path):
    fake, env = fal_env
    fake.holds.hold("queue")  # queued for as long as the test wants
    root = project(tmp_path)
    proc = start(root, env)
    try:  # every request polled at least once: its id was journalled before that poll
        wait_for(lambda: len(fake.requests) == 4 and
                 all(q.polls for q in list(fake.requests.values())))
    finally:
        killed(proc)
    open_ids = {json.loads(e.task_id)["request_id"] for e in journal(root).open.values()}
    assert open_ids == set(fake.requests)
    fake.holds.release()
    summary = rebuild(root, env)
    assert fake.counts["submits"] == 5  # the 4 queued ones collected, and only the edit sent
    assert summary["rendered"] == 5 and summary["failed"] == 0
    said = Decimal(str(summary["spent_usd"])) + Decimal(str(summary.get("spent_earlier_usd", 0)))
    assert said == fake.spent() == Decimal("0.14")
    assert journal(root).open == {}
    again = rebuild(root, env)
    assert again["rendered"] == 0 and fake.counts["submits"] == 5


def test_after_kill_9_submits_without_a_reply_are_announced_counted_and_sent_once(
        fal_env, tmp_path):
    fake, env = fal_env
    fake.holds.hold("submitted")  # the submits are queued at fal; no reply comes
    root = project(tmp_path)
    proc = start(root, env)
    try:
        fake.holds.wait_held("submitted", 4)
    finally:
        killed(proc)
    fake.holds.release()
    fake.wait_idle()
    assert fake.counts["submits"] == 4  # queued (and billed once done): no build can know
    summary = rebuild(root, env)
    assert any(n.startswith("4 fal request(s) were in flight when an earlier build stopped")
               and "may have been billed (USD 0.10)" in n for n in summary["notes"]), \
        summary["notes"]
    assert (summary["maybe_billed"], summary["maybe_billed_usd"]) == (4, 0.1)
    assert summary["rendered"] == 5 and fake.counts["submits"] == 9  # sent again, once each
    assert journal(root).open == {}
    again = rebuild(root, env)
    assert "maybe_billed" not in again and fake.counts["submits"] == 9


def test_ctrl_c_past_the_grace_with_submits_unanswered_counts_them_once(fal_env, tmp_path):
    """Submits cut off after their body was journalled and before their id came: each may be
    queued and billed. The interrupted build charges them as possibly billed and closes them;
    the next build neither announces nor counts them again, and sends each once."""
    import signal

    from tests.conftest import read_until

    fake, env = fal_env
    fake.holds.hold("submitted")
    root = project(tmp_path)
    proc = start(root, {**env, "NBPIPE_INTERRUPT_GRACE": "0.2"})
    try:
        fake.holds.wait_held("submitted", 4)
        proc.send_signal(signal.SIGINT)
        heard = read_until(proc.stdout, "interrupted")
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            killed(proc)
    assert proc.returncode == 130, err
    assert "possibly billed USD 0.10 (4 request(s)" in heard + out, heard + out
    fake.holds.release()
    fake.wait_idle()
    assert journal(root).open == {}
    summary = rebuild(root, env)
    assert "maybe_billed" not in summary and not any("in flight" in n for n in summary["notes"])
    assert summary["rendered"] == 5 and fake.counts["submits"] == 9
