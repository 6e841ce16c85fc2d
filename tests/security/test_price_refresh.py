"""`models --refresh` against a hostile or broken price server (issue #22, finding 11): a
total time limit, a size cap, no redirect followed, no exit 3 on nested JSON, and prices
far below or above the built-in ones set aside with a warning (SECURITY.md)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from nbpipe.backends import hiapi


def serve(behaviour):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            try:
                behaviour(self)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up, as it should

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def reply(body: bytes, status: int = 200, headers: dict | None = None):
    def behaviour(handler):
        handler.send_response(status)
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)
    return behaviour


def drip(handler):
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.end_headers()
    handler.wfile.write(b"[")
    for _ in range(10_000):  # one byte at a time, each well within any read timeout
        handler.wfile.write(b" ")
        handler.wfile.flush()
        time.sleep(0.02)


def huge(handler):
    handler.send_response(200)
    handler.end_headers()
    handler.wfile.write(b'{"data": "' + b"x" * (8 << 20))


def priced(value) -> bytes:
    return json.dumps({"data": [
        {"model_name": "Nano-Banana", "base_usd_value": value, "policies": []},
        {"model_name": "Nano-Banana-2", "base_usd_value": 0.08, "policies": []}]}).encode()


@pytest.fixture
def refresh(make_project, run, monkeypatch):
    monkeypatch.setattr(hiapi, "PRICE_LIST_SECONDS", 1.0)
    root = make_project("version: 1\ntargets: {}\n")
    servers = []

    def _refresh(behaviour):
        server, url = serve(behaviour)
        servers.append(server)
        monkeypatch.setenv("NBPIPE_PRICING_URL", url)
        start = time.perf_counter()
        result = run("-C", str(root), "models", "--refresh")
        assert time.perf_counter() - start < 10
        assert result.code != 3 and "Traceback" not in result.err, result.err
        return result, root / ".nbpipe" / "prices.json"

    yield _refresh
    for server in servers:
        server.shutdown()


@pytest.mark.parametrize("behaviour, said", [
    (drip, "no full reply within 1 s"),
    (huge, "larger than 1,048,576 bytes"),
    (reply(b"", 302, {"Location": "http://169.254.169.254/latest"}), "not followed"),
    (reply(b"[" * 100_000 + b"]" * 100_000), "RecursionError"),
])
def test_a_hostile_price_server_changes_nothing(refresh, behaviour, said):
    result, stored = refresh(behaviour)
    assert result.code == 2 and said in result.err, result.err
    assert "the table in use stays as it was" in result.err
    assert not stored.exists()


@pytest.mark.parametrize("price", [0, 0.0001, 4, 99])
def test_an_implausible_price_is_set_aside_with_a_warning(refresh, price):
    result, stored = refresh(reply(priced(price)))
    assert result.code == 0, result.err
    assert "warning: the price list gives Nano-Banana " in result.err and "set aside" in result.err
    assert set(json.loads(stored.read_text())["hiapi"]) == {"Nano-Banana-2"}


def test_a_plausible_price_change_is_taken(refresh):
    result, stored = refresh(reply(priced(0.05)))
    assert result.code == 0 and "warning" not in result.err
    assert json.loads(stored.read_text())["hiapi"]["Nano-Banana"] == 0.05
