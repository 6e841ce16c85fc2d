"""A loopback HTTP server on a thread, and the scripted faults both fakes understand."""

from __future__ import annotations

import hashlib
import io
import json
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


def image_bytes(fmt: str, seed: str, size: tuple[int, int] = (64, 48)) -> bytes:
    """A small real image in `fmt` (png | jpeg), different for each seed."""
    from PIL import Image

    colour = tuple(hashlib.sha256(seed.encode()).digest()[:3])
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, "JPEG" if fmt in ("jpeg", "jpg") else "PNG")
    return out.getvalue()


class Faults:
    """Scripted faults per endpoint, consumed in order: faults.add("create", "429", "503")."""

    def __init__(self):
        self._queues: dict[str, deque] = defaultdict(deque)
        self.lock = threading.Lock()

    def add(self, endpoint: str, *faults: str) -> None:
        with self.lock:
            self._queues[endpoint].extend(faults)

    def clear(self, endpoint: str) -> None:
        with self.lock:
            self._queues[endpoint].clear()

    def next(self, endpoint: str) -> str | None:
        with self.lock:
            queue = self._queues[endpoint]
            return queue.popleft() if queue else None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    fake: FakeServer
    gzip_lie = False  # label the next reply `Content-Encoding: gzip` without compressing it
    reason: str | None = None  # the next reply's status-line reason phrase, if not the usual

    def log_message(self, *args: Any) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:
        self.fake.serve(self, "GET")

    def do_POST(self) -> None:
        self.fake.serve(self, "POST")

    def do_DELETE(self) -> None:  # the Gemini Batch and Files APIs delete resources
        self.fake.serve(self, "DELETE")

    def do_PUT(self) -> None:  # fal's queue cancels a request with PUT
        self.fake.serve(self, "PUT")

    # helpers for the fakes
    def body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def query(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}

    def route(self) -> str:
        return urlsplit(self.path).path

    def send(self, status: int, payload: Any = None, headers: dict | None = None,
             raw: bytes | None = None, content_type: str = "application/json") -> None:
        data = raw if raw is not None else json.dumps(payload).encode()
        self.send_response(status, self.reason)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        if self.gzip_lie:
            self.send_header("Content-Encoding", "gzip")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def redirect(self, location: str, status: int = 307) -> None:
        self.send(status, raw=b"", headers={"Location": location})

    def drop(self) -> None:
        """Close the connection without any reply (a lost response)."""
        self.close_connection = True
        try:
            self.connection.shutdown(2)
        except OSError:
            pass

    def drip(self, data: bytes, seconds: float) -> None:
        """Send headers, then the body a byte at a time, slowly (a slow-drip server)."""
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        deadline = time.monotonic() + seconds
        for byte in data:
            if time.monotonic() > deadline:
                break
            try:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
            except OSError:
                return
            time.sleep(0.05)
        self.drop()


class Holds:
    """Points where a fake keeps a request (or a task) waiting until the test releases it, so a
    test decides when a reply comes: never a clock, whatever the load on the machine.

        fake.holds.hold("POST /v1/tasks", after=3)  # let three creates through, hold the rest
        fake.holds.wait_held("POST /v1/tasks", 1)    # the command is now waiting right there
        fake.holds.release()                         # every point opens, now and later

    A point is a prefix of the label the fake passes: "METHOD /route" for every request
    (`FakeServer.serve`), or a name of the fake's own ("tasks" for HiAPI tasks to finish,
    "reply" for a billed Gemini reply)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._closed: dict[str, int] = {}  # point → how many more may pass before it holds
        self._waiting: Counter[str] = Counter()  # point → requests held there now
        self._held: Counter[str] = Counter()  # point → requests ever held there

    def hold(self, point: str, after: int = 0) -> None:
        """Hold everything that reaches `point`, once `after` more have gone through."""
        with self._cond:
            self._closed[point] = after

    def release(self, point: str | None = None) -> None:
        """Open `point` (every point if None): what waits there goes on, and so will the rest."""
        with self._cond:
            if point is None:
                self._closed.clear()
            else:
                self._closed.pop(point, None)
            self._cond.notify_all()

    def holding(self, label: str) -> bool:
        """Whether `label` would be held now (for state a fake keeps, as a task's status)."""
        with self._cond:
            return self._point(label) is not None

    def passing(self, label: str) -> None:
        """Called by a fake at `label`: wait there while a point holds it."""
        with self._cond:
            point = self._point(label, passing=True)
            if point is None:
                return
            self._waiting[point] += 1
            self._held[point] += 1
            self._cond.notify_all()
            try:
                # the guard only ends a wait that a failed test would leave forever
                self._cond.wait_for(lambda: point not in self._closed, timeout=600)
            finally:
                self._waiting[point] -= 1
                self._cond.notify_all()

    def waiting(self, point: str) -> int:
        with self._cond:
            return self._waiting[point]

    def wait_held(self, point: str, count: int = 1, timeout: float = 120,
                  unless=lambda: False) -> None:
        """Return once `count` requests wait at `point` (or `unless()` is true: say a command
        ended). The timeout only fails a test that would otherwise hang."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._waiting[point] < count and not unless():
                left = deadline - time.monotonic()
                assert left > 0, f"nothing held at {point!r}: {dict(self._waiting)}"
                self._cond.wait(min(left, 0.05))  # unless() is polled; held requests notify

    def _point(self, label: str, passing: bool = False) -> str | None:
        for point, after in self._closed.items():
            if label.startswith(point):
                if after > 0:
                    if passing:
                        self._closed[point] = after - 1
                    continue
                return point
        return None


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that hang up (timeouts, kill -9) are part of the tests


class FakeServer:
    """Runs `dispatch` for every request on a loopback port; counts what it saw."""

    def __init__(self):
        self.faults = Faults()
        self.holds = Holds()
        self.active = 0  # requests being served now (see wait_idle)
        self._idle = threading.Condition()
        self.counts: Counter = Counter()
        self.lock = threading.Lock()
        handler = type("BoundHandler", (Handler,), {"fake": self})
        self.httpd = _QuietServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        # shutdown() waits for the loop's next poll: 0.5 s by default, at every test's end
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,),
                                       daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def count(self, what: str) -> None:
        with self.lock:
            self.counts[what] += 1

    def __enter__(self) -> FakeServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.holds.release()  # nothing stays held past the test
        self.httpd.shutdown()
        self.httpd.server_close()

    def serve(self, request: Handler, method: str) -> None:
        """Every request: wait while a hold at "METHOD /route" keeps it, then dispatch."""
        request.gzip_lie, request.reason = False, None  # one handler serves a whole connection
        with self._idle:
            self.active += 1
        try:
            self.holds.passing(f"{method} {request.route()}")
            self.dispatch(request, method)
        finally:
            with self._idle:
                self.active -= 1
                self._idle.notify_all()

    def wait_idle(self, timeout: float = 120) -> None:
        """Return once no request is being served (say, those a release let go have ended)."""
        with self._idle:
            assert self._idle.wait_for(lambda: self.active == 0, timeout), "the fake stays busy"

    def dispatch(self, request: Handler, method: str) -> None:
        raise NotImplementedError


class Elsewhere(FakeServer):
    """Another origin a reply may redirect to. It records the credentials each request carried
    (an API call should never arrive at all); `files(path)` serves it as a CDN would."""

    def __init__(self, files: Callable[[str], bytes | None] = lambda path: None):
        super().__init__()
        self.seen: list[dict[str, str]] = []
        self.files = files

    def dispatch(self, request: Handler, method: str) -> None:
        self.count("requests")
        with self.lock:
            self.seen.append({k.lower(): v for k, v in request.headers.items()
                              if k.lower() in ("authorization", "x-goog-api-key", "cookie")})
        request.body()
        data = self.files(request.route())
        if data is None:
            return request.send(404, {"error": "nothing here"})
        request.send(200, raw=data, content_type="image/png")


# Replies that are plausible on the wire and wrong in shape: each fake serves these on request
# (fault "malformed:NAME"); a client must turn every one into a failed frame, never a crash.
DEEP_JSON = b"[" * 100_000 + b"]" * 100_000
BIG_NUMBER = b'{"code": 200, "data": ' + b"9" * 4301 + b"}"  # one past int()'s digit limit
