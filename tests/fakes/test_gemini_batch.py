"""The fake Gemini's Batch and Files APIs, proven by google-genai's own `client.batches` and
`client.files` (as test_official_clients.py proves generateContent)."""

from __future__ import annotations

import io
import json
import threading
from decimal import Decimal

import httpx
import pytest
from PIL import Image

from tests.fakes.gemini import image_price
from tests.fakes.gemini_batch import FakeGeminiBatch

MODEL = "gemini-3.1-flash-image"


def request(prompt: str, key: str, size: str | None = None) -> dict:
    """One inline request as the SDK takes it (an InlinedRequest dict)."""
    config = {"response_modalities": ["IMAGE"]}
    if size:
        config["image_config"] = {"image_size": size, "aspect_ratio": "16:9"}
    return {"contents": [{"role": "user", "parts": [{"text": prompt}]}],
            "metadata": {"key": key}, "config": config}


@pytest.fixture
def fake():
    with FakeGeminiBatch() as server:
        yield server


def sdk(fake, version: str | None = None):
    from google import genai
    from google.genai import types

    return genai.Client(api_key=fake.key, http_options=types.HttpOptions(
        base_url=fake.url, **({"api_version": version} if version else {})))


def raw(fake, path: str) -> dict:
    """What the fake answers on the wire (the SDK does not show everything: see batchStats)."""
    reply = httpx.get(f"{fake.url}/v1beta/{path}", headers={"x-goog-api-key": fake.key})
    assert reply.status_code == 200, reply.text
    return reply.json()


@pytest.mark.parametrize("version", [None, "v1beta"])  # None: the SDK's default (v1 in 3.x)
def test_inline_batch_walks_pending_running_succeeded(fake, version):
    from google.genai import types

    client = sdk(fake, version)
    job = client.batches.create(model=MODEL, src=[request("a cat", "cat", "2K"),
                                                  request("a dog", "dog"),
                                                  request("a cow", "cow")],
                                config={"display_name": "nbpipe-run-1"})
    assert job.name.startswith("batches/") and job.display_name == "nbpipe-run-1"
    assert job.state == types.JobState.JOB_STATE_PENDING and job.dest is None
    assert job.model == f"models/{MODEL}" and job.create_time.year == 2026
    fake.advance(job.name, "RUNNING")
    assert client.batches.get(name=job.name).state == types.JobState.JOB_STATE_RUNNING
    fake.faults.add("batch-line", None, "error")  # the dog's line fails
    fake.advance(job.name, "SUCCEEDED")
    done = client.batches.get(name=job.name)
    assert done.state == types.JobState.JOB_STATE_SUCCEEDED and done.end_time is not None
    results = {r.metadata["key"]: r for r in done.dest.inlined_responses}
    assert sorted(results) == ["cat", "cow", "dog"]
    assert [r.metadata["key"] for r in done.dest.inlined_responses] != ["cat", "dog", "cow"], \
        "results come shuffled: a client must match them by key"
    assert results["dog"].response is None and results["dog"].error.code == 13
    image = results["cat"].response.candidates[0].content.parts[-1].inline_data
    assert Image.open(io.BytesIO(image.data)).format == "PNG"
    assert raw(fake, job.name)["metadata"]["batchStats"] == {  # int64 as strings; no zero
        "requestCount": "3", "successfulRequestCount": "2", "failedRequestCount": "1"}
    billed = {b.key: b for b in fake.billed}
    assert sorted(billed) == ["cat", "cow"] and {b.lane for b in fake.billed} == {"batch"}
    assert billed["cat"].usd == image_price(MODEL, {"generationConfig": {
        "imageConfig": {"imageSize": "2K"}}}) / 2 == Decimal("0.0505")
    assert billed["cat"].image == image.data and fake.creates == [job.name]
    client.models.generate_content(  # the same server still answers generateContent
        model=MODEL, contents="a cat", config=types.GenerateContentConfig(
            image_config=types.ImageConfig(image_size="2K")))
    assert (fake.billed[-1].lane, fake.billed[-1].usd) == ("standard", Decimal("0.101"))


def test_file_batch_uploads_its_requests_and_downloads_results_by_key(fake, tmp_path):
    from google.genai import types

    client = sdk(fake)
    lines = [{"key": f"frame-{i}", "request": {
        "contents": [{"role": "user", "parts": [{"text": f"frame {i}"}]}],
        "generationConfig": {"responseModalities": ["IMAGE"],
                             "imageConfig": {"imageSize": "1K"}}}} for i in range(4)]
    path = tmp_path / "requests.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    uploaded = client.files.upload(file=path, config={"mime_type": "application/jsonl",
                                                       "display_name": "nbpipe-run-2-input"})
    assert uploaded.name.startswith("files/") and uploaded.size_bytes == path.stat().st_size
    assert uploaded.display_name == "nbpipe-run-2-input"
    got = client.files.get(name=uploaded.name)
    assert got.state == types.FileState.ACTIVE and got.source == types.FileSource.UPLOADED
    job = client.batches.create(model=MODEL, src=uploaded.name,
                                config={"display_name": "nbpipe-run-2"})
    fake.faults.add("batch-line", "prompt-blocked", "invalid")
    [finished] = fake.finish_all()
    assert finished.name == job.name
    done = client.batches.get(name=job.name)
    assert done.state == types.JobState.JOB_STATE_SUCCEEDED and done.dest.file_name
    assert client.files.get(name=done.dest.file_name).download_uri
    data = client.files.download(file=done.dest.file_name)
    results = {row["key"]: row for row in map(json.loads, data.decode().splitlines())}
    assert sorted(results) == [f"frame-{i}" for i in range(4)]
    assert results["frame-0"]["response"]["promptFeedback"]["blockReason"] == "SAFETY"
    assert results["frame-1"]["error"]["code"] == 3
    assert "inlineData" in results["frame-3"]["response"]["candidates"][0]["content"]["parts"][-1]
    paid = [b.key for b in fake.billed if b.paid_image]
    assert sorted(paid) == ["frame-2", "frame-3"]
    assert all(b.usd == Decimal("0.0335") for b in fake.billed)  # 1K: half of 0.067
    with pytest.raises(ValueError, match="uploaded files can't be downloaded"):
        client.files.download(file=got)  # the SDK's own refusal
    reply = httpx.get(f"{fake.url}/download/v1beta/{uploaded.name}:download?alt=media",
                      headers={"x-goog-api-key": fake.key})
    assert reply.status_code == 400  # and the server's: only generated files download
    assert httpx.get(f"{fake.url}/download/v1beta/{done.dest.file_name}:download?alt=media",
                     headers={"x-goog-api-key": fake.key}).content == data  # the REST path


def test_a_dropped_create_leaves_a_job_found_by_its_display_name(fake):
    from google.genai import types

    client = sdk(fake)
    client.batches.create(model=MODEL, src=[request("other", "x")],
                          config={"display_name": "someone-else"})
    fake.faults.add("batch-create", "drop")
    with pytest.raises(Exception) as lost:  # the SDK does not retry by default
        client.batches.create(model=MODEL, src=[request("a cat", "cat")],
                              config={"display_name": "nbpipe-run-3"})
    # httpx's, or httpx2's when installed (google-genai 3.x prefers that fork)
    assert type(lost.value).__name__ == "RemoteProtocolError"
    found = [j for j in client.batches.list(config={"page_size": 1})
             if j.display_name == "nbpipe-run-3"]
    assert len(found) == 1 and found[0].state == types.JobState.JOB_STATE_PENDING
    assert fake.counts["creates"] == 2
    again = client.batches.create(model=MODEL, src=[request("a cat", "cat")],
                                  config={"display_name": "nbpipe-run-3"})
    assert again.name != found[0].name, "creation is not idempotent: a resend is a second job"
    assert [j.name for j in client.batches.list() if j.display_name == "nbpipe-run-3"] == \
        [again.name, found[0].name]


def test_a_create_held_after_the_job_exists(fake):
    """The crash window: the job is made, its reply not yet sent."""
    client, seen = sdk(fake), []
    fake.holds.hold("batch-created")
    worker = threading.Thread(target=lambda: seen.append(client.batches.create(
        model=MODEL, src=[request("a cat", "cat")], config={"display_name": "held"})))
    worker.start()
    fake.holds.wait_held("batch-created", timeout=10)
    other = sdk(fake)  # kept: a Client closes its connections when collected
    assert [j.display_name for j in other.batches.list()] == ["held"]
    fake.holds.release()
    worker.join(10)
    assert seen[0].name == fake.creates[0]


def test_create_refusals_make_no_job(fake):
    from google.genai import errors

    client = sdk(fake)

    def create(model=MODEL, src=None, name="r"):
        with pytest.raises(errors.APIError) as info:
            client.batches.create(model=model, src=src or [request("x", "k")],
                                  config={"display_name": name})
        return info.value.code, info.value.status

    fake.faults.add("batch-create", "429", "503", "badkey")
    assert create() == (429, "RESOURCE_EXHAUSTED")  # quota
    assert create() == (503, "UNAVAILABLE")
    assert create() == (400, "INVALID_ARGUMENT")
    assert create(model="gemini-2.5-flash-image") == (404, "NOT_FOUND")  # retired
    assert create(src=[request("x", "k", "8K")]) == (400, "INVALID_ARGUMENT")  # validated
    gif = {"inline_data": {"mime_type": "image/gif", "data": b"GIF89a"}}
    assert create(src=[request("x", "k") | {"contents": [{"role": "user", "parts": [gif]}]}]) \
        == (400, "INVALID_ARGUMENT")  # a type the model does not take
    assert create(src="files/nosuchfile") == (400, "INVALID_ARGUMENT")
    fake.inline_cap = 2000  # Google's is 20 MB
    assert create(src=[request("x" * 3000, "k")]) == (400, "INVALID_ARGUMENT")
    fake.inline_cap, fake.max_jobs = 20 * 1024 * 1024, 1
    client.batches.create(model=MODEL, src=[request("x", "k")], config={"display_name": "one"})
    assert create() == (429, "RESOURCE_EXHAUSTED")  # concurrent jobs per project
    assert fake.counts["creates"] == 1 and fake.billed == []


def test_cancel_delete_fail_and_expire(fake):
    from google.genai import errors, types

    client = sdk(fake)
    jobs = [client.batches.create(model=MODEL, src=[request(name, name)],
                                  config={"display_name": name}).name
            for name in ("cancel", "fail", "outside", "late", "deleted")]
    client.batches.cancel(name=jobs[0])
    assert client.batches.get(name=jobs[0]).state == types.JobState.JOB_STATE_CANCELLED
    with pytest.raises(errors.ClientError):  # already ended
        client.batches.cancel(name=jobs[0])
    fake.advance(jobs[1], "FAILED", message="quota for this batch ran out")
    assert client.batches.get(name=jobs[1]).state == types.JobState.JOB_STATE_FAILED
    assert raw(fake, jobs[1])["error"]["message"] == "quota for this batch ran out"
    fake.advance(jobs[2], "BATCH_STATE_CANCELLED")  # cancelled by someone else
    assert client.batches.get(name=jobs[2]).state == types.JobState.JOB_STATE_CANCELLED
    client.batches.delete(name=jobs[4])  # forgets, does not cancel
    with pytest.raises(errors.ClientError) as info:
        client.batches.get(name=jobs[4])
    assert info.value.code == 404
    assert "deleted" not in [j.display_name for j in client.batches.list()]
    fake.pass_hours(47)
    assert client.batches.get(name=jobs[3]).state == types.JobState.JOB_STATE_PENDING
    fake.pass_hours(2)
    late = client.batches.get(name=jobs[3])
    assert late.state == types.JobState.JOB_STATE_EXPIRED and late.dest is None
    assert fake.billed == [] and fake.jobs[jobs[4].split("/")[1]].state == "EXPIRED"


def test_a_deleted_job_still_runs_and_bills(fake):
    client = sdk(fake)
    name = client.batches.create(model=MODEL, src=[request("x", "k")],
                                 config={"display_name": "gone"}).name
    client.batches.delete(name=name)
    fake.finish_all()
    assert [(b.batch, b.lane) for b in fake.billed if b.paid_image] == [(name, "batch")]


def test_list_pages_newest_first(fake):
    client = sdk(fake)
    names = [client.batches.create(model=MODEL, src=[request("x", "k")],
                                   config={"display_name": f"job-{i}"}).name for i in range(5)]
    pager = client.batches.list(config={"page_size": 2})
    assert [j.name for j in pager] == names[::-1]
    first = raw(fake, "batches?pageSize=2")
    assert len(first["operations"]) == 2 and first["nextPageToken"]
    assert "nextPageToken" not in raw(fake, "batches?pageSize=5")
    bad = httpx.get(f"{fake.url}/v1beta/batches?pageToken=nope",
                    headers={"x-goog-api-key": fake.key})
    assert bad.status_code == 400


def test_uploads_are_capped_and_kept_48_hours(fake):
    from google.genai import errors

    client = sdk(fake)
    fake.files.cap = 10
    with pytest.raises(errors.ClientError):
        client.files.upload(file=io.BytesIO(b"x" * 11), config={"mime_type": "text/plain"})
    kept = client.files.upload(file=io.BytesIO(b"x" * 10), config={"mime_type": "text/plain"})
    fake.pass_hours(49)
    with pytest.raises(errors.ClientError) as info:
        client.files.get(name=kept.name)
    assert info.value.code == 404 and fake.counts["uploads"] == 1


def test_an_upload_session_is_its_own_credential_and_checks_offsets(fake):
    start = httpx.post(f"{fake.url}/upload/v1beta/files", json={"file": {}}, headers={
        "x-goog-api-key": fake.key, "X-Goog-Upload-Protocol": "resumable",
        "X-Goog-Upload-Command": "start", "X-Goog-Upload-Header-Content-Length": "4",
        "X-Goog-Upload-Header-Content-Type": "text/plain"})
    url = start.headers["X-Goog-Upload-URL"]
    assert start.headers["X-Goog-Upload-Status"] == "active"
    first = httpx.post(url, content=b"ab", headers={"X-Goog-Upload-Command": "upload",
                                                     "X-Goog-Upload-Offset": "0"})
    assert first.headers["X-Goog-Upload-Status"] == "active"
    skipped = httpx.post(url, content=b"d", headers={"X-Goog-Upload-Command": "upload, finalize",
                                                      "X-Goog-Upload-Offset": "3"})
    assert skipped.status_code == 400 and skipped.headers["X-Goog-Upload-Status"] == "final"
    last = httpx.post(url, content=b"cd", headers={"X-Goog-Upload-Command": "upload, finalize",
                                                    "X-Goog-Upload-Offset": "2"})
    assert last.headers["X-Goog-Upload-Status"] == "final"
    assert last.json()["file"]["sizeBytes"] == "4"
    assert httpx.get(f"{fake.url}/v1beta/{last.json()['file']['name']}").status_code == 400


def test_finish_all_ends_jobs_as_the_faults_say(fake):
    from google.genai import types

    client = sdk(fake)
    names = [client.batches.create(model=MODEL, src=[request("x", "k")],
                                   config={"display_name": f"job-{i}"}).name for i in range(4)]
    fake.faults.add("batch-job", None, "fail", "cancel", "expire")
    assert [j.name for j in fake.finish_all()] == names
    states = [client.batches.get(name=name).state for name in names]
    assert states == [types.JobState.JOB_STATE_SUCCEEDED, types.JobState.JOB_STATE_FAILED,
                      types.JobState.JOB_STATE_CANCELLED, types.JobState.JOB_STATE_EXPIRED]
    assert [b.batch for b in fake.billed] == names[:1] and fake.finish_all() == []


def test_line_faults_reach_the_sdk(fake):
    from google.genai import types

    client = sdk(fake)
    job = client.batches.create(model=MODEL, src=[request(w, w) for w in ("a", "b", "c")],
                                config={"display_name": "faults"})
    fake.faults.add("batch-line", "safety", "no-image", "no-metadata")
    fake.advance(job.name, "SUCCEEDED")
    answers = client.batches.get(name=job.name).dest.inlined_responses
    by_key = {r.metadata["key"] if r.metadata else None: r.response for r in answers}
    assert by_key["a"].candidates[0].finish_reason == types.FinishReason.IMAGE_SAFETY
    assert all(p.inline_data is None for p in by_key["b"].candidates[0].content.parts)
    assert by_key[None].candidates[0].content.parts[-1].inline_data  # made, billed, unnamed
    assert [b.paid_image for b in fake.billed] == [False, False, True]
