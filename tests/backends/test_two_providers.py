"""Issue #25's acceptance in one project: OpenAI and fal side by side, an edit on each, through
the real CLI against both fakes. Calls and submits = frames, spend = what both fakes billed, a
rebuild sends nothing; a lost OpenAI reply is announced, counted and not resent."""

from __future__ import annotations

from decimal import Decimal

PROJECT = """\
version: 1
targets:
  poster: {prompt: a red sneaker on white, backend: openai, model: gpt-image-1-mini,
           quality: low}
  poster-blue: {prompt: make the sneaker blue, inputs: [poster], backend: openai,
                model: gpt-image-1-mini, quality: low}
  pier: {prompt: a pier at dawn, backend: fal, model: fal-ai/flux/dev}
  pier-red: {prompt: paint the pier red, inputs: [pier], backend: fal,
             model: fal-ai/flux-pro/kontext}
"""



def spent(summary: dict) -> Decimal:
    return Decimal(str(summary["spent_usd"])) + Decimal(str(summary["spent_earlier_usd"]))


def billed(openai, fal) -> Decimal:
    return sum((b.usd for b in openai.billed), Decimal(0)) + fal.spent()


def test_openai_and_fal_in_one_project_pay_each_frame_once(fake_openai, fake_fal, build,
                                                           make_project):
    root = make_project(PROJECT)
    first = build(root)
    assert (first["rendered"], first["failed"]) == (4, 0), first["err"]
    assert len(fake_openai.billed) == 2 and fake_fal.counts["submits"] == 2  # = frames
    assert [b.endpoint for b in fake_openai.billed] == ["generations", "edits"]
    assert spent(first) == billed(fake_openai, fake_fal) > 0
    requests = fake_openai.counts["requests"], fake_fal.counts["requests"]
    again = build(root)
    assert (again["rendered"], again["fresh"]) == (0, 4)
    assert (fake_openai.counts["requests"], fake_fal.counts["requests"]) == requests


def test_a_lost_openai_reply_beside_fal_is_counted_once_and_not_resent(fake_openai, fake_fal,
                                                                        build, make_project):
    fake_openai.faults.add("images", "drop")
    root = make_project(PROJECT)
    first = build(root)
    assert (first["failed"], first["skipped"], first["rendered"]) == (1, 1, 2)  # its edit waits
    assert first["maybe_billed"] == 1 and len(fake_openai.billed) == 1  # sent once
    assert spent(first) == billed(fake_openai, fake_fal)
    second = build(root)
    assert second["rendered"] == 2 and len(fake_openai.billed) == 3
    assert spent(first) + spent(second) == billed(fake_openai, fake_fal)
