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

from nbpipe.backends.http import _proxied


def httpx_proxies(url: httpx.URL) -> bool:
    """Whether the client nbpipe downloads with (trust_env, as pooled_client) uses a proxy."""
    client = httpx.AsyncClient()
    pool = client._transport_for_url(url)._pool  # type: ignore[attr-defined]
    return isinstance(pool, (httpcore.AsyncHTTPProxy, httpcore.AsyncSOCKSProxy))


@pytest.mark.xfail(strict=True, reason="review2 finding 6: backends/http._proxied decides "
                   "'through a proxy' with urllib's NO_PROXY rules while httpx connects by its "
                   "own; they differ on a leading-dot entry and on httpx's all://*.host form")
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
    assert _proxied(target) == httpx_proxies(target)
