"""Review3 finding: since the client routes by `proxy_for` (trust_env off), a proxy variable
without a scheme (`https_proxy=proxy.corp:3128`, common on company machines) is handed to httpx
as it is: httpx's own reading (trust_env) took it as http://proxy.corp:3128, nbpipe's raised
ValueError("Unknown scheme for proxy URL") on every request: no backend could send at all."""

from __future__ import annotations

import httpcore
import httpx

from nbpipe.backends.http import Routed, pooled_client, proxy_for

PROXY_VARS = ("ALL_PROXY", "all_proxy", "HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy",
              "NO_PROXY", "no_proxy")


def test_a_proxy_named_without_a_scheme_is_an_http_proxy_as_httpx_read_it(monkeypatch):
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("https_proxy", "10.0.0.5:3128")
    url = httpx.URL("https://api.example.com/v1/tasks")
    transport = pooled_client(1)._transport_for_url(url)
    assert isinstance(transport, Routed)
    pool = transport.transport_for(url)._pool  # raised ValueError before the fix
    assert isinstance(pool, httpcore.AsyncHTTPProxy)
    assert pool._proxy_url == httpcore.URL("http://10.0.0.5:3128")
    assert proxy_for(url) == "http://10.0.0.5:3128"  # the one decision check_peer makes too
    # what httpx's trust_env made of it, which nbpipe used before
    before = httpx.AsyncClient()._transport_for_url(url)._pool
    assert before._proxy_url == httpcore.URL("http://10.0.0.5:3128")
