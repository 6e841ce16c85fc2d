"""What both HTTP backends share: retries, safe downloads, image checks, key hygiene.

Foreign errors (httpx, JSON, Pillow) are translated here and in the backend modules, once:
nothing outside `backends/` sees httpx.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import ipaddress
import math
import socket
import time
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type
from tenacity.wait import wait_random_exponential

from nbpipe.backends.base import Sink
from nbpipe.backends.replies import ReplyProblem, parse_json, scrub
from nbpipe.errors import BuildStopped, FrameFailed, UsageError

if TYPE_CHECKING:
    from nbpipe.settings import Secret, Settings

T = TypeVar("T")
RETRY_DEADLINE_VAR = "NBPIPE_RETRY_DEADLINE"
DEFAULT_RETRY_DEADLINE = 300.0  # seconds for every attempt at one call, sleeps included
MAX_REDIRECTS = 5  # download hops; API calls follow none


def api_key(key: Secret | None, names: tuple[str, ...], backend: str) -> str:
    """The key's text, or a usage error that says how to go on without one (`names`: the
    variables that may hold it, from the backend's spec)."""
    if key is None:
        others = f" (or {', '.join(names[1:])})" if len(names) > 1 else ""
        raise UsageError(f"{names[0]} is not set, so nothing can be rendered on {backend}",
                         f"set {names[0]}{others}, or build offline with --backend preview")
    return key.reveal()


def pooled_client(jobs: int, read: float = 120.0) -> httpx.AsyncClient:
    """The one HTTP client a backend sends through, pooled for `jobs` frames in flight;
    `read`: seconds the server may stay silent."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(connect=15.0, read=read, write=60.0, pool=None),
        transport=Routed(httpx.Limits(max_connections=max(4, jobs * 2))), trust_env=False,
        follow_redirects=False)  # see HttpBackend.exchange and http.download


class Routed(httpx.AsyncBaseTransport):
    """Each request sent directly or through the environment's proxy as `proxy_for` decides,
    the decision `check_peer` makes too: httpx's own reading of NO_PROXY differs from
    urllib's (a leading dot, its `all://*.host` form), and a peer judged on the wrong reading
    is the proxy (every download refused) or goes unjudged (DNS rebinding unchecked)."""

    limits: httpx.Limits
    direct: httpx.AsyncHTTPTransport
    proxies: dict[str, httpx.AsyncHTTPTransport]  # by proxy URL, made when first used

    def __init__(self, limits: httpx.Limits):
        self.limits = limits
        self.direct = httpx.AsyncHTTPTransport(limits=limits)
        self.proxies: dict[str, httpx.AsyncHTTPTransport] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self.transport_for(request.url).handle_async_request(request)

    def transport_for(self, url: httpx.URL) -> httpx.AsyncHTTPTransport:
        proxy = proxy_for(url)
        if proxy is None:
            return self.direct
        if proxy not in self.proxies:
            self.proxies[proxy] = httpx.AsyncHTTPTransport(proxy=proxy, limits=self.limits)
        return self.proxies[proxy]

    async def aclose(self) -> None:
        for transport in (self.direct, *self.proxies.values()):
            await transport.aclose()


class RateLimiter:
    """At most `rpm` requests a minute, spaced evenly (no burst at each minute's start)."""

    interval: float  # seconds between two requests; 0: no limit
    _next: float  # when the next request may go (the loop's clock)

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


@dataclass(frozen=True)
class Form:
    """A multipart/form-data body: text fields, then files as (field, (name, bytes, type))."""

    fields: dict[str, str]
    files: list[tuple[str, tuple[str, bytes, str]]]


@dataclass(frozen=True)
class Answer:
    """A server's reply as a backend reads it. The body is parsed and scrubbed of the key;
    `problem` says why there is no body (not JSON, too big). Nothing here came from the
    server unscrubbed, so nothing built from it can carry the key further."""

    status: int
    reason: str
    delay: float | None  # Retry-After, in seconds
    body: Any = None
    problem: str | None = None
    replayed: bool = False  # `Idempotent-Replay: true`: the original reply, nothing new billed


class HttpBackend:
    """What both HTTP backends hold: their settings, one pooled client, a rate limiter, and
    the one way they talk to their API (`exchange`)."""

    name = ""
    label = ""  # the service, as messages name it
    base_var = ""  # the variable that points nbpipe at it
    repeatable = True  # may a request whose reply was lost be sent again without paying twice?
    settings: Any  # each backend's own settings type (HiApiSettings, GeminiSettings)
    client: httpx.AsyncClient
    limiter: RateLimiter
    account: str | None  # a digest of the API key (account_of), never the key

    def __init__(self, settings: Any, client: httpx.AsyncClient,
                 limiter: RateLimiter | None = None):
        self.settings = settings
        self.client = client
        self.limiter = limiter or RateLimiter(None)
        self.account = account_of(settings.api_key)

    async def aclose(self) -> None:
        await self.client.aclose()

    async def exchange(self, method: str, url: str, headers: dict[str, str],
                       body: dict[str, object] | str | None = None,
                       form: Form | None = None, repeatable: bool | None = None) -> Answer:
        """Send one API request and read its reply, translating every httpx failure. `body`
        goes as JSON (a str: its exact bytes); `form` as multipart/form-data instead.
        `repeatable` says of this request what the backend's `repeatable` says of its own.

        Redirects are refused, whatever their origin: the documented APIs never redirect, a
        redirected POST is ambiguous about what was billed, and following one would carry the
        key (httpx strips Authorization across origins, but not x-goog-api-key).
        """
        await self.limiter.wait()
        secret = self.settings.api_key
        safe = self.repeatable if repeatable is None else repeatable
        content, payload = (body.encode(), None) if isinstance(body, str) else (None, body)
        if content is not None:  # exact wire bytes (a journalled create is resent as it was)
            headers = {**headers, "Content-Type": "application/json"}
        try:
            async with asyncio.timeout(self.settings.call_timeout), \
                    self.client.stream(method, url, follow_redirects=False, content=content,
                                       json=payload, headers=headers,
                                       data=form.fields if form else None,
                                       files=form.files if form else None) as response:
                if 300 <= response.status_code < 400:
                    raise FrameFailed(self._redirect_refused(response))
                raw, problem = await _read_reply(response, 2 * self.settings.max_bytes + (1 << 20))
        except httpx.TransportError as exc:
            raise network_error(exc, safe) from None
        except TimeoutError:  # a reply that drips in, each byte within httpx's read timeout
            late = f"{self.label} took over {self.settings.call_timeout:g} s to answer"
            if safe:
                raise ReplyLost(late) from None
            raise FrameFailed(f"{late}; not retried, since the request may have been "
                              "billed", maybe_billed=True) from None
        parsed = None
        if problem is None:
            try:
                parsed = parse_json(raw, secret)
            except ReplyProblem as exc:
                problem = str(exc)
        return Answer(response.status_code, scrub(response.reason_phrase, secret),
                      retry_after(response.headers), parsed, problem,
                      response.headers.get("Idempotent-Replay", "").lower() == "true")

    def endpoint_missing(self, url: str, why: str) -> BuildStopped:
        """A 404 that is not the API's word about what the request names (`why` says how it
        differs): the base URL points somewhere else, so every request would fail alike."""
        return BuildStopped(f"{self.label} endpoint not found at {shown_url(url)} (HTTP 404, "
                            f"{why}); check {self.base_var}")

    def _redirect_refused(self, response: httpx.Response) -> str:
        location = response.headers.get("location")
        try:
            target = response.url.join(location or "")
            where = f"{target.scheme}://{target.netloc.decode('ascii', 'replace')}"
        except (httpx.InvalidURL, UnicodeError):
            where = "an invalid URL"
        if location is None:
            where = "nowhere (no Location)"
        return (f"{self.label} answered HTTP {response.status_code}, a redirect to "
                f"{short(scrub(where, self.settings.api_key), 80)}; API calls follow no "
                f"redirect, so the key goes nowhere else (point {self.base_var} at the API "
                "itself)")


async def _read_reply(response: httpx.Response, cap: int) -> tuple[bytes, str | None]:
    """The whole body, or what is wrong with it: over `cap` bytes once decoded (a gzip bomb
    stops here too), or not in the Content-Encoding it claims. The status still counts."""
    chunks, size = [], 0
    try:
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > cap:
                return b"", f"a body over the {cap:,}-byte cap"
            chunks.append(chunk)
    except httpx.DecodingError:
        return b"", "a body that does not decode as its Content-Encoding says"
    return b"".join(chunks), None


class Retryable(Exception):
    """An attempt that may succeed if repeated; `delay` is the server's wish, if it said one."""

    delay: float | None

    def __init__(self, message: str, delay: float | None = None):
        super().__init__(message)
        self.delay = delay


class NotConnected(Retryable):
    """No connection was made (refused, DNS failure, connect timeout): nothing was sent."""


class ReplyLost(Retryable):
    """The request may have left but no answer came (a dropped connection, a call timeout):
    what it asked for may have been done, and billed."""


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries with jittered exponential backoff (tests shrink the times): at most
    `attempts` tries of one call, all within `deadline` seconds of the first."""

    attempts: int = 5
    base: float = 1.0
    cap: float = 30.0
    deadline: float = DEFAULT_RETRY_DEADLINE

    @staticmethod
    def of(settings: Settings) -> RetryPolicy:
        """The policy both backends use, its times from the settings."""
        return RetryPolicy(base=settings.retry_base, deadline=settings.retry_deadline)

    async def run(self, attempt: Callable[[], Awaitable[T]], deadline: float | None = None,
                  limit: str = "") -> T:
        """`attempt()` until it succeeds or stops being Retryable. A server's Retry-After is
        honoured in full; one that ends past the deadline ends the retries at once (asking
        sooner would only be refused again). `deadline` (time.monotonic()) is the caller's,
        named by `limit`, when it comes before the policy's own."""
        end = time.monotonic() + self.deadline
        why = f"the retry deadline ({RETRY_DEADLINE_VAR}={self.deadline:g} s)"
        if deadline is not None and deadline < end:
            end, why = deadline, limit or "the deadline"
        backoff = wait_random_exponential(multiplier=self.base, max=self.cap)

        def wait(state: RetryCallState) -> float:
            asked = _asked(state.outcome.exception() if state.outcome else None)
            return asked if asked is not None else min(backoff(state), _left(end))

        def stop(state: RetryCallState) -> bool:  # tenacity asks after `wait`
            return state.attempt_number >= self.attempts or \
                _left(end) <= 0 or state.upcoming_sleep > _left(end)

        retrying = AsyncRetrying(retry=retry_if_exception_type(Retryable), stop=stop, wait=wait,
                                 reraise=True)
        try:
            async for tried in retrying:
                with tried:
                    return await attempt()
        except Retryable as failed:
            raise FrameFailed(self._gave_up(retrying.statistics["attempt_number"], failed,
                                            _left(end), why), retry_later=True) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _gave_up(self, tries: int, failed: Retryable, left: float, why: str) -> str:
        gave_up = f"gave up after {tries} attempt{'s' * (tries != 1)}"
        asked = _asked(failed)
        if tries >= self.attempts:
            return f"{gave_up}: {failed}"
        if asked is not None and asked > left > 0:
            return f"{gave_up}: {failed}; it asked to retry in {asked:g} s, past {why}"
        return f"{gave_up}, at {why}: {failed}"


async def pause_until(seconds: float, deadline: float) -> None:
    """Sleep `seconds`, but never past `deadline` (time.monotonic()): it is checked before
    sleeping, not after (a poll loop's pause)."""
    await asyncio.sleep(max(0.0, min(seconds, deadline - time.monotonic())))


def _asked(exc: BaseException | None) -> float | None:
    """The server's Retry-After on a retryable failure, if it gave a usable one."""
    delay = exc.delay if isinstance(exc, Retryable) else None
    return max(delay, 0.0) if delay is not None and math.isfinite(delay) else None


def _left(end: float) -> float:
    return end - time.monotonic()


def retry_after(headers: httpx.Headers) -> float | None:
    """Retry-After in seconds, from either of its forms (seconds, or an HTTP date), or
    OpenAI's `retry-after-ms` (milliseconds, read first, as its SDK does)."""
    millis = headers.get("retry-after-ms")
    try:
        if millis:
            return float(millis) / 1000
    except ValueError:
        pass
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


def account_of(api_key: str) -> str:
    """The account an API key pays from, as the journal may store it: a digest, never the key."""
    return hashlib.sha256(b"nbpipe account\0" + api_key.encode()).hexdigest()[:16]


def shown_url(url: str) -> str:
    """`url` as a message may show it: without user:password (a proxy URL may carry them)
    and without a query."""
    try:
        parsed = httpx.URL(url)
        bare: httpx.URL = parsed.copy_with(username=None, password=None, query=None,
                                           fragment=None)
        return str(bare)
    except (httpx.InvalidURL, TypeError, ValueError):
        return "an invalid URL"


def short(text: object, limit: int = 300) -> str:
    words = " ".join(str(text).split())
    return words if len(words) <= limit else words[: limit - 1] + "…"


class DownloadGone(Exception):
    """The output URL answered 403/404/410: expired or revoked."""


def output_url(url: str) -> httpx.URL:
    """A server-supplied output URL, if it is a valid http(s) URL with a host; else FrameFailed."""
    if not url.lower().startswith(("https://", "http://")):
        raise FrameFailed(f"refused to download from a non-http(s) URL ({short(url, 60)})")
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        parsed = None
    if parsed is None or not parsed.host:
        raise FrameFailed(f"refused to download from an invalid URL ({short(url, 60)})")
    return parsed


class AddressRefused(Exception):
    """An output URL leads to an address nbpipe does not fetch from (see `check_address`)."""


Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def address_kind(address: Address) -> str | None:
    """None for a public address; else the kind of the private one."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"  # 169.254.169.254: the cloud's metadata service, and its keys
    return None if address.is_global and not address.is_multicast else "private"


async def lookup(host: str, port: int) -> list[Address]:
    """Every address `host` resolves to (Retryable when it does not resolve now): the look-up
    `check_address` judges; what a connection reaches is judged again (`check_peer`)."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        found = await asyncio.get_running_loop().getaddrinfo(host, port,
                                                             type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise Retryable(f"download failed: cannot resolve {short(host, 60)} "
                        f"({type(exc).__name__})") from None
    return [ipaddress.ip_address(str(info[4][0]).partition("%")[0]) for info in found]


async def check_address(url: httpx.URL, base_url: str | None) -> None:
    """Refuse an output URL (or a redirect hop) that leads to a loopback, link-local or
    private address, before anything connects: a server's answer must not make nbpipe fetch
    from the machine's own services or the cloud metadata service. Every address the host
    resolves to is checked. A kind the configured base URL itself resolves to is allowed (a
    HiAPI on loopback, as in tests, or on the company network hands out URLs there)."""
    found = await lookup(url.host, url.port or (443 if url.scheme == "https" else 80))
    kinds = {address_kind(a) for a in found} - {None}
    if kinds:
        _refuse(url, kinds - await _allowed(base_url))


async def check_peer(response: httpx.Response, url: httpx.URL, base_url: str | None) -> None:
    """Judge the address the response came from, as `check_address` judged the look-up,
    before its body is read: httpx resolves the host again to connect, and a DNS-rebinding
    server answers a public address to the check and 169.254.169.254 to the connection.

    Why the peer is judged rather than the connection pinned to the address checked (a URL
    with the IP, the host in Host and SNI): httpcore's CONNECT tunnel ignores an SNI
    override (an https download through a proxy would check the IP's certificate), its pool
    keys connections by IP whatever their SNI, and the host's other addresses would go
    untried. Judging the peer covers whatever reached it: a second address, a pooled
    connection. What it does not stop: the GET (no credentials, nothing but the URL) reaches
    the address; its answer is never read. Through a proxy the peer is the proxy, which
    resolves the host itself: only the look-up is judged there."""
    if proxy_for(url) is not None:
        return
    stream = response.extensions.get("network_stream")
    peer = _address(stream.get_extra_info("server_addr") if stream is not None else None)
    if peer is None:
        raise AddressRefused(f"{shown_url(str(url))}: the address it connected to is unknown")
    kind: set[str | None] = {address_kind(peer)} - {None}
    if kind:
        _refuse(url, kind - await _allowed(base_url))


def _refuse(url: httpx.URL, refused: set[str | None]) -> None:
    if refused:
        raise AddressRefused(f"{shown_url(str(url))} resolves to a "
                             f"{' and '.join(sorted(str(k) for k in refused))} address, and "
                             "the base URL does not")


async def _allowed(base_url: str | None) -> set[str | None]:
    """The kinds of address the configured base URL resolves to."""
    if not base_url:
        return set()
    base = httpx.URL(base_url)
    try:
        return {address_kind(a) for a in await lookup(base.host, base.port or 443)}
    except Retryable:
        return set()  # a base URL that does not resolve vouches for no kind


def _address(peer: object) -> Address | None:
    """The IP of a socket's peer address (host, port[, flow, scope]), or None."""
    if not isinstance(peer, tuple) or not peer:
        return None
    try:
        return ipaddress.ip_address(str(peer[0]).partition("%")[0])
    except ValueError:
        return None


def proxy_for(url: httpx.URL) -> str | None:
    """The proxy the environment names for `url` (*_PROXY, less NO_PROXY, read as urllib
    reads them), or None: the one decision `Routed` connects by and `check_peer` judges by."""
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(url.scheme) or proxies.get("all")
    bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]  # no stub
    if not proxy or bypass(url.host, proxies):
        return None
    return proxy if "://" in proxy else f"http://{proxy}"  # `host:port`, as httpx read it


async def download(client: httpx.AsyncClient, url: str, sink: Sink, max_bytes: int,
                   total_timeout: float, base_url: str | None = None) -> int:
    """Stream `url` into the sink, refusing non-http(s) URLs, private addresses (unless
    `base_url` is of their kind: `check_address` before connecting, `check_peer` after),
    oversized and endless bodies.

    Output URLs carry no credentials (nothing but the URL is sent), so redirects are followed,
    here and nowhere else: at most MAX_REDIRECTS hops, each one checked like the first URL.
    """
    target = output_url(url)
    try:
        async with asyncio.timeout(total_timeout):
            for _hop in range(MAX_REDIRECTS + 1):
                await check_address(target, base_url)
                async with client.stream("GET", target, follow_redirects=False) as response:
                    await check_peer(response, target, base_url)
                    if not response.has_redirect_location:
                        return await _save(response, sink, max_bytes)
                    target = output_url(str(response.url.join(response.headers["location"])))
            raise FrameFailed("the download URL redirected too many times")
    except TimeoutError:
        raise Retryable(f"download took longer than {total_timeout:.0f} s") from None
    except httpx.DecodingError:
        raise Retryable("the download does not decode as its Content-Encoding says") from None
    except httpx.TransportError as exc:
        raise Retryable(f"download failed: {type(exc).__name__}") from None


async def _save(response: httpx.Response, sink: Sink, max_bytes: int) -> int:
    if response.status_code in (403, 404, 410):
        raise DownloadGone(f"HTTP {response.status_code}")
    if response.status_code >= 500:
        raise Retryable(f"download answered HTTP {response.status_code}",
                        retry_after(response.headers))
    if response.status_code != 200:
        raise FrameFailed(f"download answered HTTP {response.status_code}")
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise FrameFailed(f"the image is {int(declared):,} bytes, over the {max_bytes:,}-byte cap")
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > max_bytes:
            raise FrameFailed(f"the image passed the {max_bytes:,}-byte cap")
        sink.write(chunk)
    return size


def network_error(exc: httpx.TransportError, request_sent_safe: bool) -> Exception:
    """Translate a transport failure: retry when repeating cannot bill twice, else fail."""
    what = type(exc).__name__
    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
        return NotConnected(f"network error ({what})")
    if request_sent_safe:
        return ReplyLost(f"network error ({what})")
    return FrameFailed(f"network error ({what}) after the request was sent; not retried, "
                       "since the outcome is unknown and a retry could be billed twice",
                       maybe_billed=True)
