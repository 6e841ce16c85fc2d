"""OpenAI's Images API: /v1/images/generations (JSON), or /v1/images/edits (multipart) for a
frame with input images (an edit's upstream, a project file). The image comes back inline, as
base64, and is written as the server made it: never re-encoded, so any provenance OpenAI embeds
(C2PA) reaches the output file.

A call with no idempotency key: a reply lost after the body left may have been billed, so it is
never sent again within the build (the official SDK retries twice by default, and so can pay
three times; nbpipe does not). Only an answer that shows nothing ran is retried: 408, 429, and
OpenAI's own JSON error on a 503 (overloaded). Any other 5xx, and any 5xx that is not OpenAI's
JSON (a CDN's page: 502, 504, 524), may come after the image was made: it is a lost reply,
possibly billed, never resent.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field

from nbpipe.backends.base import InputData, Job, Rendered, Sink, input_bytes
from nbpipe.backends.http import (
    Answer,
    Form,
    HttpBackend,
    RateLimiter,
    Retryable,
    RetryPolicy,
    api_key,
    pooled_client,
    short,
)
from nbpipe.backends.registry import BackendSpec, Inputs, Lane
from nbpipe.backends.replies import (
    OpenAIError,
    OpenAIErrorBody,
    OpenAIImages,
    ReplyProblem,
    validate,
)
from nbpipe.errors import BuildStopped, FrameFailed, ModelUnknown
from nbpipe.plan.frame import Request
from nbpipe.settings import Settings

PAYLOAD_STYLE = "file"
DEFAULT_BASE_URL = "https://api.openai.com/v1"
KEY_VARS = ("OPENAI_API_KEY",)
RETRY_STATUSES = frozenset({408, 429})  # the request was not taken: nothing ran
# OpenAI's own error body on these says it shed the request before running it (overloaded)
RETRY_WITH_ERROR_BODY = frozenset({503})
# Request params sent as fields of the same name; the rest (aspect_ratio, resolution) chose
# the size and stay in the key only.
SENT = ("size", "quality", "output_format", "background")
STOPPING_CODES = {"insufficient_quota": "the account's quota or credit is spent",
                  "billing_hard_limit_reached": "the account's billing limit is reached"}


def request_body(request: Request, images: list[str],
                 mimes: list[str] | None = None) -> dict[str, object]:
    """The fields a build sends: JSON to /images/generations, or, with input images, the
    multipart form of /images/edits (`image[]`: one file per input, in order)."""
    body: dict[str, object] = {"model": request.model, "prompt": request.prompt}
    body.update({name: request.params[name] for name in SENT if name in request.params})
    if images:
        body["image[]"] = list(images)
    return body


def endpoint(model: str) -> str:
    """What `show` says a frame calls (the model is in the body)."""
    return "POST /v1/images/generations, or /v1/images/edits (multipart) for a frame with inputs"


@dataclass(frozen=True)
class OpenAISettings:
    api_key: str
    base_url: str = DEFAULT_BASE_URL
    max_bytes: int = 64 << 20
    call_timeout: float = 600.0  # one call, reply included: a high-quality 4K image takes minutes
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    @staticmethod
    def of(settings: Settings) -> OpenAISettings:
        """OpenAI's part of the settings; UsageError when no key is set. OPENAI_BASE_URL ends
        with /v1, as the official SDK reads it."""
        return OpenAISettings(
            api_key=api_key(settings.openai_key, KEY_VARS, "openai"),
            base_url=(settings.openai_base_url or DEFAULT_BASE_URL).rstrip("/"),
            max_bytes=settings.max_image_bytes,
            call_timeout=settings.call_timeout or 600.0,
            retry=RetryPolicy.of(settings))


class OpenAIBackend(HttpBackend):
    name = "openai"
    label = "OpenAI"
    base_var = "OPENAI_BASE_URL"
    repeatable = False  # no idempotency key: a lost reply may have been billed
    settings: OpenAISettings

    async def render(self, request: Request, inputs: list[InputData], sink: Sink,
                     job: Job) -> Rendered:
        input_bytes(inputs, "OpenAI takes input images as files")
        fields = request_body(request, [])
        if inputs:
            form = Form({k: str(v) for k, v in fields.items()},
                        [("image[]", (_file_name(n, i), i.data or b"", i.mime))
                         for n, i in enumerate(inputs)])
            reply = await self.settings.retry.run(lambda: self._call("edits", request, form=form))
        else:
            reply = await self.settings.retry.run(lambda: self._call("generations", request,
                                                                     body=fields))
        image = _image(reply)
        if len(image) > self.settings.max_bytes:  # made, so billed
            raise FrameFailed(f"the image is {len(image):,} bytes, over the "
                              f"{self.settings.max_bytes:,}-byte cap; not retried, since "
                              "the image was made and may have been billed", maybe_billed=True)
        sink.write(image)  # the server's bytes, untouched
        return Rendered(task_id=None)

    async def _call(self, kind: str, request: Request, body: dict[str, object] | None = None,
                    form: Form | None = None) -> OpenAIImages:
        url = f"{self.settings.base_url}/images/{kind}"
        headers = {"Authorization": f"Bearer {self.settings.api_key}"}
        answer = await self.exchange("POST", url, headers, body, form=form)
        if answer.status != 200:
            raise self._error(answer, request.model, url)
        try:
            if answer.problem:
                raise ReplyProblem(answer.problem)
            return validate(OpenAIImages, answer.body)
        except ReplyProblem as exc:  # a 200 may carry a billed image: asking again pays twice
            raise FrameFailed(f"OpenAI answered HTTP 200 with {exc}; not retried, since the "
                              "request may have been billed", maybe_billed=True) from None

    def _error(self, answer: Answer, model: str, url: str) -> Exception:
        status = answer.status
        try:
            own = validate(OpenAIErrorBody, answer.body).error
        except ReplyProblem:  # the status alone decides what to do
            own = None
        error = own or OpenAIError()
        code = short(error.code, 60) if error.code is not None else ""
        message = short(error.message or answer.reason)
        kind = f"{status} {code}" if code else str(status)
        if code == "model_not_found" or (status == 400 and error.param == "model"
                                         and model in message):
            return ModelUnknown("the OpenAI API", model)
        if status == 404:
            return self.endpoint_missing(url, f"not OpenAI's word on model '{model}'")
        if status == 401:
            return BuildStopped(f"OpenAI refused the key (HTTP {kind}: {message}); check "
                                "OPENAI_API_KEY")
        if status == 403:
            return BuildStopped(f"OpenAI refused this account (HTTP {kind}: {message}); "
                                "image models may need a verified organization")
        if code in STOPPING_CODES:
            return BuildStopped(f"OpenAI answered HTTP {kind}: {STOPPING_CODES[code]} "
                                f"({message})")
        if code == "moderation_blocked":
            return FrameFailed(f"OpenAI's moderation blocked the request (HTTP {kind}): "
                               f"{message}; change the prompt or the input images")
        if status in RETRY_STATUSES or (status in RETRY_WITH_ERROR_BODY and own is not None):
            return Retryable(f"OpenAI answered HTTP {kind}: {message}", answer.delay)
        if status >= 500:  # a gateway's or a failed run's answer: the image may have been made
            return FrameFailed(f"OpenAI answered HTTP {kind}: {message}; not retried, since the "
                               "image may have been made and billed before the answer was lost",
                               maybe_billed=True)
        where = f", parameter '{short(error.param, 60)}'" if error.param is not None else ""
        return FrameFailed(f"OpenAI rejected the request (HTTP {kind}{where}): {message}")


def _file_name(index: int, data: InputData) -> str:
    ext = {"image/jpeg": "jpg", "image/webp": "webp"}.get(data.mime, "png")
    return f"input-{index + 1}.{ext}"


def _image(reply: OpenAIImages) -> bytes:
    """The first image of the reply, decoded; made, so billed, whatever is wrong with it."""
    data = reply.data[0].b64_json if reply.data else None
    if data is None:
        raise FrameFailed("OpenAI's reply holds no image (no data[0].b64_json); not retried, "
                          "since the request may have been billed", maybe_billed=True)
    try:
        image = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise FrameFailed("OpenAI's image data is not valid base64; not retried, since the "
                          "image was made and may have been billed", maybe_billed=True) from None
    return image  # the renderer verifies it is an image (a call's bad image: maybe billed)


def open_openai(jobs: int, rpm: int | None, settings: Settings) -> OpenAIBackend:
    mine = OpenAISettings.of(settings)  # first: a missing key is said before anything opens
    # OpenAI sends nothing until the image is made: a read timeout shorter than the call's
    # would cut a billed call short
    return OpenAIBackend(mine, pooled_client(jobs, read=mine.call_timeout), RateLimiter(rpm))


SPEC = BackendSpec(name="openai", lanes=(Lane.CALL,), inputs=Inputs.INLINE, key_env=KEY_VARS,
                   base_url_env="OPENAI_BASE_URL", payload_style=PAYLOAD_STYLE,
                   open=open_openai, describe=request_body, endpoint=endpoint, label="OpenAI")
