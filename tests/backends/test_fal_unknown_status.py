"""A status fal's docs do not list (a future `IN_PROGRESS_RETRYING`, a proxy's; review of #25,
M1): nbpipe asks for the result, fal answers 400 "still in progress", and that is no word that
the request failed: it stays pollable and is collected, never marked failed and paid again."""
from decimal import Decimal

import pytest

from tests.conftest import point_at_fal
from tests.fakes.fal import FakeFal

ONE = """\
version: 1
targets:
  a: {prompt: a lighthouse, backend: fal, model: fal-ai/flux/dev}
"""


class OddStatus(FakeFal):
    def _advance(self, queued):
        super()._advance(queued)
        if queued.polls == 1:
            queued.status = "IN_PROGRESS_RETRYING"  # pending, under a name nbpipe does not know

    def _result(self, request, app, request_id):
        q = self.requests.get(request_id)
        if q is not None and q.status == "IN_PROGRESS_RETRYING":
            q.status = "IN_PROGRESS"  # next poll completes it
            return request.send(400, {"detail": "Request is still in progress"})
        return super()._result(request, app, request_id)



@pytest.fixture
def odd(monkeypatch):
    with OddStatus() as fake:
        point_at_fal(monkeypatch, fake)
        yield fake


def test_an_unknown_status_keeps_the_request_pollable(odd, build, make_project):
    root = make_project(ONE)
    first = build(root)
    second = build(root)
    said = sum(Decimal(str(s.get("spent_usd", 0))) for s in (first, second))
    assert first["rendered"] == 1 and first["failed"] == 0
    assert odd.counts["submits"] == 1 and said == odd.spent()
