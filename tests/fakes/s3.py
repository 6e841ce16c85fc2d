"""moto's S3 server on loopback, one per test process: the remote cache of the tests.

moto keeps what its server holds in module state (one store per process, whatever the number
of servers), so tests keep apart by bucket name, never by server, and one server serves them
all. A server per test cost each test about a second: moto builds its S3 app again for every
server, and stopping one waits out werkzeug's half-second shutdown poll.

    endpoint()            the server's URL (started on first use; a daemon thread)
    with watching(f): ... f(environ) is called for each request the server receives meanwhile
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

Watcher = Callable[[dict[str, Any]], None]

_lock = threading.Lock()
_endpoint: str | None = None
_watchers: list[Watcher] = []


def endpoint() -> str:
    """The URL of this process's moto S3 server."""
    global _endpoint
    with _lock:
        if _endpoint is None:
            from moto.server import ThreadedMotoServer

            logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per S3 request
            server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
            server.start()
            served = server._server.app  # werkzeug asks its server for the app at each request

            def watched(environ, start_response):
                for watcher in list(_watchers):
                    watcher(environ)
                return served(environ, start_response)
            server._server.app = watched
            host, port = server.get_host_and_port()
            _endpoint = f"http://{host}:{port}"
        return _endpoint


@contextmanager
def watching(watcher: Watcher) -> Iterator[None]:
    """`watcher(environ)` for every request the server receives inside the block."""
    endpoint()
    _watchers.append(watcher)
    try:
        yield
    finally:
        _watchers.remove(watcher)
