"""Ctrl-C past the grace with a fal request still queued, in real builds against the fake queue.

fal bills no request its runner fails (a 5xx such as `runner_server_error`), so the build that
leaves a request out cannot know yet whether it will cost anything: it says the request as left
with its price, not counted in its spend, and the build that collects it counts it once it
lands, or counts nothing when it fails (and the frame is rendered anew, paid then). Over the
builds, what they report equals what the fake billed. The fake holds the queue until the test
releases it: nothing here depends on a clock."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest

from tests.fakes.fal import FakeFal
from tests.samples import journal

ONE = """\
version: 1
defaults: {backend: fal, model: fal-ai/flux/dev}
targets:
  t: {prompt: a lighthouse at dusk}
"""
PRICE = Decimal("0.025")  # FLUX dev, one megapixel


@pytest.fixture
def held_fal():
    with FakeFal() as fake:
        fake.holds.hold("queue")  # IN_QUEUE longer than any grace: until the test releases it
        yield fake, {"FAL_KEY": fake.key, "FAL_BASE_URL": fake.url,
                     "NBPIPE_FAL_POLL_INTERVAL": "0.05", "NBPIPE_RETRY_BASE": "0.01",
                     "NBPIPE_INTERRUPT_GRACE": "0.2"}


def run_json(root: Path, env: dict, interrupt_when=None) -> tuple[int, list[dict]]:
    """A `build --json`; `interrupt_when`: a Ctrl-C once that holds. Its exit code and events."""
    code, out = run(root, env, interrupt_when, "--json")
    return code, [json.loads(line) for line in out.splitlines()]


def run(root: Path, env: dict, interrupt_when=None, *options: str) -> tuple[int, str]:
    """A build; `interrupt_when`: a Ctrl-C once that holds. Its exit code and output."""
    proc = subprocess.Popen([sys.executable, "-m", "nbpipe", "-C", str(root), "build", *options],
                            env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        if interrupt_when is not None:
            deadline = time.monotonic() + 60
            while not interrupt_when():
                assert time.monotonic() < deadline and proc.poll() is None, "never got there"
                time.sleep(0.02)
            proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert "Traceback" not in err, err
    return proc.returncode, out


def reported(events: list[dict]) -> Decimal:
    summary = events[-1]
    return Decimal(str(summary["spent_usd"])) + Decimal(str(summary["spent_earlier_usd"]))


def polled(fake: FakeFal) -> bool:
    """The request is queued and polled: its id was journalled before that poll."""
    return len(fake.requests) == 1 and all(q.polls for q in list(fake.requests.values()))


def left_out(root: Path, fake: FakeFal, env: dict) -> list[dict]:
    """A first build, Ctrl-C'd past the grace while its one request is held in fal's queue."""
    code, events = run_json(root, env, interrupt_when=lambda: polled(fake))
    assert code == 130
    summary = events[-1]
    (left,) = [e for e in events if e["event"] == "frame"]
    # said as left with its price, and not counted: fal may yet fail it, and bill nothing
    assert (left["status"], left["cost_usd"], left["due_usd"]) == ("left", 0, 0.025)
    assert "counts it once it lands" in left["detail"]
    assert (summary["left"], summary["left_usd"], summary["due_usd"]) == (1, 0.025, 0.025)
    assert (summary["spent_usd"], summary["spent_earlier_usd"]) == (0, 0)
    assert len(journal(root).open) == 1  # kept for the next build, by its request id
    return events


def test_a_request_left_out_that_fal_then_fails_is_counted_by_no_build(held_fal, make_project):
    fake, env = held_fal
    root = make_project(ONE)
    fake.faults.add("request", "fail")  # fal's runner will fail it: HTTP 500, unbilled
    first = left_out(root, fake, env)
    assert fake.spent() == 0
    fake.holds.release()
    code, second = run_json(root, env)
    assert code == 0
    (queued, _) = fake.requests.values()
    notes = [e["message"] for e in second if e["event"] == "note"]
    assert any(f"request {queued.request_id} failed: HTTP 500 runner_server_error" in n
               for n in notes), notes
    summary = second[-1]
    # rendered anew (a new request, billed) and counted once, as this build's own spend
    assert (summary["rendered"], summary["spent_usd"], summary["spent_earlier_usd"]) == \
        (1, 0.025, 0)
    assert fake.counts["submits"] == 2 and fake.spent() == PRICE
    assert reported(first) + reported(second) == fake.spent()  # Σ reported == Σ billed
    assert journal(root).open == {}


def test_a_request_left_out_that_lands_is_counted_once_by_its_collector(held_fal, make_project):
    fake, env = held_fal
    root = make_project(ONE)
    first = left_out(root, fake, env)
    fake.holds.release()  # fal runs it: billed, as the fake did at queueing
    code, second = run_json(root, env)
    assert code == 0
    (queued,) = fake.requests.values()
    notes = [e["message"] for e in second if e["event"] == "note"]
    assert any(n.startswith("recovered t: the image of task") and queued.request_id in n and
               n.endswith("paid for by an earlier build, is in the cache") for n in notes), notes
    summary = second[-1]
    assert (summary["spent_usd"], summary["spent_earlier_usd"]) == (0, 0.025)  # counted here
    assert fake.counts["submits"] == 1 and fake.spent() == PRICE  # collected, not sent again
    assert reported(first) + reported(second) == fake.spent()  # Σ reported == Σ billed
    assert journal(root).open == {}
    code, third = run_json(root, env)  # counted once: a later build says nothing of it
    assert (code, reported(third), third[-1]["fresh"]) == (0, 0, 1)


def test_the_text_says_the_left_request_is_not_counted_until_it_lands(held_fal, make_project):
    fake, env = held_fal
    root = make_project(ONE)
    code, first = run(root, env, lambda: polled(fake))
    assert code == 130
    assert "spent USD 0.00 · USD 0.025 in 1 task(s) still out, not counted until they land; " \
           "the next build collects them" in first, first
    fake.holds.release()
    code, second = run(root, env)
    assert code == 0
    assert "spent USD 0.00 · USD 0.025 paid by an interrupted build" in second, second
    totals = json.loads((root / ".nbpipe" / "state.json").read_text())["totals"]
    assert Decimal(totals["spent_usd"]) + Decimal(totals["spent_earlier_usd"]) == \
        fake.spent() == PRICE  # the running totals of both builds: counted once
