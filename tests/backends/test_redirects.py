"""API calls follow no redirect, so a key never reaches another host; downloads (which carry
no credentials) follow a bounded number of checked hops."""

from __future__ import annotations

import pytest

from tests.fakes.server import Elsewhere
from tests.samples import GEMINI_ONE, ONE, failures


@pytest.fixture
def elsewhere():
    with Elsewhere() as server:
        yield server


@pytest.mark.parametrize("endpoint", ["create", "poll"])
def test_hiapi_calls_never_follow_a_redirect(endpoint, fake_hiapi, elsewhere, build,
                                             make_project):
    fake_hiapi.redirect_to = elsewhere.url
    fake_hiapi.faults.add(endpoint, "redirect")
    summary = build(make_project(ONE))
    assert elsewhere.counts["requests"] == 0  # not even without the key
    assert failures(summary)["a"] == (
        f"HiAPI answered HTTP 307, a redirect to {elsewhere.url}; API calls follow no "
        "redirect, so the key goes nowhere else (point HIAPI_BASE_URL at the API itself)")
    assert summary["code"] == 1


def test_gemini_key_never_follows_a_redirect(fake_gemini, elsewhere, build, make_project):
    fake_gemini.redirect_to = elsewhere.url
    fake_gemini.faults.add("generate", "redirect")
    summary = build(make_project(GEMINI_ONE))
    assert elsewhere.seen == []  # httpx would have sent x-goog-api-key along
    assert failures(summary)["a"].startswith(
        f"Gemini answered HTTP 307, a redirect to {elsewhere.url}; API calls follow no redirect")
    assert (summary["code"], fake_gemini.counts["generates"]) == (1, 0)


@pytest.mark.parametrize("backend", ["hiapi", "gemini"])
def test_same_origin_redirects_are_refused_too(backend, fake_hiapi, fake_gemini, build,
                                               make_project):
    fake = fake_hiapi if backend == "hiapi" else fake_gemini
    fake.faults.add("create" if backend == "hiapi" else "generate", "redirect-self")
    summary = build(make_project(ONE if backend == "hiapi" else GEMINI_ONE))
    assert f"HTTP 307, a redirect to {fake.url}; API calls follow no redirect" \
        in failures(summary)["a"]
    assert fake.counts["requests"] == 1  # refused, not followed back to the same server


def test_downloads_follow_a_redirect_to_another_origin_without_credentials(
        fake_hiapi, build, make_project):
    def serve(path: str) -> bytes | None:
        task = fake_hiapi.tasks.get(path.removeprefix("/files/").rpartition(".")[0])
        return task.image if task else None

    with Elsewhere(serve) as cdn:
        fake_hiapi.redirect_to = cdn.url
        fake_hiapi.faults.add("download", "redirect")
        summary = build(make_project(ONE))
    assert (summary["rendered"], summary["failed"]) == (1, 0)
    assert cdn.seen == [{}]  # one hop, and no Authorization, no key, no cookie went along


def test_each_download_hop_is_checked_like_the_first_url(fake_hiapi, build, make_project):
    fake_hiapi.faults.add("download", "redirect-file")
    summary = build(make_project(ONE))
    assert failures(summary)["a"] == \
        "refused to download from a non-http(s) URL (file:/etc/passwd)"
    assert fake_hiapi.counts["downloads"] >= 1
