"""HiAPI's async task API: POST /v1/tasks, poll GET /v1/tasks/{id}, download output[0].url.

Never pay twice: every create carries an Idempotency-Key derived from the frame key, the take
number and the exact bytes of the body. The body is journalled before it is sent, and a create
replayed after a crash resends those bytes, so HiAPI returns the original task; a body that
differs (an input URL signed again) is a new key, never a permanent IDEMPOTENCY_KEY_MISMATCH.
The task id is reported the moment it is known, and a task that outlives its timeout is resumed
by the next build, never created again.
"""

from __future__ import annotations

import hashlib
import json
import re
import statistics
import time
from collections import deque
from collections.abc import Awaitable, Callable, Container, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import httpx

from nbpipe.backends.base import (
    InputData,
    Job,
    Rendered,
    Sink,
    StoppedMaybeSent,
    TaskStillOut,
)
from nbpipe.backends.http import (
    AddressRefused,
    Answer,
    DownloadGone,
    HttpBackend,
    NotConnected,
    RateLimiter,
    ReplyLost,
    Retryable,
    RetryPolicy,
    api_key,
    download,
    output_url,
    pause_until,
    pooled_client,
    short,
)
from nbpipe.backends.registry import BackendSpec, Inputs, Lane
from nbpipe.backends.replies import (
    TASK_ID,
    HiCreated,
    HiEnvelope,
    HiTask,
    Reply,
    ReplyProblem,
    validate,
)
from nbpipe.errors import BuildStopped, FrameFailed, ImageLost, ModelUnknown, TaskFailed, UsageError
from nbpipe.plan.frame import Request
from nbpipe.settings import Settings, current

R = TypeVar("R", bound=Reply)
PAYLOAD_STYLE = "https URL"
DEFAULT_BASE_URL = "https://api.hiapi.ai"
PRICING_URL = "https://www.hiapi.ai"  # the public price list: no key
KEY_VARS = ("HIAPI_API_KEY", "HIAPI_TOKEN")
RETRYABLE_CODES = {"MODEL_UNAVAILABLE", "STORAGE_UNAVAILABLE", "TASK_TIMEOUT",
                   "IDEMPOTENCY_KEY_PROCESSING"}
MAX_FIRST_POLL = 120.0  # a learned first-poll delay never exceeds this (nor the task timeout)
LEARNED = 25  # durations kept per model: the median of the recent ones is the expectation
CLOSE_POLL = 1 / 4  # seconds: the shortest pause between the polls around a task's expected end
MS_FROM = 1e11  # an expireAt this large is milliseconds: read as seconds, it is the year 5138
OUTPUT_LIFETIME = 6 * 86400.0  # outputs are kept ~7 days; assumed a day shorter, to be safe


def create_body(request: Request, image_urls: list[str],
                mimes: list[str] | None = None) -> dict[str, object]:
    """The POST /v1/tasks body. `resolution` and `image_input` go only to models that take them
    (the resolver has already dropped them elsewhere: a model without tiers answers 400 to
    `resolution`)."""
    task_input: dict[str, object] = {"prompt": request.prompt, **request.params}
    if image_urls:
        task_input["image_input"] = list(image_urls)
    return {"model": request.model, "input": task_input}


def wire(body: dict[str, object]) -> str:
    """The bytes a create sends (and the journal keeps, to resend exactly)."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


def would_send(body: str, request: Request, inputs: Sequence[Container[str]]) -> bool:
    """Whether `body`, journalled by an earlier build, is the create a build would send for
    `request` now. The journal sits in a cache others may write (a team disk, a CI cache
    restore): a body resent from it is paid from this build's key, so it must be this build's
    own, byte for byte. Only the input images' URLs may differ (they are signed anew for each
    build; their images are in the key), and each only to a URL this build would send for that
    input (`inputs`, one per input image): another URL would make the paid image from an image
    that is not the frame's."""
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        return False
    task_input = doc.get("input") if isinstance(doc, dict) else None
    urls = task_input.get("image_input", []) if isinstance(task_input, dict) else None
    if not isinstance(urls, list) or len(urls) != len(inputs) or \
            not all(isinstance(url, str) and url in known
                    for url, known in zip(urls, inputs, strict=False)):
        return False
    return wire(create_body(request, urls)) == body


def idempotency_key(frame_key: str, take: int, body: str) -> str:
    digest = hashlib.sha256(body.encode()).hexdigest()[:16]
    return f"nbpipe-{frame_key}-{take}-{digest}"


@dataclass(frozen=True)
class HiApiSettings:
    """Where and how to talk to HiAPI; from the Settings (`of`), tests shrink the times."""

    api_key: str
    base_url: str = DEFAULT_BASE_URL
    poll_delay: float = 5.0  # first poll after this; a render takes 10-60 s
    poll_interval: float = 3.0
    task_timeout: float = 600.0  # then the frame fails and its task is resumed next build
    max_bytes: int = 64 << 20
    download_timeout: float = 300.0  # for the whole body: a slow drip cannot hang a build
    call_timeout: float = 60.0  # for one API call, reply included (HiAPI answers at once)
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    @staticmethod
    def of(settings: Settings) -> HiApiSettings:
        """HiAPI's part of the settings; UsageError when no key is set."""
        key = api_key(settings.hiapi_key, KEY_VARS, "hiapi")
        base = (settings.hiapi_base_url or DEFAULT_BASE_URL).rstrip("/").removesuffix("/v1")
        return HiApiSettings(
            api_key=key, base_url=base,
            poll_delay=settings.hiapi_poll_delay,
            poll_interval=settings.hiapi_poll_interval,
            task_timeout=settings.hiapi_timeout,
            max_bytes=settings.max_image_bytes,
            download_timeout=settings.download_timeout,
            call_timeout=settings.call_timeout or 60.0,
            retry=RetryPolicy.of(settings))


# Answers to a create that say HiAPI processed nothing: busy with the same key, rate limit,
# unavailable (api-facts.md); the create is retried.
NOT_PROCESSED = frozenset({409, 429, 503})

class HiApiBackend(HttpBackend):
    name = "hiapi"
    label = "HiAPI"
    base_var = "HIAPI_BASE_URL"
    repeatable = True  # polls are GETs, and every create carries its Idempotency-Key
    settings: HiApiSettings
    _latency: dict[str, deque[float]]  # model → recent completed - created

    def __init__(self, settings: HiApiSettings, client: httpx.AsyncClient,
                 limiter: RateLimiter | None = None):
        super().__init__(settings, client, limiter)
        self._latency = {}

    def expected(self, model: str) -> float | None:
        """How long this model's tasks typically take: the median of what HiAPI reported for
        its recent tasks (their own `created`/`completed` stamps); None before three are known.
        The stamps are the server's word, so what is learned from them is bounded: by
        MAX_FIRST_POLL and by the task timeout (a server answering milliseconds must not make a
        task sleep decades)."""
        seen = self._latency.get(model)
        if not seen or len(seen) < 3:
            return None
        typical: float = statistics.median(seen)
        return min(typical, MAX_FIRST_POLL, self.settings.task_timeout)

    def _learn(self, model: str, task: HiTask) -> None:
        created, completed = task.created, task.completed
        if created is not None and completed is not None and completed >= created > 0:
            self._latency.setdefault(model, deque(maxlen=LEARNED)).append(completed - created)

    def durations(self) -> dict[str, list[float]]:
        return {model: list(seen) for model, seen in self._latency.items()}

    def recall(self, durations: Mapping[str, Sequence[float]]) -> None:
        """Start from what earlier builds learned (read from the state: bounded at use, like
        what the server says); what this build learns is added after it."""
        for model, seen in durations.items():
            self._latency[model] = deque(seen, maxlen=LEARNED)

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.settings.api_key}", "Accept": "application/json"}

    async def render(self, request: Request, inputs: list[InputData], sink: Sink,
                     job: Job) -> Rendered:
        task_id = job.resume_task
        if task_id is not None and not re.fullmatch(TASK_ID, task_id):  # from state on disk
            raise TaskFailed(f"the task to resume, {short(task_id, 60)!r}, is not a HiAPI "
                             "task id")
        if task_id is None:
            body = job.body or wire(create_body(request, [_url_of(i) for i in inputs]))
            job.on_send(body)  # durable before the first byte leaves
            key = idempotency_key(str(request.key), job.take, body)
            attempts: list[bool] = []  # one per create that reached HiAPI: a replay?
            task_id = await send_create(self.settings.retry,
                                        lambda: self._create(body, key, attempts),
                                        first=job.body is None)
            if job.body is None and attempts and all(attempts):
                # Every create that HiAPI processed was answered as a replay, and no earlier
                # build of ours sent this body: the task is another build's (said before the
                # task id, so a crash between the two never counts it as ours). A create
                # whose reply was lost (False) may be the one that made it: then it is ours.
                job.on_replayed()
            elif attempts and not attempts[-1]:
                job.on_created()  # a new task, billed now to this build's account
            job.on_task(task_id)
        # A task left by an earlier build has usually finished long ago: look at once.
        pauses = poll_pauses(0.0, None, self.settings.poll_interval) if job.resume_task else \
            poll_pauses(self.settings.poll_delay, self.expected(request.model),
                        self.settings.poll_interval)
        task = await self._wait(task_id, pauses)
        job.on_finished()  # the task's slot can go to the next frame while this one downloads
        self._learn(request.model, task)
        url, expires = _output(task, task_id)
        try:
            await self.settings.retry.run(lambda: self._download(url, sink))
        except DownloadGone as gone:
            try:  # the URL may have been renewed
                task = await self.settings.retry.run(lambda: self._task(task_id))
            except TaskUnknown as exc:
                raise ImageLost(f"task {task_id} succeeded (paid) but its output URL is gone "
                                f"({gone}) and HiAPI no longer knows the task ({exc})") from None
            url, expires = _output(task, task_id)
            try:
                await self.settings.retry.run(lambda: self._download(url, sink))
            except DownloadGone as exc:
                raise ImageLost(f"task {task_id} succeeded (paid) but its output URL is gone "
                                f"({exc}); HiAPI keeps outputs about 7 days") from None
        return Rendered(task_id=task_id, url=url, url_expires=expires)

    async def _download(self, url: str, sink: Sink) -> None:
        truncate = getattr(sink, "truncate", None)
        if truncate is not None:
            truncate()  # a retried download starts again from the first byte
        try:
            await download(self.client, url, sink, self.settings.max_bytes,
                           self.settings.download_timeout, self.settings.base_url)
        except AddressRefused as exc:
            # The image is paid: closing the entry would make the next build pay for a new
            # task whose URL this server would hand out just the same. Kept open (the frame
            # ends `left`), each later build polls it for free and collects it once HiAPI
            # hands out a URL on a public address.
            raise TaskStillOut(f"refused to download the task's image: {exc}; the task is "
                               "paid, so it stays in the journal for a later build to "
                               "collect") from None

    async def _create(self, body: str, key: str, attempts: list[bool]) -> str:
        url = f"{self.settings.base_url}/v1/tasks"
        attempts.append(False)
        try:
            answer = await self.exchange("POST", url,
                                         {**self._headers(), "Idempotency-Key": key}, body)
        except NotConnected:
            attempts.pop()  # nothing reached HiAPI: this attempt made no task of ours
            raise
        attempts[-1] = answer.replayed
        if answer.status in NOT_PROCESSED:
            attempts.pop()  # HiAPI says it made nothing of this attempt (it is retried)
        if answer.status == 404:
            if _said_by_hiapi(answer) is None:
                raise self.endpoint_missing(url, NOT_HIAPI)
            # HiAPI's own 404 to a create: the model is the only thing it names
            raise ModelUnknown("HiAPI", str(json.loads(body).get("model")))
        created = self._data(answer, HiCreated)
        if created is None:
            raise FrameFailed("HiAPI accepted the task but sent no taskId")
        return created.taskId

    async def _task(self, task_id: str) -> HiTask:
        url = f"{self.settings.base_url}/v1/tasks/{task_id}"
        answer = await self.exchange("GET", url, self._headers())
        if answer.status == 404:
            envelope = _said_by_hiapi(answer)
            if envelope is None:
                raise self.endpoint_missing(url, NOT_HIAPI)
            code = f" {short(envelope.error_code, 60)}" if envelope.error_code else ""
            raise TaskUnknown(f"HTTP 404{code}: {short(envelope.message or answer.reason)}")
        task = self._data(answer, HiTask)
        if task is None:
            raise FrameFailed(f"task {task_id}: the reply holds no task")
        return task

    async def _wait(self, task_id: str, pauses: Iterator[float]) -> HiTask:
        deadline = time.monotonic() + self.settings.task_timeout
        await pause_until(next(pauses), deadline)
        unknown = 0
        while True:
            try:
                task = await self.settings.retry.run(
                    lambda: self._task(task_id), deadline,
                    f"the task timeout (NBPIPE_HIAPI_TIMEOUT={self.settings.task_timeout:g} s)")
            except TaskUnknown as exc:
                # Documented: another account's task answers 404; HiAPI may also drop old
                # tasks. Asked twice (a task just created might not be visible yet), it is
                # out of this key's reach for good: resuming it at every build would loop.
                unknown += 1
                if unknown >= 2:
                    raise ImageLost(f"HiAPI no longer knows task {task_id} ({exc}): it was "
                                    "created with another account's key, or HiAPI dropped it; "
                                    "if it had succeeded, its image is lost") from None
                await pause_until(next(pauses), deadline)
                continue
            unknown = 0
            if task.status == "success":
                return task
            if task.status == "fail":
                code, words = (task.error.code, task.error.message) if task.error else ("", "")
                raise TaskFailed(f"task {task_id} failed: {short(code or 'unknown', 60)}: "
                                 f"{short(words or '')}")
            if time.monotonic() >= deadline:  # queued, handling, archiving, or one we don't know
                raise TaskStillOut(f"task {task_id} is still {short(task.status, 40)} after "
                                   f"{self.settings.task_timeout:.0f} s; the next build resumes "
                                   "it without paying again")
            await pause_until(next(pauses), deadline)

    def _data(self, answer: Answer, model: type[R]) -> R | None:
        """The reply's `data` as `model`, or the error its status and envelope call for."""
        status = answer.status
        if status == 200:
            try:  # a proxy's error page or a mangled body: ask again (GETs and keyed POSTs)
                if answer.problem:
                    raise ReplyProblem(answer.problem)
                reply: HiEnvelope[R] = validate(
                    HiEnvelope[model], answer.body)  # type: ignore[valid-type]  # pydantic generics take a runtime type
                return reply.data
            except ReplyProblem as exc:
                raise Retryable(f"HiAPI answered HTTP 200 with {exc}") from None
        envelope = _envelope(answer) or HiEnvelope[object]()  # else the status alone decides
        code = envelope.error_code
        kind = f"{status} {short(code, 60)}" if code else str(status)
        message = short(envelope.message or answer.reason)
        if status in (401, 403):
            raise BuildStopped(f"HiAPI refused the key (HTTP {status}: {message}); "
                               "check HIAPI_API_KEY")
        if status == 402:
            raise BuildStopped(f"HiAPI says the balance is insufficient (HTTP 402: {message}); "
                               "what was rendered so far is kept")
        if status in (409, 429) or code in RETRYABLE_CODES or status >= 500:
            raise Retryable(f"HiAPI answered HTTP {kind}: {message}", answer.delay)
        raise FrameFailed(f"HiAPI rejected the request (HTTP {kind}): {message}")


NOT_HIAPI = "not an error reply of HiAPI's"


class TaskUnknown(Exception):
    """HiAPI itself answered 404 to a poll: this key cannot see the task (its words say why)."""


def _envelope(answer: Answer) -> HiEnvelope[object] | None:
    try:
        return validate(HiEnvelope[object], answer.body)
    except ReplyProblem:
        return None


def _said_by_hiapi(answer: Answer) -> HiEnvelope[object] | None:
    """The error envelope, if HiAPI sent it: its `code` equals the HTTP status. A 404 without
    one comes from something else at the base URL (a proxy, another service, a wrong path)."""
    envelope = _envelope(answer)
    return envelope if envelope is not None and envelope.code == answer.status else None


async def send_create(retry: RetryPolicy, create: Callable[[], Awaitable[str]],
                      first: bool) -> str:
    """Send a create (retried by `retry`): its task id. If no attempt ever connected (refused,
    DNS failure, connect timeout) and no earlier build sent this body (`first`), nothing was
    sent: the failure says so and is final for this take, so its journal entry is closed, not
    kept as a create whose reply was lost for the next build to resend and wait on. If an
    attempt lost its reply, the create may exist (and be paid) whatever the later attempts were
    told: the failure says so, so the entry stays open for the next build to resend."""
    connected = lost = False

    async def attempt() -> str:
        nonlocal connected, lost
        try:
            return await create()
        except NotConnected:
            raise
        except ReplyLost:
            connected = lost = True
            raise
        except BaseException:
            connected = True  # bytes may have left: the create may exist
            raise

    try:
        return await retry.run(attempt)
    except FrameFailed as exc:
        if lost and not (exc.retry_later or exc.maybe_billed):
            raise FrameFailed(f"{exc}; an earlier attempt lost its reply, so its task may "
                              "exist: the next build resends it under the same "
                              "Idempotency-Key", retry_later=True) from exc
        if first and not connected and exc.retry_later:
            raise FrameFailed(f"HiAPI could not be reached, so nothing was sent ({exc})") \
                from None
        raise
    except BuildStopped as exc:
        if lost:
            raise StoppedMaybeSent(f"{exc}; an earlier attempt of a create lost its reply, so "
                                   "its task may exist: the next build resends it under the "
                                   "same Idempotency-Key and pays nothing more") from exc
        raise


def _url_of(image: InputData) -> str:
    if image.url and (image.url_expires is None or image.url_expires > time.time() + 60):
        return image.url
    if image.url:
        raise FrameFailed(f"the output URL of '{image.image.ref}' expired; re-render it "
                          f"(nbpipe build --force {image.image.ref}) to get a fresh one")
    raise FrameFailed(f"HiAPI takes input images as URLs, and '{image.image.ref}' has none")


def _output(task: HiTask, task_id: str) -> tuple[str, float]:
    """The output URL and its expiry. A success without a usable URL counts as a failed task:
    its image can never be fetched, and resuming it would fail the same way at every build."""
    first = task.output[0] if task.output else None
    if first is None or not first.url:
        raise TaskFailed(f"task {task_id} succeeded without an output URL")
    try:
        output_url(first.url)
    except FrameFailed as exc:
        raise TaskFailed(str(exc)) from None
    return first.url, expiry(first.expireAt, time.time())


def expiry(expire_at: float | None, now: float) -> float:
    """`expireAt` as Unix seconds, its documented unit. Milliseconds, which read as seconds
    would keep a URL valid for millennia (and send it, long expired, as an edit's input), are
    told by their size. Anything else implausible (absent, before 2001, over a year ahead,
    a lifetime instead of a time) reads as the documented lifetime from now, a day short."""
    if expire_at is not None and MS_FROM <= expire_at < MS_FROM * 1000:
        expire_at /= 1000
    if expire_at is None or not 1e9 <= expire_at <= now + 366 * 86400:
        return now + OUTPUT_LIFETIME
    return expire_at


def poll_pauses(delay: float, expected: float | None, interval: float) -> Iterator[float]:
    """The pauses before each poll of a task. Not knowing how long its model takes: `delay`,
    then every `interval`. Knowing it (`expected`, the typical duration of its recent tasks):
    the first poll when a typical task is done, then close polls (a twentieth of it, at least
    CLOSE_POLL s) until half as long again has passed, then every `interval`: a task is
    collected within moments of its end, in a few polls, where the fixed interval cost up to
    `interval` seconds a task (1.29x the ideal wall time for 10 s tasks)."""
    if expected is None:
        yield delay
    else:
        yield expected
        step = min(max(expected / 20, CLOSE_POLL), interval)
        waited = expected
        while waited < expected * 1.5:
            yield step
            waited += step
    while True:
        yield interval



def open_hiapi(jobs: int, rpm: int | None, settings: Settings) -> HiApiBackend:
    mine = HiApiSettings.of(settings)  # first: a missing key is said before anything opens
    return HiApiBackend(mine, pooled_client(jobs), RateLimiter(rpm))


SPEC = BackendSpec(name="hiapi", lanes=(Lane.TASK,), inputs=Inputs.URL, key_env=KEY_VARS,
                   base_url_env="HIAPI_BASE_URL", payload_style=PAYLOAD_STYLE, open=open_hiapi,
                   describe=create_body, endpoint=lambda model: "POST /v1/tasks",
                   would_send=would_send, bills_failures=False)  # a `fail` task costs nothing

PRICE_LIST_BYTES = 1 << 20  # the real list is a few tens of kilobytes
PRICE_LIST_SECONDS = 30.0  # for the whole reply: a server that drips bytes cannot hang `models`


def fetch_price_list() -> tuple[str, object]:
    """HiAPI's public pricing catalogue, decoded: (where it came from, the JSON document).
    UsageError if it cannot be read within PRICE_LIST_SECONDS and PRICE_LIST_BYTES, or is a
    redirect (not followed: the list is asked of one place); its content is the caller's to
    judge."""
    base = (current().pricing_url or PRICING_URL).rstrip("/")
    try:
        return base, json.loads(_price_list_bytes(f"{base}/api/pricing"))
    except (httpx.HTTPError, ValueError, RecursionError, _TooMuch) as exc:
        why = str(exc) if isinstance(exc, _TooMuch) else type(exc).__name__
        raise UsageError(f"could not refresh prices from {base}: {why}",
                         "the table in use stays as it was") from None


class _TooMuch(Exception):
    """The price list broke a bound (size, time) or redirected."""


def _price_list_bytes(url: str) -> bytes:
    deadline = time.monotonic() + PRICE_LIST_SECONDS
    data = bytearray()
    with httpx.stream("GET", url, timeout=min(15.0, PRICE_LIST_SECONDS),
                      follow_redirects=False) as response:
        if response.is_redirect:
            raise _TooMuch(f"redirected to {response.headers.get('location', '?')[:200]}, "
                           "not followed")
        response.raise_for_status()
        for chunk in response.iter_bytes():
            data += chunk
            if len(data) > PRICE_LIST_BYTES:
                raise _TooMuch(f"the reply is larger than {PRICE_LIST_BYTES:,} bytes")
            if time.monotonic() > deadline:
                raise _TooMuch(f"no full reply within {PRICE_LIST_SECONDS:.0f} s")
    return bytes(data)
