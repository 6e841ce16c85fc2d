"""A gateway error (502/504/524) that arrives after OpenAI made (and billed) the image (review
of #25, H2). OpenAI sits behind a CDN: an edge answers 502/504 (or Cloudflare's 524 "origin
timed out") while the origin may still finish the image and bill it: it is a lost reply, never
resent, counted as maybe billed."""
from decimal import Decimal

import pytest

from tests.fakes.openai import FakeOpenAI

ONE = """\
version: 1
targets:
  a: {prompt: a red kite, backend: openai, model: gpt-image-1-mini, quality: low}
"""


class GatewayAfterBilling(FakeOpenAI):
    """Bills the image, then the edge answers `status` instead of the reply (first call only)."""

    status = 504

    def _bill(self, request, billed):
        if len(self.billed) == 0:
            with self.lock:
                self.billed.append(billed)
                billed.number = 1
            return request.send(self.status, raw=b"<html>gateway timeout</html>",
                                content_type="text/html")
        return super()._bill(request, billed)


@pytest.fixture
def gateway(monkeypatch, request):
    fake = GatewayAfterBilling()
    fake.status = request.param
    with fake:
        monkeypatch.setenv("OPENAI_API_KEY", fake.key)
        monkeypatch.setenv("OPENAI_BASE_URL", fake.base)
        monkeypatch.setenv("NBPIPE_RETRY_BASE", "0.01")
        yield fake


def reported(s):
    return Decimal(str(s.get("spent_usd", 0))) + Decimal(str(s.get("spent_earlier_usd", 0)))


@pytest.mark.parametrize("gateway", [500, 502, 503, 504, 524], indirect=True)
def test_a_gateway_error_after_billing_is_neither_resent_nor_unreported(gateway, build,
                                                                       make_project):
    summary = build(make_project(ONE))
    billed = sum((b.usd for b in gateway.billed), Decimal(0))
    assert gateway.counts["requests"] == 1, "the request was sent again after the body left"
    assert reported(summary) == billed, "Σ reported ≠ Σ billed"
