"""A fal submit answered by an edge's error after the request was queued (Cloudflare 520/524,
a bare 500/503 HTML page from a proxy; review of #25, H3): a lost reply, maybe billed, never
sent again. Only fal's own JSON 500/503 (with an error_type) says nothing was queued."""
import json
from decimal import Decimal

import pytest

from tests.fakes.fal import FakeFal

ONE = """\
version: 1
targets:
  a: {prompt: a lighthouse, backend: fal, model: fal-ai/flux/dev}
"""


class EdgeAfterQueue(FakeFal):
    status = 524

    def _submit(self, request, model):
        if self.counts.get("submits", 0) == 0:
            raw = request.body()
            self._queue(model, json.loads(raw), request.headers.get("Authorization", "")
                        .removeprefix("Key "))
            return request.send(self.status, raw=b"<html>origin timeout</html>",
                                content_type="text/html")
        return super()._submit(request, model)


@pytest.fixture
def edge(monkeypatch, request):
    fake = EdgeAfterQueue()
    fake.status = request.param
    with fake:
        monkeypatch.setenv("FAL_KEY", fake.key)
        monkeypatch.setenv("FAL_BASE_URL", fake.url)
        monkeypatch.setenv("NBPIPE_FAL_POLL_INTERVAL", "0.01")
        monkeypatch.setenv("NBPIPE_RETRY_BASE", "0.01")
        yield fake


@pytest.mark.parametrize("edge", [500, 503, 504, 520, 524], indirect=True)
def test_an_edge_error_after_queueing_is_not_resent(edge, build, make_project):
    summary = build(make_project(ONE))
    reported = Decimal(str(summary.get("spent_usd", 0)))
    assert edge.counts["submits"] == 1, "queued twice"
    assert reported == edge.spent()


@pytest.mark.parametrize("fault", ["500", "503"])
def test_fals_own_refusal_to_queue_is_tried_again(fault, monkeypatch, build, make_project):
    with FakeFal() as fake:
        monkeypatch.setenv("FAL_KEY", fake.key)
        monkeypatch.setenv("FAL_BASE_URL", fake.url)
        monkeypatch.setenv("NBPIPE_FAL_POLL_INTERVAL", "0.01")
        monkeypatch.setenv("NBPIPE_RETRY_BASE", "0.01")
        fake.faults.add("submit", fault)
        summary = build(make_project(ONE))
        assert summary["rendered"] == 1 and fake.counts["submits"] == 1
        assert Decimal(str(summary["spent_usd"])) == fake.spent()
