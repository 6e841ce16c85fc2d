"""Review finding (review2): `check_peer` skips its check when the download goes through a
proxy, and judges the peer otherwise; whether it does is decided by `_proxied` (urllib's reading
of *_PROXY / NO_PROXY), while the client that connects decides by httpx's own reading. Where the
two differ, a download through a proxy has the proxy's address judged (a company proxy on a
private address: every download refused, the frame left for ever), or a direct download is not
judged at all (DNS rebinding unchecked)."""

from __future__ import annotations

import httpcore
import httpx
import pytest

from nbpipe.backends.http import Routed, pooled_client, proxy_for


def client_proxies(url: httpx.URL) -> bool:
    """Whether the client nbpipe sends and downloads with uses a proxy for `url`."""
    client = pooled_client(1)
    transport = client._transport_for_url(url)  # what httpx itself picks for the URL
    if isinstance(transport, Routed):
        transport = transport.transport_for(url)
    return isinstance(transport._pool, (httpcore.AsyncHTTPProxy, httpcore.AsyncSOCKSProxy))


@pytest.mark.parametrize("no_proxy, url", [
    (".cdn.example", "https://cdn.example/x.png"),  # httpx: proxied; urllib: bypassed
    ("all://*.cdn.example", "https://a.cdn.example/x.png"),  # httpx: direct; urllib: proxied
])
def test_the_peer_check_knows_a_proxy_as_the_client_does(monkeypatch, no_proxy, url):
    for name in ("ALL_PROXY", "all_proxy", "HTTP_PROXY", "http_proxy", "https_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://10.0.0.5:3128")
    monkeypatch.setenv("NO_PROXY", no_proxy)
    target = httpx.URL(url)
    assert (proxy_for(target) is not None) == client_proxies(target)
