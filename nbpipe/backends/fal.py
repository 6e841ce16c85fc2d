"""fal's queue: submit to POST {queue}/{model}, poll the status_url it answers, fetch the
response_url, download the image at once (fal's media URLs expire).

The request id is journalled the moment the submit's reply names it, with the two URLs to
poll and fetch it at (fal says to use them, never to build them): a build killed after that is
collected by the next one, for free. fal has no idempotency key: a submit whose reply was lost
cannot be found again, and sending it again could queue (and bill) a second request. So a
submit is never resent after its body may have left: it is announced as possibly billed,
counted, and closed (registry: `idempotent=False`). Only answers that say nothing was queued
(429, a 500 or 503 carrying fal's JSON error with its error_type, and no connection at all)
are tried again; any other 5xx is a lost reply.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass, field

import httpx

from nbpipe.backends.base import InputData, Job, Rendered, Sink, TaskStillOut, describe_image
from nbpipe.backends.http import (
    AddressRefused,
    Answer,
    DownloadGone,
    HttpBackend,
    RateLimiter,
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
    FalError,
    FalQueued,
    FalResult,
    FalStatus,
    ReplyProblem,
    validate,
)
from nbpipe.errors import BuildStopped, FrameFailed, ImageLost, ModelUnknown, TaskFailed
from nbpipe.plan.frame import Request
from nbpipe.settings import Settings

PAYLOAD_STYLE = "data URI"
DEFAULT_BASE_URL = "https://queue.fal.run"
KEY_VARS = ("FAL_KEY",)
RETRY_SUBMIT = frozenset({429})  # fal queued nothing: the submit is tried again
# fal's own refusal to queue, when its JSON body says so (an error_type): tried again. Any other
# 5xx (a gateway's 502/504, Cloudflare's 520/524, a proxy's page) may have come after the
# request was queued: a lost reply.
REFUSED_SUBMIT = frozenset({500, 503})
PENDING = frozenset({"IN_QUEUE", "IN_PROGRESS"})


def submit_body(request: Request, images: list[str],
                mimes: list[str] | None = None) -> dict[str, object]:
    """The submit's JSON, from the request alone (the key holds all that reaches the image). A
    model with size presets in the catalogue (FLUX) was given the preset of the frame's aspect
    ratio as its `size` at plan time, sent as `image_size`; another (Kontext) takes the ratio as
    it is. An edit names its one input image."""
    body: dict[str, object] = {"prompt": request.prompt}
    if images:
        body["image_url"] = images[0]
    size = request.params.get("size")
    ratio = request.params.get("aspect_ratio")
    if size:
        body["image_size"] = size
    elif ratio:
        body["aspect_ratio"] = ratio
    if "output_format" in request.params:
        body["output_format"] = request.params["output_format"]
    return body


def wire(body: dict[str, object]) -> str:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True)
class Queued:
    """A request in fal's queue: its id and where to poll and fetch it. Journalled as its
    `handle`, a JSON object (URLs may hold any character; an older nbpipe's handle, the three
    space-separated, is still read)."""

    request_id: str
    status_url: str
    response_url: str

    def handle(self) -> str:
        return json.dumps({"request_id": self.request_id, "status_url": self.status_url,
                           "response_url": self.response_url}, separators=(",", ":"))

    @staticmethod
    def of(handle: str, base_url: str) -> Queued:
        """A journalled handle read back. The journal is untrusted: TaskFailed if it is not one
        this nbpipe journalled; TaskStillOut (left open, paid) if its URLs are off the queue at
        `base_url`: the key is not sent there, and a build pointed at their origin collects it."""
        try:
            queued = validate(FalQueued, _handle_fields(handle))
        except (ValueError, RecursionError, ReplyProblem):
            raise TaskFailed(f"the request to collect, {short(handle, 60)!r}, is not a fal "
                             "request this nbpipe journalled") from None
        off = _off_origin(queued, base_url)
        if off is not None:
            raise TaskStillOut(f"request {queued.request_id} was queued at {_origin(off)}, "
                               f"not at {base_url}: the key is not sent there; it stays in the "
                               "journal, paid, for a build whose FAL_BASE_URL is "
                               f"{_origin(off)} to collect")
        return Queued(queued.request_id, queued.status_url, queued.response_url)


def _handle_fields(handle: str) -> object:
    if handle.startswith("{"):
        return json.loads(handle)
    return dict(zip(("request_id", "status_url", "response_url"), handle.split(" "),
                    strict=True))


def _off_origin(queued: FalQueued, base_url: str) -> str | None:
    """The first of the request's URLs not on the queue's own origin, if any."""
    base = httpx.URL(base_url)
    for url in (queued.status_url, queued.response_url):
        try:
            target = output_url(url)
        except FrameFailed:
            target = None
        if target is None or (target.scheme, target.host, target.port) != \
                (base.scheme, base.host, base.port):
            return url
    return None


def _origin(url: str) -> str:
    try:
        target = httpx.URL(url)
        return f"{target.scheme}://{target.netloc.decode('ascii', 'replace')}"
    except (httpx.InvalidURL, UnicodeError):
        return "its origin"


def checked(queued: FalQueued, base_url: str) -> Queued:
    """The submit's reply, if its URLs are on the queue's own origin: the key goes to them, so
    a reply naming another host must not draw it there (TaskFailed)."""
    off = _off_origin(queued, base_url)
    if off is not None:
        raise TaskFailed(f"fal's reply names {short(off, 80)!r} to poll, not a URL of the queue "
                         f"at {base_url}: the key is not sent there")
    return Queued(queued.request_id, queued.status_url, queued.response_url)


@dataclass(frozen=True)
class FalSettings:
    """Where and how to talk to fal's queue; from the Settings (`of`), tests shrink the times."""

    api_key: str
    base_url: str = DEFAULT_BASE_URL
    poll_interval: float = 1.0  # FLUX answers in seconds; the queue may hold it longer
    task_timeout: float = 600.0  # then the frame is left out and the next build collects it
    max_bytes: int = 64 << 20
    download_timeout: float = 300.0
    call_timeout: float = 60.0  # one API call, reply included (the queue answers at once)
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    @staticmethod
    def of(settings: Settings) -> FalSettings:
        """fal's part of the settings; UsageError when no key is set."""
        key = api_key(settings.fal_key, KEY_VARS, "fal")
        return FalSettings(
            api_key=key, base_url=(settings.fal_base_url or DEFAULT_BASE_URL).rstrip("/"),
            poll_interval=settings.fal_poll_interval, task_timeout=settings.fal_timeout,
            max_bytes=settings.max_image_bytes, download_timeout=settings.download_timeout,
            call_timeout=settings.call_timeout or 60.0, retry=RetryPolicy.of(settings))


class FalBackend(HttpBackend):
    name = "fal"
    label = "fal"
    base_var = "FAL_BASE_URL"
    # a submit has no idempotency key: its lost reply may be billed. Only the GETs (polls,
    # result fetches) say they may be asked again, each where it is sent.
    repeatable = False
    settings: FalSettings

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Key {self.settings.api_key}", "Accept": "application/json"}

    async def render(self, request: Request, inputs: list[InputData], sink: Sink,
                     job: Job) -> Rendered:
        if job.resume_task is not None:
            queued = Queued.of(job.resume_task, self.settings.base_url)
        else:
            payloads = [_payload(i) for i in inputs]
            # journalled as `show` prints it (no image bytes): never resent, only a mark that
            # this submit may have left
            job.on_send(wire(submit_body(request, [
                describe_image(i.image, PAYLOAD_STYLE) if i.data is not None else p
                for i, p in zip(inputs, payloads, strict=True)])))
            queued = await self._submit(request.model, wire(submit_body(request, payloads)))
            job.on_created()  # a new request, billed to this build's account
            job.on_task(queued.handle())
        result = await self._wait(queued, self.settings.poll_interval
                                  if job.resume_task is None else 0.0)
        job.on_finished()
        url = _image_url(result, queued.request_id)
        try:
            await self.settings.retry.run(lambda: self._download(url, sink))
        except DownloadGone as gone:
            raise ImageLost(f"request {queued.request_id} completed (paid) but its image URL "
                            f"is gone ({gone}); fal's media URLs expire") from None
        return Rendered(task_id=queued.request_id)

    async def _submit(self, model: str, body: str) -> Queued:
        url = f"{self.settings.base_url}/{model}"

        async def attempt() -> Queued:
            try:
                answer = await self.exchange("POST", url, self._headers(), body)
            except FrameFailed as exc:
                if not exc.maybe_billed:
                    raise
                raise FrameFailed(f"fal's queue sent no reply to the submit ({exc}); fal has "
                                  "no idempotency key, so the request may be queued and billed",
                                  maybe_billed=True) from None
            return self._queued(answer, model, url)

        return await self.settings.retry.run(attempt)

    def _queued(self, answer: Answer, model: str, url: str) -> Queued:
        if answer.status in (200, 201, 202):
            try:
                if answer.problem:
                    raise ReplyProblem(answer.problem)
                return checked(validate(FalQueued, answer.body), self.settings.base_url)
            except (ReplyProblem, TaskFailed) as exc:  # queued, maybe, and out of reach
                raise FrameFailed(f"fal accepted the submit but its reply is unusable ({exc}); "
                                  "not sent again: the request may be queued and billed",
                                  maybe_billed=True) from None
        if answer.status == 404:
            detail = _error(answer).detail
            if isinstance(detail, str) and model in detail:
                raise ModelUnknown("fal", model)
            raise self.endpoint_missing(url, f"not fal's answer about model '{model}'")
        if answer.status >= 500 and not _refused_to_queue(answer):
            raise FrameFailed(f"fal's gateway answered the submit with {self._said(answer)}; "
                              "not sent again: the request may be queued and billed",
                              maybe_billed=True)
        raise self._refused(answer, "the submit")

    def _refused(self, answer: Answer, what: str) -> Exception:
        """An error answer to `what`, once translated (the submit's own cases aside)."""
        status = answer.status
        said = self._said(answer)
        if status in (401, 403):
            return BuildStopped(f"fal refused the key ({said}); check FAL_KEY")
        if status in RETRY_SUBMIT or status >= 500:
            return Retryable(f"fal answered {what} with {said}", answer.delay)
        return FrameFailed(f"fal rejected {what} ({said})")

    def _said(self, answer: Answer) -> str:
        """`HTTP 422: body.prompt: msg (type)`: what fal's error body says, briefly."""
        error = _error(answer)
        detail = error.detail
        if isinstance(detail, list):
            words = "; ".join(
                f"{'.'.join(str(p) for p in d.loc or ())}: {d.msg or '?'}"
                + (f" ({d.type})" if d.type else "") for d in detail[:3])
        else:
            words = detail or answer.reason
        kind = f" {short(error.error_type, 60)}" if error.error_type else ""
        return f"HTTP {answer.status}{kind}: {short(words)}"

    async def _wait(self, queued: Queued, first: float) -> FalResult:
        deadline = time.monotonic() + self.settings.task_timeout
        await pause_until(first, deadline)
        unknown = 0
        while True:
            status = await self.settings.retry.run(
                lambda: self._status(queued), deadline,
                f"the request timeout (NBPIPE_FAL_TIMEOUT={self.settings.task_timeout:g} s)")
            if status is None:  # fal does not know it: another account's, or dropped
                unknown += 1
                if unknown >= 2:
                    raise ImageLost(f"fal no longer knows request {queued.request_id}: it was "
                                    "sent with another account's key, or fal dropped it; if it "
                                    "had completed, its image is lost")
            elif status.status not in PENDING:  # COMPLETED, or one we don't know: ask
                result = await self.settings.retry.run(lambda: self._result(queued))
                if result is not None:
                    return result
            if time.monotonic() >= deadline:
                raise TaskStillOut(f"request {queued.request_id} is still queued after "
                                   f"{self.settings.task_timeout:.0f} s; the next build "
                                   "collects it without paying again")
            await pause_until(self.settings.poll_interval, deadline)

    async def _status(self, queued: Queued) -> FalStatus | None:
        answer = await self.exchange("GET", queued.status_url, self._headers(),
                                     repeatable=True)
        if answer.status == 404:
            return None
        if answer.status not in (200, 202):
            raise self._refused(answer, "a status poll")
        try:
            if answer.problem:
                raise ReplyProblem(answer.problem)
            return validate(FalStatus, answer.body)
        except ReplyProblem as exc:  # a proxy's page, a mangled body: a GET, so ask again
            raise Retryable(f"fal answered a status poll with {exc}") from None

    async def _result(self, queued: Queued) -> FalResult | None:
        """The request's result; None while fal says it has none yet (a 400 "still in
        progress", a 404): the request stays queued and paid, so it is polled on."""
        answer = await self.exchange("GET", queued.response_url, self._headers(),
                                     repeatable=True)
        if answer.status == 200:
            try:
                if answer.problem:
                    raise ReplyProblem(answer.problem)
                return validate(FalResult, answer.body)
            except ReplyProblem as exc:
                raise Retryable(f"fal answered the result fetch with {exc}") from None
        error = _error(answer)
        if answer.status in (401, 403, 429) or (answer.status >= 500 and not error.error_type):
            raise self._refused(answer, "the result fetch")
        if answer.status == 422 or answer.status >= 500:
            # fal's own word on the request: its model refused it (422: validation, content
            # policy) or it failed on fal's side (5xx with an error_type: not billed)
            raise TaskFailed(f"request {queued.request_id} failed: {self._said(answer)}")
        return None  # no word that it failed: a failed mark would drop a paid request

    async def _download(self, url: str, sink: Sink) -> None:
        truncate = getattr(sink, "truncate", None)
        if truncate is not None:
            truncate()  # a retried download starts again from the first byte
        try:
            await download(self.client, url, sink, self.settings.max_bytes,
                           self.settings.download_timeout, self.settings.base_url)
        except AddressRefused as exc:
            raise TaskStillOut(f"refused to download the request's image: {exc}; it is paid, "
                               "so it stays in the journal for a later build") from None


def _refused_to_queue(answer: Answer) -> bool:
    """A 5xx that is fal's own word that nothing was queued: 500/503 with fal's JSON error."""
    return answer.status in REFUSED_SUBMIT and _error(answer).error_type is not None


def _error(answer: Answer) -> FalError:
    try:
        return validate(FalError, answer.body)
    except ReplyProblem:
        return FalError()


def _payload(image: InputData) -> str:
    """An input image as fal takes it: its URL, or its bytes as a data URI."""
    if image.data is None:
        if image.url is None:
            raise FrameFailed(f"no bytes and no URL for input '{image.image.ref}'")
        return image.url
    return f"data:{image.mime};base64,{base64.b64encode(image.data).decode()}"


def _image_url(result: FalResult, request_id: str) -> str:
    """The first image's URL. Flagged by fal's safety checker, the image was made (and billed,
    unconfirmed) but is withheld: lost, not a failure a later build could collect."""
    if result.has_nsfw_concepts and result.has_nsfw_concepts[0]:
        raise ImageLost(f"fal's safety checker flagged the image of request {request_id} "
                        "(has_nsfw_concepts): it was made, so it may be billed, and is withheld")
    if not result.images:
        raise TaskFailed(f"request {request_id} completed without an image")
    try:
        output_url(result.images[0].url)
    except FrameFailed as exc:
        raise TaskFailed(str(exc)) from None
    return result.images[0].url



def open_fal(jobs: int, rpm: int | None, settings: Settings) -> FalBackend:
    mine = FalSettings.of(settings)  # first: a missing key is said before anything opens
    return FalBackend(mine, pooled_client(jobs), RateLimiter(rpm))


SPEC = BackendSpec(name="fal", lanes=(Lane.TASK,), inputs=Inputs.INLINE, key_env=KEY_VARS,
                   base_url_env="FAL_BASE_URL", payload_style=PAYLOAD_STYLE, open=open_fal,
                   describe=submit_body, endpoint=lambda model: f"POST /{model} (fal's queue)",
                   idempotent=False, bills_failures=False)  # "does not bill 5xx failures"
