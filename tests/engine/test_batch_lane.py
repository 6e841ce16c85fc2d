"""The batch lane end to end: the real CLI against the fake Gemini Batch API (issue #24's
acceptance). Judged from outside: jobs created and lines billed at the fake, exit codes, the
summary's money, the lock."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from decimal import Decimal

from tests.conftest import wait_for

TWO_MODELS = """version: 1
defaults: {backend: gemini, model: gemini-3.1-flash-image, lane: batch}
targets:
  a1: {prompt: a lighthouse at dusk}
  a2: {prompt: a harbour at dawn}
  a3: {prompt: a fishing boat}
  b1: {prompt: a castle in fog, model: gemini-3-pro-image}
  b2: {prompt: a bridge in rain, model: gemini-3-pro-image}
  b3: {prompt: a tower at night, model: gemini-3-pro-image}
"""
ONE_MODEL = """version: 1
defaults: {backend: gemini, model: gemini-3.1-flash-image, lane: batch}
targets:
  a1: {prompt: a lighthouse at dusk}
  a2: {prompt: a harbour at dawn}
"""


def usd(value) -> Decimal:
    return Decimal(str(value))


def billed(fake) -> Decimal:
    return sum((Decimal(str(b.usd)) for b in fake.billed), Decimal(0))


def standard_calls(fake) -> int:
    return sum(b.lane == "standard" for b in fake.billed)


def test_six_frames_on_two_models_make_two_jobs_at_half_price_then_nothing(
        make_project, build, run, fake_gemini_batch):
    fake = fake_gemini_batch
    fake.end_at_poll = 1
    root = make_project(TWO_MODELS)
    standard = run("-C", str(root), "plan", "--json", "--lane", "standard")
    assert standard.code == 0, standard.err
    plan_usd = Decimal(str(json.loads(standard.out)["summary"]["cost_usd"]))
    first = build(root)
    assert first["code"] == 0, first["err"]
    assert first["rendered"] == 6 and len(fake.creates) == 2 and standard_calls(fake) == 0
    assert usd(first["spent_usd"]) == billed(fake)
    assert abs(billed(fake) - plan_usd / 2) <= Decimal("0.01")
    lock = json.loads((root / "nbpipe.lock").read_text())
    assert {e.get("lane") for e in _entries(lock)} == {"batch"}
    requests = fake.counts["requests"]
    again = build(root)
    assert again["code"] == 0 and again["rendered"] == 0
    assert fake.counts["requests"] == requests  # not one request


def _entries(lock: dict) -> list[dict]:
    frames = lock.get("frames") or next(iter(lock.get("sections", {}).values()), {})
    return list(frames.values())


def test_a_lost_create_reply_is_found_by_name_no_second_job(make_project, build,
                                                             fake_gemini_batch):
    fake = fake_gemini_batch
    fake.end_at_poll = 1
    fake.faults.add("batch-create", "drop")
    root = make_project(ONE_MODEL)
    first = build(root)
    assert first["code"] == 0, first["err"]
    assert first["rendered"] == 2 and len(fake.creates) == 1
    assert usd(first["spent_usd"]) == billed(fake)


def test_a_gateway_5xx_after_the_job_was_made_is_a_lost_reply_not_a_second_job(
        make_project, build, fake_gemini_batch):
    fake = fake_gemini_batch
    fake.end_at_poll = 1
    fake.faults.add("batch-create", "gateway")
    first = build(make_project(ONE_MODEL))
    assert first["code"] == 0, first["err"]
    assert first["rendered"] == 2 and len(fake.creates) == 1
    assert usd(first["spent_usd"]) == billed(fake)


def test_an_expired_job_is_sent_again_exactly_once(make_project, build, fake_gemini_batch):
    fake = fake_gemini_batch
    fake.end_at_poll = 1
    fake.faults.add("batch-job", "expire")
    root = make_project(ONE_MODEL)
    first = build(root)
    assert first["code"] == 0, first["err"]
    assert len(fake.creates) == 2 and first["rendered"] == 2
    assert usd(first["spent_usd"]) == billed(fake)


def test_an_expired_job_twice_fails_its_frames_with_the_reason(make_project, build,
                                                               fake_gemini_batch):
    fake = fake_gemini_batch
    fake.end_at_poll = 1
    fake.faults.add("batch-job", "expire", "expire")
    root = make_project(ONE_MODEL)
    first = build(root)
    assert first["code"] == 1 and first["failed"] == 2 and len(fake.creates) == 2
    failed = [e for e in first["events"] if e.get("status") == "failed"]
    assert all("expired" in e["detail"] for e in failed)
    assert usd(first["spent_usd"]) == billed(fake) == 0


def test_no_wait_leaves_frames_pending_and_a_later_build_collects_with_no_create(
        make_project, build, run, fake_gemini_batch):
    fake = fake_gemini_batch
    root = make_project(ONE_MODEL)
    first = build(root, "--no-wait")
    assert first["code"] == 0, first["err"]
    assert first["pending"] == 2 and first["rendered"] == 0 and len(fake.creates) == 1
    assert usd(first["spent_usd"]) == 0
    listed = run("-C", str(root), "batches", "--json")
    assert listed.code == 0, listed.err
    [job] = [json.loads(line) for line in listed.out.splitlines()]
    assert job["name"] == fake.creates[0] and job["frames"] == 2
    assert job["state"].startswith("pending")
    check = run("-C", str(root), "build", "--check")
    assert check.code == 1  # pending is not fresh
    fake.finish_all()
    second = build(root)
    assert second["code"] == 0, second["err"]
    assert second["rendered"] == 2 and len(fake.creates) == 1
    assert usd(second["spent_usd"]) == billed(fake) > 0
    assert run("-C", str(root), "batches").out.strip() == "no batch jobs open"


def test_a_line_error_fails_its_frame_and_the_next_build_sends_only_it(
        make_project, build, fake_gemini_batch):
    fake = fake_gemini_batch
    fake.end_at_poll = 1
    fake.faults.add("batch-line", "error")
    root = make_project(ONE_MODEL)
    first = build(root)
    assert first["code"] == 1 and first["failed"] == 1 and first["rendered"] == 1
    [failed] = [e for e in first["events"] if e.get("status") == "failed"]
    assert "Internal error encountered" in failed["detail"]
    second = build(root)
    assert second["code"] == 0 and second["rendered"] == 1
    assert len(fake.creates) == 2 and len(fake.jobs[fake.creates[1].split("/")[1]].lines) == 1
    assert usd(first["spent_usd"]) + usd(second["spent_usd"]) == billed(fake)


def test_a_job_cancelled_by_the_user_fails_its_frames(make_project, build, run,
                                                      fake_gemini_batch):
    fake = fake_gemini_batch
    root = make_project(ONE_MODEL)
    assert build(root, "--no-wait")["pending"] == 2
    cancelled = run("-C", str(root), "batches", "cancel", fake.creates[0])
    assert cancelled.code == 0, cancelled.err
    assert "cancelled" in cancelled.out
    after = build(root)
    assert after["code"] == 1 and after["failed"] == 2 and len(fake.creates) == 1
    assert all("cancelled" in e["detail"] for e in after["events"]
               if e.get("status") == "failed")
    unknown = run("-C", str(root), "batches", "cancel", "batches/nope")
    assert unknown.code == 2 and "no open batch job" in unknown.err


def test_kill_9_while_waiting_then_the_next_build_collects_with_no_new_job(
        make_project, build, fake_gemini_batch):
    fake = fake_gemini_batch
    root = make_project(ONE_MODEL)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-m", "nbpipe", "-C", str(root), "build"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: fake.counts["polls"] >= 1)  # created, journalled, and being waited for
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert len(fake.creates) == 1
    fake.finish_all()
    after = build(root)
    assert after["code"] == 0, after["err"]
    assert after["rendered"] == 2 and len(fake.creates) == 1
    assert usd(after["spent_usd"]) == billed(fake)


def test_ctrl_c_while_waiting_leaves_the_jobs_running_and_exits_130(make_project, build,
                                                                    fake_gemini_batch):
    fake = fake_gemini_batch
    root = make_project(ONE_MODEL)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-m", "nbpipe", "-C", str(root), "build"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: fake.counts["polls"] >= 1)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out
    assert "1 batch job keeps running" in out and "`nbpipe build` collects it" in out
    assert "2 pending in batch jobs" in out
    fake.finish_all()
    after = build(root)
    assert after["code"] == 0 and after["rendered"] == 2 and len(fake.creates) == 1
    assert usd(after["spent_usd"]) == billed(fake)
