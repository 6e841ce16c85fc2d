"""A task's output URL is fetched only from a public address (issue #22, finding 12).

A server's answer must not make nbpipe fetch from the machine's own services or the cloud's
metadata service (169.254.169.254, which hands out credentials): loopback, link-local and
private addresses are refused before anything connects, unless the configured base URL is of
that kind itself (the fake runs on 127.0.0.1, so loopback is allowed here); the address a
connection reached is judged again before its answer is read (DNS rebinding). The image is paid:
its task stays in the journal, and the frame ends `left`, so no build pays again for it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket

import httpx
import pytest

from nbpipe.backends import http
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


def test_a_rebinding_host_is_judged_by_the_address_it_connected_to(
        fake_hiapi, build, make_project, monkeypatch):
    """The check resolved the host, then httpx resolved it again to connect: a DNS-rebinding
    server answers a public address to the first and 169.254.169.254 to the second. Here the
    check's look-up says public for the `.test` hosts (the base URL's too, so loopback is not
    the base's kind) while connections to them reach the fake on 127.0.0.1."""
    public = ipaddress.ip_address("8.8.8.8")
    looked_up = http.lookup

    async def lookup(host: str, port: int):
        return [public] if host.endswith(".test") else await looked_up(host, port)

    resolve = socket.getaddrinfo

    def connect_to(host, port, *args, **kwargs):  # what httpx's connection resolves
        name = host.decode() if isinstance(host, bytes) else str(host)  # anyio: IDNA bytes
        return resolve("127.0.0.1" if name.endswith(".test") else host, port, *args, **kwargs)

    monkeypatch.setattr(http, "lookup", lookup)
    monkeypatch.setattr(socket, "getaddrinfo", connect_to)
    for proxy in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
                  "all_proxy"):
        monkeypatch.delenv(proxy, raising=False)
    port = httpx.URL(fake_hiapi.url).port
    monkeypatch.setenv("HIAPI_BASE_URL", f"http://hiapi.test:{port}")
    root = make_project(ONE)
    summary = build(root)
    (why,) = left(summary).values()
    assert f"http://hiapi.test:{port}/files/" in why, summary["events"]
    assert "resolves to a loopback address, and the base URL does not" in why
    assert "stays in the journal" in why
    assert fake_hiapi.counts["creates"] == 1
    (entry,) = journal(root).open.values()  # paid: kept for a later build to collect
    assert entry.task_id in fake_hiapi.tasks
    assert not list((root / ".nbpipe" / "blobs").glob("*/*"))  # nothing entered the cache
    assert not (root / "out").exists() or not any((root / "out").iterdir())


class Peer:
    """A connection's stream, as httpcore hands it out in a response's extensions."""

    def __init__(self, *address):
        self.address = address

    def get_extra_info(self, info: str):
        return self.address if info == "server_addr" else None


@pytest.mark.parametrize("peer, base, refused", [
    (Peer("169.254.169.254", 80), "http://127.0.0.1:8080", "a link-local address"),
    (Peer("::ffff:10.0.0.7", 80, 0, 0), None, "a private address"),
    (Peer("127.0.0.2", 80), "https://8.8.8.8", "a loopback address"),
    (None, None, "the address it connected to is unknown"),
    (Peer("8.8.8.8", 443), None, None),
    (Peer("127.0.0.2", 80), "http://127.0.0.1:8080", None),  # the base URL's own kind
])
def test_the_peer_is_judged_unless_a_proxy_stands_between(peer, base, refused, monkeypatch):
    for proxy in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy",
                  "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(proxy, raising=False)
    url = httpx.URL("http://files.example/x.png")
    response = httpx.Response(200, extensions={"network_stream": peer} if peer else {})
    if refused is None:
        asyncio.run(http.check_peer(response, url, base))
        return
    with pytest.raises(AddressRefused, match=refused):
        asyncio.run(http.check_peer(response, url, base))
    monkeypatch.setenv("HTTP_PROXY", "http://10.0.0.8:3128")  # the peer is the proxy: the
    asyncio.run(http.check_peer(response, url, base))  # proxy resolves; only the look-up is judged
    monkeypatch.setenv("NO_PROXY", "files.example")  # ...unless the URL bypasses it
    with pytest.raises(AddressRefused, match=refused):
        asyncio.run(http.check_peer(response, url, base))
