"""HiAPI's async task API: POST /v1/tasks, poll GET /v1/tasks/{id}, download output[0].url.

Never pay twice: every create carries an Idempotency-Key derived from the frame key, the take
number and the exact bytes of the body. The body is journalled before it is sent, and a create
replayed after a crash resends those bytes, so HiAPI returns the original task; a body that
differs (an input URL signed again) is a new key, never a permanent IDEMPOTENCY_KEY_MISMATCH.
The task id is reported the moment it is known, and a task that outlives its timeout is resumed
by the next build, never created again.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import statistics
import time
from collections import deque
from dataclasses import dataclass, field

import httpx

from nbpipe.backends.base import InputData, Job, Rendered, Sink
from nbpipe.backends.http import (DownloadGone, HttpBackend, RateLimiter, RetryPolicy, Retryable,
                                  api_key, download, env_number, json_body, network_error, redact,
                                  retry_after, short)
from nbpipe.errors import BuildStopped, FrameFailed, ImageLost, ModelUnknown, TaskFailed, UsageError
from nbpipe.plan.frame import Request

PAYLOAD_STYLE = "https URL"
DEFAULT_BASE_URL = "https://api.hiapi.ai"
PRICING_URL = "https://www.hiapi.ai"  # the public price list: no key
KEY_VARS = ("HIAPI_API_KEY", "HIAPI_TOKEN")
RETRYABLE_CODES = {"MODEL_UNAVAILABLE", "STORAGE_UNAVAILABLE", "TASK_TIMEOUT",
                   "IDEMPOTENCY_KEY_PROCESSING"}


def create_body(request: Request, image_urls: list[str]) -> dict:
    """The POST /v1/tasks body. `resolution` and `image_input` go only to models that take them
    (the resolver has already dropped them elsewhere: a model without tiers answers 400 to
    `resolution`)."""
    task_input: dict = {"prompt": request.prompt, **request.params}
    if image_urls:
        task_input["image_input"] = list(image_urls)
    return {"model": request.model, "input": task_input}


def wire(body: dict) -> str:
    """The bytes a create sends (and the journal keeps, to resend exactly)."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


def idempotency_key(frame_key: str, take: int, body: str) -> str:
    digest = hashlib.sha256(body.encode()).hexdigest()[:16]
    return f"nbpipe-{frame_key}-{take}-{digest}"


@dataclass(frozen=True)
class HiApiSettings:
    """Where and how to talk to HiAPI; from the environment, tests shrink the times."""

    api_key: str
    base_url: str = DEFAULT_BASE_URL
    poll_delay: float = 5.0  # first poll after this; a render takes 10-60 s
    poll_interval: float = 3.0
    task_timeout: float = 600.0  # then the frame fails and its task is resumed next build
    max_bytes: int = 64 << 20
    download_timeout: float = 300.0  # for the whole body: a slow drip cannot hang a build
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    @staticmethod
    def from_env(env: dict[str, str] | None = None) -> "HiApiSettings":
        env = dict(os.environ if env is None else env)
        key = api_key(env, KEY_VARS, "hiapi")
        base = env.get("HIAPI_BASE_URL", DEFAULT_BASE_URL).rstrip("/").removesuffix("/v1")

        def number(name: str, default: float) -> float:
            return env_number(env, name, default)

        return HiApiSettings(
            api_key=key, base_url=base,
            poll_delay=number("NBPIPE_HIAPI_POLL_DELAY", 5.0),
            poll_interval=number("NBPIPE_HIAPI_POLL_INTERVAL", 3.0),
            task_timeout=number("NBPIPE_HIAPI_TIMEOUT", 600.0),
            max_bytes=int(number("NBPIPE_MAX_IMAGE_BYTES", 64 << 20)),
            download_timeout=number("NBPIPE_DOWNLOAD_TIMEOUT", 300.0),
            retry=RetryPolicy(base=number("NBPIPE_RETRY_BASE", 1.0)))


class HiApiBackend(HttpBackend):
    name = "hiapi"

    def __init__(self, settings: HiApiSettings, client: httpx.AsyncClient,
                 limiter: RateLimiter | None = None):
        super().__init__(settings, client, limiter)
        self._latency: dict[str, deque[float]] = {}  # model → recent completed - created

    def first_poll(self, model: str) -> float:
        """When to look first: the typical latency HiAPI reported for this model's recent
        tasks (its own `created`/`completed` stamps), else the configured delay."""
        seen = self._latency.get(model)
        if not seen or len(seen) < 3:
            return self.settings.poll_delay
        return statistics.median(seen) * 1.05

    def _learn(self, model: str, task: dict) -> None:
        created, completed = task.get("created"), task.get("completed")
        if isinstance(created, (int, float)) and isinstance(completed, (int, float)) \
                and completed >= created > 0:
            self._latency.setdefault(model, deque(maxlen=25)).append(float(completed - created))

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.settings.api_key}", "Accept": "application/json"}

    async def render(self, request: Request, inputs: list[InputData], sink: Sink,
                     job: Job) -> Rendered:
        task_id = job.resume_task
        if task_id is None:
            body = job.body or wire(create_body(request, [_url_of(i) for i in inputs]))
            job.on_send(body)  # durable before the first byte leaves
            key = idempotency_key(request.key, job.take, body)
            task_id = await self.settings.retry.run(lambda: self._create(body, key))
            job.on_task(task_id)
        # A task left by an earlier build has usually finished long ago: look at once.
        first = 0.0 if job.resume_task else self.first_poll(request.model)
        task = await self._wait(task_id, first)
        job.on_finished()  # the task's slot can go to the next frame while this one downloads
        self._learn(request.model, task)
        url, expires = _output(task, task_id)
        try:
            await self.settings.retry.run(lambda: self._download(url, sink))
        except DownloadGone:
            url, expires = _output(await self.settings.retry.run(lambda: self._task(task_id)),
                                   task_id)  # the URL may have been renewed
            try:
                await self.settings.retry.run(lambda: self._download(url, sink))
            except DownloadGone as exc:
                raise ImageLost(f"task {task_id} succeeded (paid) but its output URL is gone "
                                f"({exc}); HiAPI keeps outputs about 7 days") from None
        return Rendered(task_id=task_id, cost=job.cost, url=url, url_expires=expires)

    async def _download(self, url: str, sink: Sink) -> None:
        truncate = getattr(sink, "truncate", None)
        if truncate is not None:
            truncate()  # a retried download starts again from the first byte
        await download(self.client, url, sink, self.settings.max_bytes,
                       self.settings.download_timeout)

    async def _create(self, body: str, key: str) -> str:
        await self.limiter.wait()
        headers = {**self._headers(), "Idempotency-Key": key, "Content-Type": "application/json"}
        try:
            response = await self.client.post(f"{self.settings.base_url}/v1/tasks",
                                               content=body.encode(), headers=headers)
        except httpx.TransportError as exc:
            raise network_error(exc, request_sent_safe=True) from None  # the key makes it safe
        if response.status_code == 404:  # a create names nothing else that could be missing
            raise ModelUnknown("HiAPI", str(json.loads(body).get("model")))
        data = self._data(response)
        task_id = data.get("taskId") if isinstance(data, dict) else None
        if not isinstance(task_id, str) or not task_id:
            raise FrameFailed("HiAPI accepted the task but sent no taskId")
        return task_id

    async def _task(self, task_id: str) -> dict:
        await self.limiter.wait()
        try:
            response = await self.client.get(f"{self.settings.base_url}/v1/tasks/{task_id}",
                                              headers=self._headers())
        except httpx.TransportError as exc:
            raise network_error(exc, request_sent_safe=True) from None
        data = self._data(response)
        if not isinstance(data, dict):
            raise FrameFailed(f"task {task_id}: the reply holds no task")
        return data

    async def _wait(self, task_id: str, first_poll: float) -> dict:
        deadline = time.monotonic() + self.settings.task_timeout
        await asyncio.sleep(first_poll)
        while True:
            task = await self.settings.retry.run(lambda: self._task(task_id))
            status = task.get("status")
            if status == "success":
                return task
            if status == "fail":
                error = task.get("error") if isinstance(task.get("error"), dict) else {}
                raise TaskFailed(f"task {task_id} failed: {error.get('code', 'unknown')}: "
                                  f"{short(redact(str(error.get('message', '')), self.settings.api_key))}")
            if time.monotonic() >= deadline:  # queued, handling, archiving, or one we don't know
                raise FrameFailed(f"task {task_id} is still {status!s} after "
                                  f"{self.settings.task_timeout:.0f} s; the next build resumes "
                                  "it without paying again", retry_later=True)
            await asyncio.sleep(self.settings.poll_interval)

    def _data(self, response: httpx.Response):
        status = response.status_code
        if status == 200:
            try:
                return json_body(response).get("data")
            except FrameFailed as exc:  # a proxy's error page: ask again (GETs and keyed POSTs)
                raise Retryable(str(exc)) from None
        body = {}
        try:
            body = json_body(response)
        except FrameFailed:
            pass
        code = body.get("error_code")
        message = short(redact(str(body.get("message") or response.reason_phrase),
                               self.settings.api_key))
        if status in (401, 403):
            raise BuildStopped(f"HiAPI refused the key (HTTP {status}: {message}); "
                               "check HIAPI_API_KEY")
        if status == 402:
            raise BuildStopped(f"HiAPI says the balance is insufficient (HTTP 402: {message}); "
                               "what was rendered so far is kept")
        if status in (409, 429) or code in RETRYABLE_CODES or status >= 500:
            raise Retryable(f"HiAPI answered HTTP {status} {code or ''}: {message}".strip(),
                            retry_after(response.headers))
        raise FrameFailed(f"HiAPI rejected the request (HTTP {status} {code or ''}): "
                          f"{message}".replace("  ", " "))


def _url_of(image: InputData) -> str:
    if image.url and (image.url_expires is None or image.url_expires > time.time() + 60):
        return image.url
    if image.url:
        raise FrameFailed(f"the output URL of '{image.image.ref}' expired; re-render it "
                          f"(nbpipe build --force {image.image.ref}) to get a fresh one")
    raise FrameFailed(f"HiAPI takes input images as URLs, and '{image.image.ref}' has none")


def _output(task: dict, task_id: str) -> tuple[str, float | None]:
    output = task.get("output")
    first = output[0] if isinstance(output, list) and output and isinstance(output[0], dict) else {}
    url = first.get("url")
    if not isinstance(url, str) or not url:
        raise FrameFailed(f"task {task_id} succeeded without an output URL")
    expires = first.get("expireAt")
    return url, float(expires) if isinstance(expires, (int, float)) else None


def fetch_price_list() -> tuple[str, object]:
    """HiAPI's public pricing catalogue, decoded: (where it came from, the JSON document).
    UsageError if it cannot be read; its content is the caller's to judge."""
    base = os.environ.get("NBPIPE_PRICING_URL", PRICING_URL).rstrip("/")
    try:
        response = httpx.get(f"{base}/api/pricing", timeout=15.0, follow_redirects=True)
        response.raise_for_status()
        return base, response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise UsageError(f"could not refresh prices from {base}: {type(exc).__name__}",
                         "the table in use stays as it was") from None
