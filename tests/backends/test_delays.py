"""Delays the server can influence (its task stamps, its Retry-After) stay within the task
timeout: a server answering absurd numbers cannot hang a build. These run the CLI as a real
process with a time limit, since the bug they guard against is a sleep of years."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from tests.samples import GEMINI_ONE, ONE, THREE, failures

FOUR = THREE + "  d: {prompt: a buoy}\n"


def build(root, *args: str, limit: float = 90) -> tuple[dict, float]:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "nbpipe", "-C", str(root), "build", "--json",
                           *args], capture_output=True, text=True, timeout=limit, check=False)
    assert "Traceback" not in done.stderr, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    return {**events[-1], "events": events[:-1], "code": done.returncode}, \
        time.monotonic() - started


def test_learned_first_poll_is_bounded_by_the_task_timeout(fake_hiapi, make_project,
                                                           monkeypatch):
    monkeypatch.setenv("NBPIPE_HIAPI_TIMEOUT", "2")
    fake_hiapi.latency = 0.05  # tasks finish by the clock, not by the number of polls
    fake_hiapi.faults.add("task", "msstamps", "msstamps", "msstamps")  # "took" ~50 000 years
    summary, took = build(make_project(FOUR), "-j", "1")  # d polls after learning from a-c
    assert (summary["code"], summary["rendered"], fake_hiapi.counts["creates"]) == (0, 4, 4)
    assert took < 30  # d waited at most the 2 s timeout before its first poll, not millennia


def test_server_retry_delays_stop_at_the_task_deadline(fake_hiapi, make_project, monkeypatch):
    monkeypatch.setenv("NBPIPE_HIAPI_TIMEOUT", "1")
    fake_hiapi.faults.add("poll", *["retry-later"] * 30)
    summary, took = build(make_project(ONE))
    assert summary["code"] == 1
    assert failures(summary)["a"].startswith("gave up after ")
    assert "HiAPI answered HTTP 503 SERVICE_UNAVAILABLE: busy" in failures(summary)["a"]
    assert took < 30  # not 4 retries × 120 s
    assert fake_hiapi.counts["creates"] == 1


def test_a_nan_timeout_is_a_usage_error(fake_hiapi, make_project, monkeypatch):
    monkeypatch.setenv("NBPIPE_HIAPI_TIMEOUT", "nan")  # would never expire: comparisons fail
    done = subprocess.run([sys.executable, "-m", "nbpipe", "-C", str(make_project(FOUR)),
                           "build"], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert "NBPIPE_HIAPI_TIMEOUT must be a number of 0 or more, not 'nan'" in done.stderr
    assert fake_hiapi.counts["requests"] == 0


def test_a_reply_that_drips_in_is_cut_at_the_call_timeout(fake_hiapi, fake_gemini, make_project,
                                                          monkeypatch):
    monkeypatch.setenv("NBPIPE_CALL_TIMEOUT", "0.5")
    fake_hiapi.faults.add("create", "slow")  # retried: the Idempotency-Key makes it safe
    summary, took = build(make_project(ONE))
    assert (summary["code"], summary["rendered"], fake_hiapi.counts["creates"]) == (0, 1, 1)
    fake_gemini.faults.add("generate", "slow")  # not retried: it may have been billed
    summary, took = build(make_project(GEMINI_ONE))
    assert failures(summary)["a"] == ("Gemini took over 0.5 s to answer; not retried, since the "
                                      "request may have been billed")
    assert took < 30


def test_a_retry_after_past_the_retry_deadline_fails_the_create_at_once(fake_hiapi,
                                                                        make_project):
    fake_hiapi.faults.add("create", *["429:3600"] * 5)  # used to be 4 sleeps of 120 s each
    summary, took = build(make_project(ONE), limit=60)
    assert failures(summary) == {"a": (
        "gave up after 1 attempt: HiAPI answered HTTP 429 RATE_LIMITED: too many requests; it "
        "asked to retry in 3600 s, past the retry deadline (NBPIPE_RETRY_DEADLINE=300 s)")}
    assert took < 30 and fake_hiapi.counts.get("creates", 0) == 0
