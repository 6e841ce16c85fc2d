"""What both HTTP backends share: retries, safe downloads, image checks, key hygiene.

Foreign errors (httpx, JSON, Pillow) are translated here and in the backend modules, once:
nothing outside `backends/` sees httpx.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt
from tenacity.wait import wait_random_exponential

from nbpipe.backends.base import Sink
from nbpipe.errors import FrameFailed, UsageError

T = TypeVar("T")
MAX_SERVER_DELAY = 120.0  # never sleep longer than this on a server's Retry-After


def api_key(env: dict[str, str], names: tuple[str, ...], backend: str) -> str:
    """The first key set among `names`, or a usage error that says how to go on without one."""
    key = next((env[v] for v in names if env.get(v)), None)
    if not key:
        raise UsageError(f"{names[0]} is not set, so nothing can be rendered on {backend}",
                         f"set {names[0]} (or {names[1]}), or build offline with "
                         "--backend preview")
    return key


def env_number(env: dict[str, str], name: str, default: float) -> float:
    try:
        return float(env[name]) if env.get(name) else default
    except ValueError:
        raise UsageError(f"{name} must be a number, not {env[name]!r}") from None


class RateLimiter:
    """At most `rpm` requests a minute, spaced evenly (no burst at each minute's start)."""

    def __init__(self, rpm: int | None):
        self.interval = 60.0 / rpm if rpm else 0.0
        self._next = 0.0

    async def wait(self) -> None:
        if not self.interval:
            return
        now = asyncio.get_running_loop().time()
        at = max(now, self._next)
        self._next = at + self.interval
        if at > now:
            await asyncio.sleep(at - now)


class HttpBackend:
    """What both HTTP backends hold: their settings, one pooled client, a rate limiter."""

    name = ""

    def __init__(self, settings: Any, client: httpx.AsyncClient,
                 limiter: RateLimiter | None = None):
        self.settings = settings
        self.client = client
        self.limiter = limiter or RateLimiter(None)

    async def aclose(self) -> None:
        await self.client.aclose()


class Retryable(Exception):
    """An attempt that may succeed if repeated; `delay` is the server's wish, if it said one."""

    def __init__(self, message: str, delay: float | None = None):
        super().__init__(message)
        self.delay = delay


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries with jittered exponential backoff (tests shrink the times)."""

    attempts: int = 5
    base: float = 1.0
    cap: float = 30.0

    async def run(self, attempt: Callable[[], Awaitable[T]]) -> T:
        backoff = wait_random_exponential(multiplier=self.base, max=self.cap)

        def wait(state: Any) -> float:
            exc = state.outcome.exception()
            if isinstance(exc, Retryable) and exc.delay is not None:
                return min(max(exc.delay, 0.0), MAX_SERVER_DELAY)
            return backoff(state)

        try:
            async for tried in AsyncRetrying(retry=retry_if_exception_type(Retryable),
                                             stop=stop_after_attempt(self.attempts), wait=wait,
                                             reraise=True):
                with tried:
                    return await attempt()
        except Retryable as exc:
            raise FrameFailed(f"gave up after {self.attempts} attempts: {exc}",
                              retry_later=True) from None
        raise AssertionError("unreachable")  # pragma: no cover


def retry_after(headers: httpx.Headers) -> float | None:
    """Retry-After in seconds, from either of its forms (seconds, or an HTTP date)."""
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, when.timestamp() - time.time())


def json_body(response: httpx.Response) -> dict:
    """The response's JSON object, or FrameFailed: a body that is not JSON is a failed frame."""
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise FrameFailed(f"the server answered HTTP {response.status_code} with a body that is "
                          "not JSON") from None
    if not isinstance(body, dict):
        raise FrameFailed(f"the server answered HTTP {response.status_code} with JSON that is "
                          "not an object")
    return body


def short(text: Any, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def redact(text: str, secret: str | None) -> str:
    """Server messages sometimes echo the key back; it never leaves this function."""
    return text.replace(secret, "[redacted]") if secret else text


class DownloadGone(Exception):
    """The output URL answered 403/404/410: expired or revoked."""


async def download(client: httpx.AsyncClient, url: str, sink: Sink, max_bytes: int,
                   total_timeout: float) -> int:
    """Stream `url` into the sink, refusing non-http(s) URLs, oversized and endless bodies."""
    if not url.lower().startswith(("https://", "http://")):
        raise FrameFailed(f"refused to download from a non-http(s) URL ({short(url, 60)})")
    size = 0
    try:
        async with asyncio.timeout(total_timeout):
            async with client.stream("GET", url) as response:
                if response.status_code in (403, 404, 410):
                    raise DownloadGone(f"HTTP {response.status_code}")
                if response.status_code >= 500:
                    raise Retryable(f"download answered HTTP {response.status_code}",
                                    retry_after(response.headers))
                if response.status_code != 200:
                    raise FrameFailed(f"download answered HTTP {response.status_code}")
                declared = int(response.headers.get("content-length") or 0)
                if declared > max_bytes:
                    raise FrameFailed(f"the image is {declared:,} bytes, over the "
                                      f"{max_bytes:,}-byte cap")
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > max_bytes:
                        raise FrameFailed(f"the image passed the {max_bytes:,}-byte cap")
                    sink.write(chunk)
    except TimeoutError:
        raise Retryable(f"download took longer than {total_timeout:.0f} s") from None
    except httpx.TooManyRedirects:
        raise FrameFailed("the download URL redirected too many times") from None
    except httpx.TransportError as exc:
        raise Retryable(f"download failed: {type(exc).__name__}") from None
    return size


def network_error(exc: httpx.TransportError, request_sent_safe: bool) -> Exception:
    """Translate a transport failure: retry when repeating cannot bill twice, else fail."""
    what = type(exc).__name__
    if request_sent_safe or isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
        return Retryable(f"network error ({what})")
    return FrameFailed(f"network error ({what}) after the request was sent; not retried, "
                       "since the outcome is unknown and a retry could be billed twice",
                       maybe_billed=True)
