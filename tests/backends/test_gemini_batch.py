"""nbpipe's Gemini Batch client against the fake Batch and Files APIs: inline and file jobs,
results matched by key whatever their order, a lost create found by its display name, line
errors, and untrusted names kept out of URLs."""

from __future__ import annotations

import asyncio

import pytest

from nbpipe.backends import gemini_batch
from nbpipe.backends.batch import CreateLost, JobState
from nbpipe.backends.gemini import open_gemini
from nbpipe.backends.gemini_batch import GeminiBatches
from nbpipe.errors import FrameFailed
from nbpipe.plan.frame import Request
from nbpipe.settings import current

MODEL = "gemini-3.1-flash-image"


@pytest.fixture
def fake(fake_gemini_batch):
    return fake_gemini_batch


def lines(n: int, batches: GeminiBatches) -> list[tuple[str, dict[str, object]]]:
    return [(f"{i:064x}", batches.line(Request("gemini", MODEL, f"prompt {i}", {}, ()), []))
            for i in range(n)]


def with_client(test):
    async def run():
        backend = open_gemini(2, None, current())
        try:
            return await test(GeminiBatches(backend))
        finally:
            await backend.aclose()
    return asyncio.run(run())


@pytest.mark.parametrize("mode", ["inline", "file"])
def test_a_job_runs_and_its_results_come_back_by_key(fake, monkeypatch, mode):

    async def go(batches: GeminiBatches):
        sent = lines(3 if mode == "inline" else 6, batches)  # more than a few go as a file
        view = await batches.create(MODEL, "nbpipe-test", sent)
        assert view.state is JobState.PENDING and view.display == "nbpipe-test"
        fake.finish_all()
        done = await batches.get(view.name)
        assert done.state is JobState.SUCCEEDED and done.succeeded == len(sent)
        results = await batches.results(done)
        assert sorted(results) == sorted(key for key, _ in sent)
        assert all(r.image and r.image.startswith(b"\x89PNG") for r in results.values())

    with_client(go)
    assert fake.jobs[fake.creates[0].split("/")[1]].source == mode
    assert fake.counts["uploads"] == (1 if mode == "file" else 0)


def test_a_lost_create_reply_is_found_by_its_display_name(fake, monkeypatch):
    fake.faults.add("batch-create", "drop")
    monkeypatch.setattr(gemini_batch, "PAGE", 5)

    async def go(batches: GeminiBatches):
        with pytest.raises(CreateLost):
            await batches.create(MODEL, "nbpipe-lost", lines(2, batches))
        for i in range(12):  # newer jobs, over more than two pages
            await batches.create(MODEL, f"other-{i}", lines(1, batches))
        found = await batches.find("nbpipe-lost")
        assert found is not None and found.name == fake.creates[0]
        assert await batches.find("nbpipe-never") is None

    with_client(go)


def test_a_line_error_is_that_lines_alone(fake):
    fake.faults.add("batch-line", None, "error")

    async def go(batches: GeminiBatches):
        sent = lines(2, batches)
        view = await batches.create(MODEL, "nbpipe-lines", sent)
        fake.finish_all()
        results = await batches.results(await batches.get(view.name))
        assert results[sent[0][0]].image and results[sent[1][0]].image is None
        assert "Internal error" in (results[sent[1][0]].error or "")

    with_client(go)


def test_cancel_and_states(fake):
    async def go(batches: GeminiBatches):
        view = await batches.create(MODEL, "nbpipe-cancel", lines(1, batches))
        await batches.cancel(view.name)
        assert (await batches.get(view.name)).state is JobState.CANCELLED

    with_client(go)


def test_a_job_name_not_of_the_documented_shape_never_reaches_a_url(fake):
    async def go(batches: GeminiBatches):
        with pytest.raises(FrameFailed, match="documented shape"):
            await batches.get("batches/../../files/x")

    with_client(go)
    assert fake.counts["requests"] == 0


def test_a_refused_create_is_a_failure_not_a_lost_reply(fake):
    fake.faults.add("batch-create", "badkey")

    async def go(batches: GeminiBatches):
        with pytest.raises(Exception) as raised:
            await batches.create(MODEL, "nbpipe-refused", lines(1, batches))
        assert not isinstance(raised.value, CreateLost)

    with_client(go)
    assert fake.creates == []
