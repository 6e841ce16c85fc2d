"""The flex lane end to end against the fake Gemini (issue #24): `serviceTier: "flex"` in the
body, billed at the catalogue's flex price, a shed request asked again within the deadline, a
refusal of the tier said in one clear message, and the lock saying which lane a take came
from."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal

import pytest

from nbpipe.backends import open_backend
from nbpipe.backends.base import Job
from nbpipe.catalog import builtin
from nbpipe.errors import FrameFailed
from nbpipe.plan.frame import Request
from tests.samples import failures

FLEX = """\
version: 1
defaults: {backend: gemini, model: gemini-3.1-flash-image, lane: flex}
targets:
  a: {prompt: a red shoe}
  b: {prompt: a blue shoe}
"""
STANDARD = FLEX.replace(", lane: flex", "")


def test_a_flex_project_is_sent_flex_at_half_price_and_rebuilt_for_nothing(
        fake_gemini, build, make_project, run):
    root = make_project(FLEX)
    planned = json.loads(run("-C", str(root), "plan", "--json").out)
    flex = builtin().get("gemini", "gemini-3.1-flash-image")
    assert [(f["lane"], f["cost_usd"]) for f in planned["frames"]] == \
        [("flex", float(flex.price("1K", "flex")))] * 2
    first = build(root)
    assert (first["rendered"], fake_gemini.counts["generates"]) == (2, 2)
    assert [b["serviceTier"] for b in fake_gemini.bodies] == ["flex", "flex"]
    assert {b.lane for b in fake_gemini.billed} == {"flex"}
    billed = sum((b.usd for b in fake_gemini.billed), Decimal(0))
    assert billed == 2 * flex.price("1K") / 2  # two frames at half the standard price
    assert Decimal(str(first["spent_usd"])) == billed
    lock = json.loads((root / "nbpipe.lock").read_text())["frames"]
    assert {entry["lane"] for entry in lock.values()} == {"flex"}
    requests = fake_gemini.counts["requests"]
    assert build(root)["rendered"] == 0 and fake_gemini.counts["requests"] == requests


def test_the_lane_is_not_in_the_key_so_a_standard_image_serves_flex(
        fake_gemini, build, make_project):
    root = make_project(STANDARD)
    build(root)
    (root / "nbpipe.yaml").write_text(FLEX)
    again = build(root)
    assert (again["rendered"], again["fresh"]) == (0, 2)
    assert fake_gemini.counts["generates"] == 2
    lock = json.loads((root / "nbpipe.lock").read_text())["frames"]
    assert all("lane" not in entry for entry in lock.values())  # the takes came standard


def test_a_standard_body_names_no_tier(fake_gemini, build, make_project):
    build(make_project(STANDARD))
    assert all("serviceTier" not in body for body in fake_gemini.bodies)


def test_the_lane_flag_sends_a_standard_manifest_flex(fake_gemini, build, make_project):
    summary = build(make_project(STANDARD), "--lane", "flex")
    assert summary["rendered"] == 2
    assert [b["serviceTier"] for b in fake_gemini.bodies] == ["flex", "flex"]


def test_a_shed_flex_request_is_asked_again(fake_gemini, build, make_project):
    for shed in ["flex-shed", "flex-shed:429"] * 4:  # more than a standard call's 5 attempts
        fake_gemini.faults.add("generate", shed)
    summary = build(make_project(FLEX.replace("  b: {prompt: a blue shoe}\n", "")))
    assert (summary["rendered"], summary["failed"]) == (1, 0), summary["out"]
    assert fake_gemini.counts["generates"] == 1  # shed requests are not billed


def test_a_refused_flex_lane_is_one_clear_message(fake_gemini, build, make_project):
    fake_gemini.faults.add("generate", "flex-refused")
    summary = build(make_project(FLEX.replace("  b: {prompt: a blue shoe}\n", "")))
    assert summary["failed"] == 1
    (message,) = failures(summary).values()
    assert message.startswith("this model does not take the flex lane: ")
    assert "serviceTier" in message and fake_gemini.counts["generates"] == 0


def test_show_prints_the_flex_body(fake_gemini, run, make_project):
    root = make_project(FLEX)
    shown = json.loads(run("-C", str(root), "show", "a", "--json").out)
    assert (shown["lane"], shown["request"]["serviceTier"]) == ("flex", "flex")
    text = run("-C", str(root), "show", "a", "--lane", "standard").out
    assert "serviceTier" not in text and "on the flex lane" not in text


def test_a_batch_lane_frame_is_never_sent_as_a_call(fake_gemini):
    """Sent as one generateContent, a batch-lane request would be billed at the standard price
    while the build counts the batch price: the backend refuses it before sending."""
    async def send(lane: str) -> None:
        backend = open_backend("gemini")
        try:
            await backend.render(Request("gemini", "gemini-3.1-flash-image", "x",
                                         {"resolution": "1K"}), [], _Sink(), Job(lane=lane))
        finally:
            await backend.aclose()

    with pytest.raises(FrameFailed, match="batch-lane frame is sent in a batch job"):
        asyncio.run(send("batch"))
    assert fake_gemini.counts["requests"] == 0
    asyncio.run(send("flex"))
    assert fake_gemini.counts["generates"] == 1


class _Sink:
    def write(self, chunk: bytes) -> None:
        pass


def test_a_flex_request_shed_past_its_retries_fails_unbilled(fake_gemini, build, make_project,
                                                              monkeypatch):
    # 12 attempts double the backoff 11 times: at the fixture's base of 0.01 s the pauses
    # alone came to some 12 s (the count of attempts is what is checked, not the pauses)
    monkeypatch.setenv("NBPIPE_RETRY_BASE", "0.0001")
    for _ in range(20):
        fake_gemini.faults.add("generate", "flex-shed")
    summary = build(make_project(FLEX.replace("  b: {prompt: a blue shoe}\n", "")))
    assert summary["failed"] == 1 and fake_gemini.counts["generates"] == 0
    (message,) = failures(summary).values()
    assert message.startswith("gave up after 12 attempts") and "503" in message
