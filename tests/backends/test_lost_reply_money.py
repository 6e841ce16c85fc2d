"""A paid request is paid once and reported once: a HiAPI create whose reply was lost and whose
retry was then refused for good keeps its (maybe paid) task for the next build; a Gemini call
that was sent and may be billed is reported by the build that sent it."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.samples import GEMINI_ONE, ONE, failures, journal


def money(*summaries: dict) -> Decimal:
    """What the builds reported spending, theirs and earlier builds' alike."""
    return sum((Decimal(str(s.get("spent_usd", 0))) + Decimal(str(s.get("spent_earlier_usd", 0)))
                for s in summaries), Decimal(0))


def price_of(*summaries: dict) -> Decimal:
    """The price of the frame rendered, as the build that collected its task said."""
    return max(Decimal(str(e["cost_usd"])) for s in summaries for e in s["events"]
               if e.get("status") == "rendered")


@pytest.mark.parametrize("then", ["402", "401", "404"])
def test_a_lost_create_refused_on_retry_is_resent_under_its_key_and_paid_once(
        fake_hiapi, build, make_project, then):
    """The refusal stops the build; the create's entry stays open, so the next build resends
    the same body under the same Idempotency-Key and gets the first attempt's task back."""
    root = make_project(ONE)
    fake_hiapi.faults.add("create", "drop", then)  # billed, reply lost; the retry refused
    first = build(root)
    assert first["rendered"] == 0 and fake_hiapi.counts["creates"] == 1
    (entry,) = journal(root).open.values()  # the maybe-made task's create stays to resend
    assert entry.body is not None and entry.task_id is None
    fake_hiapi.faults.clear("create")
    second = build(root)
    assert second["rendered"] == 1 and journal(root).open == {}
    assert fake_hiapi.counts["creates"] == 1 and fake_hiapi.counts["replays"] == 1
    bill = fake_hiapi.counts["creates"] * price_of(second)
    assert bill > 0 and money(first, second) == bill  # one create billed, reported once
    assert build(root)["fresh"] == 1 and fake_hiapi.counts["creates"] == 1


def test_a_lost_create_rejected_on_retry_is_collected_not_paid_again(fake_hiapi, build,
                                                                     make_project):
    """A 400 ends only this frame: the build's recovery pass resends the kept create under its
    key and collects the first attempt's task, for nothing more."""
    root = make_project(ONE)
    fake_hiapi.faults.add("create", "drop", "400")
    first = build(root)
    fake_hiapi.faults.clear("create")
    second = build(root)
    assert journal(root).open == {} and second["failed"] == 0
    assert fake_hiapi.counts["creates"] == 1 and fake_hiapi.counts["replays"] == 1
    bill = fake_hiapi.counts["creates"] * price_of(first, second)
    assert bill > 0 and money(first, second) == bill
    assert build(root)["fresh"] == 1 and fake_hiapi.counts["creates"] == 1


def billed_images(fake_gemini) -> int:
    """Images Google made and billed (delivered, or lost on the way back)."""
    return sum(1 for b in fake_gemini.billed if b.paid_image)


@pytest.mark.parametrize("fault", ["garbled", "bad-base64", "over-cap", "held",
                                   "no-image", "safety", "prompt-blocked"])
def test_a_gemini_call_that_brings_no_usable_image_is_reported_as_billed(
        fake_gemini, build, make_project, monkeypatch, fault):
    """After a request left: an image the build could not use (its 200 cut short, its data not
    base64, over the size cap, its reply not back within the call timeout) was made, so the
    build that sent it reports it, as possibly billed. A well-formed 200 without an image (a
    block, text only) bills no image (Google prices per image) and is not counted. Either way a
    clean build then pays once more, and what the builds report is what the fake billed."""
    root = make_project(GEMINI_ONE)
    if fault == "held":
        monkeypatch.setenv("NBPIPE_CALL_TIMEOUT", "0.5")
        fake_gemini.holds.hold("reply")  # billed; the reply never comes while the build waits
    elif fault == "over-cap":
        monkeypatch.setenv("NBPIPE_MAX_IMAGE_BYTES", "16")
    else:
        fake_gemini.faults.add("generate", fault)
    first = build(root)
    assert first["failed"] == 1 and fake_gemini.counts["generates"] == 1
    made = fault not in ("no-image", "safety", "prompt-blocked")
    assert ("may have been billed" in failures(first)["a"]) is made
    fake_gemini.holds.release()
    for var in ("NBPIPE_CALL_TIMEOUT", "NBPIPE_MAX_IMAGE_BYTES"):
        monkeypatch.delenv(var, raising=False)
    second = build(root)
    assert second["rendered"] == 1 and fake_gemini.counts["generates"] == 2
    price = Decimal(str(second["spent_usd"]))
    assert price > 0 and first.get("maybe_billed", 0) == int(made)
    assert Decimal(str(first.get("maybe_billed_usd", 0))) == Decimal(str(first["spent_usd"])) == \
        (price if made else 0)
    fake_gemini.wait_idle()  # the held reply's image is made once released
    assert billed_images(fake_gemini) == 1 + made
    assert money(first, second) == billed_images(fake_gemini) * price  # billed == reported


def test_a_gemini_image_that_does_not_verify_is_reported_as_billed(fake_gemini, build,
                                                                   make_project):
    root = make_project(GEMINI_ONE)
    fake_gemini.faults.add("generate", "truncated")
    first = build(root)
    assert first["failed"] == 1 and billed_images(fake_gemini) == 1
    assert "may have been billed" in failures(first)["a"]
    second = build(root)
    price = Decimal(str(second["spent_usd"]))
    assert money(first, second) == billed_images(fake_gemini) * price == 2 * price
