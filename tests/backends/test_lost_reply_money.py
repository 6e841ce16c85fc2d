"""A paid request is paid once and reported once: a HiAPI create whose reply was lost and whose
retry was then refused for good keeps its (maybe paid) task for the next build; a Gemini call
that was sent and may be billed is reported by the build that sent it."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.samples import ONE, journal


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
