"""A task's output URL is fetched only from a public address (issue #22, finding 12).

A server's answer must not make nbpipe fetch from the machine's own services or the cloud's
metadata service (169.254.169.254, which hands out credentials): loopback, link-local and
private addresses are refused before anything connects, unless the configured base URL is of
that kind itself (the fake runs on 127.0.0.1, so loopback is allowed here). The image is paid:
its task stays in the journal, and the frame ends `left`, so no build pays again for it.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from nbpipe.backends.http import AddressRefused, check_address
from tests.samples import ONE, journal

METADATA = "http://169.254.169.254/latest/meta-data/iam/security-credentials/role.png"


def left(summary: dict) -> dict[str, str]:
    return {e["frame"]: e["detail"] for e in summary["events"] if e.get("status") == "left"}


@pytest.mark.parametrize("how", ["output", "redirect"])
def test_an_output_url_at_the_metadata_address_is_refused_and_its_task_kept(
        how, fake_hiapi, build, make_project, monkeypatch):
    monkeypatch.setenv("NBPIPE_DOWNLOAD_TIMEOUT", "3")  # were it fetched: bounded, and failing
    root = make_project(ONE)
    if how == "output":
        fake_hiapi.faults.add("task", f"url:{METADATA}")
    else:  # the fake's own URL answers once with a hop to the metadata service (the end of
        # the build collects the task again, from the fake: the hop is not repeated)
        fake_hiapi.redirect_to = "http://169.254.169.254"
        fake_hiapi.faults.add("download", "redirect")
    summary = build(root)
    (why,) = left(summary).values()
    assert "169.254.169.254" in why and "link-local address" in why, summary["events"]
    assert "stays in the journal" in why
    if how == "output":
        (entry,) = journal(root).open.values()  # paid: kept for a later build to collect
        assert entry.task_id in fake_hiapi.tasks
        again = build(root)  # polled for free, refused again: never a second task
        assert fake_hiapi.counts["creates"] == 1 and again["rendered"] == 0, again["events"]
        assert len(journal(root).open) == 1


@pytest.mark.parametrize("url, base, refused", [
    ("http://169.254.169.254/x.png", "http://127.0.0.1:8080", "link-local"),
    ("http://[fe80::1]/x.png", "https://8.8.8.8", "link-local"),
    ("http://10.1.2.3/x.png", "http://127.0.0.1:8080", "private"),
    ("http://192.168.1.9/x.png", None, "private"),
    ("http://127.0.0.1:9/x.png", "http://10.0.0.5", "loopback"),
    ("http://[::ffff:127.0.0.1]/x.png", "https://8.8.8.8", "loopback"),
    ("http://[::1]/x.png", None, "loopback"),
])
def test_private_addresses_are_refused_unless_the_base_url_is_one(url, base, refused):
    with pytest.raises(AddressRefused, match=f"a {refused} address"):
        asyncio.run(check_address(httpx.URL(url), base))


@pytest.mark.parametrize("url, base", [
    ("http://127.0.0.1:9/x.png", "http://127.0.0.1:8080"),  # the fakes, on loopback
    ("http://10.1.2.3/x.png", "http://10.0.0.5:8000"),  # a HiAPI on the company network
    ("https://8.8.8.8/x.png", "https://api.hiapi.ai"),  # public: no look-up of the base
])
def test_public_addresses_and_the_base_urls_own_kind_are_allowed(url, base):
    asyncio.run(check_address(httpx.URL(url), base))
