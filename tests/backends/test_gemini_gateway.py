"""A gateway error (500/502/503/504/524) that arrives after Gemini made (and billed) the image.
generateContent has no idempotency key: a proxy or load balancer that answers 502/504, an HTML
500 or 503 page, or Cloudflare's 524 "origin timed out" may come while the model still finishes
the image and bills it. It is a lost reply, never resent within the build, counted as maybe
billed. Only Google's own JSON 503 UNAVAILABLE (the request was shed before it ran) is retried."""
from decimal import Decimal

import pytest

from tests.samples import failures

ONE = """\
version: 1
targets:
  a: {prompt: a red kite, backend: gemini, model: gemini-3.1-flash-image}
"""


def reported(s):
    return Decimal(str(s.get("spent_usd", 0))) + Decimal(str(s.get("spent_earlier_usd", 0)))


def billed(fake):
    return sum((b.usd for b in fake.billed), Decimal(0))


@pytest.mark.parametrize("status", [500, 502, 503, 504, 524])
def test_a_gateway_error_after_billing_is_neither_resent_nor_unreported(status, fake_gemini,
                                                                       build, make_project):
    fake_gemini.faults.add("generate", f"gateway:{status}")
    summary = build(make_project(ONE))
    assert fake_gemini.counts["requests"] == 1, "the request was sent again after the body left"
    assert billed(fake_gemini) > 0 and reported(summary) == billed(fake_gemini), \
        "Σ reported ≠ Σ billed"
    assert summary["failed"] == 1 and summary["maybe_billed"] == 1
    assert f"HTTP {status}" in failures(summary)["a"] and "not retried" in failures(summary)["a"]


def test_the_next_build_sends_it_again(fake_gemini, build, make_project):
    root = make_project(ONE)
    fake_gemini.faults.add("generate", "gateway:502")
    build(root)
    second = build(root)
    assert second["rendered"] == 1 and fake_gemini.counts["requests"] == 2


def test_googles_own_503_unavailable_is_retried(fake_gemini, build, make_project):
    fake_gemini.faults.add("generate", "503")  # Google's JSON error, status UNAVAILABLE
    summary = build(make_project(ONE))
    assert (summary["rendered"], fake_gemini.counts["requests"]) == (1, 2)
    assert reported(summary) == billed(fake_gemini)
