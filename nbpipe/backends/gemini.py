"""Gemini's generateContent: one text part plus inlineData parts; images come back inline.

generateContent has no idempotency key: a reply lost after the request was sent is not retried
(it may have been billed). Only an answer that shows nothing ran is retried: 408, 429, and a 503
carrying Google's own JSON error with status UNAVAILABLE (the request was shed). Any other 5xx
(Google's 500 INTERNAL, a gateway's 502/504, Cloudflare's 52x, a 5xx page that is not Google's
JSON) may come after the image was made: it is a lost reply, possibly billed, never resent by
that build. The batch lane's requests (gemini_batch.py: create, poll, cancel) keep
RETRY_STATUSES: this policy is the call lane's.
"""

from __future__ import annotations

import base64
import binascii
import math
from dataclasses import dataclass, field, replace

from nbpipe.backends.base import Backend, InputData, Job, Rendered, Sink, input_bytes
from nbpipe.backends.batch import Batches
from nbpipe.backends.http import (
    Answer,
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
    GeminiError,
    GeminiErrorBody,
    GeminiReply,
    ReplyProblem,
    validate,
)
from nbpipe.errors import BuildStopped, FrameFailed, ModelUnknown
from nbpipe.plan.frame import Request
from nbpipe.settings import Settings

PAYLOAD_STYLE = "base64 data"
DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"
KEY_VARS = ("GEMINI_API_KEY", "GOOGLE_API_KEY")
RETRY_STATUSES = {408, 429, 500, 502, 503, 504}  # the batch lane's requests
# A generateContent answered with these was refused before it ran: nothing was billed
CALL_RETRY_STATUSES = frozenset({408, 429})
# ... and so was one answered 503 with Google's own error of this status (the request was shed)
SHED = "UNAVAILABLE"
FLEX = "flex"  # the lane, and the serviceTier value that asks for it
# A flex request the server sheds (429/503) is asked again within the same deadline as any
# call; shedding is flex's normal answer under load, so more attempts than a standard call's.
FLEX_ATTEMPTS = 12
CALL_LANES = ("standard", FLEX)  # the lanes one generateContent call sends
FINISH_REASONS = {
    "IMAGE_SAFETY": "the image was blocked by safety filters",
    "IMAGE_PROHIBITED_CONTENT": "the image was blocked as prohibited content",
    "IMAGE_RECITATION": "the image was blocked as recitation",
    "NO_IMAGE": "the model made no image",
    "SAFETY": "the reply was blocked by safety filters",
    "PROHIBITED_CONTENT": "the reply was blocked as prohibited content",
    "RECITATION": "the reply was blocked as recitation",
    "BLOCKLIST": "the prompt hit a blocklist",
    "SPII": "the reply was blocked for personal information",
    "MAX_TOKENS": "the reply ran out of tokens before an image",
    "OTHER": "the model stopped for an unspecified reason",
}


def generate_body(request: Request, image_data: list[str],
                  mimes: list[str] | None = None) -> dict[str, object]:
    """The POST /v1beta/models/{model}:generateContent body (the model is in the URL)."""
    parts: list[dict[str, object]] = [{"text": request.prompt}]
    for i, data in enumerate(image_data):
        mime = mimes[i] if mimes else "image/png"
        parts.append({"inlineData": {"mimeType": mime, "data": data}})
    image_config: dict[str, str] = {}
    if "aspect_ratio" in request.params:
        image_config["aspectRatio"] = request.params["aspect_ratio"]
    if "resolution" in request.params:
        image_config["imageSize"] = request.params["resolution"]
    config: dict[str, object] = {"responseModalities": ["IMAGE"]}
    if image_config:
        config["imageConfig"] = image_config
    return {"contents": [{"role": "user", "parts": parts}], "generationConfig": config}


def on_lane(body: dict[str, object], lane: str) -> dict[str, object]:
    """The body as sent on `lane`: Flex is the same request with `serviceTier: "flex"` (the
    proto's JSON name, as google-genai sends it); standard and batch name no tier."""
    return {**body, "serviceTier": FLEX} if lane == FLEX else body


def inline_body(request: Request, inputs: list[InputData]) -> dict[str, object]:
    """The generateContent body with the inputs' bytes inline (a call's, or a batch line's)."""
    images = input_bytes(inputs, "Gemini takes input images inline")
    return generate_body(request, [base64.b64encode(data).decode() for data in images],
                         [i.mime for i in inputs])


@dataclass(frozen=True)
class GeminiSettings:
    api_key: str
    base_url: str = DEFAULT_BASE_URL
    api_version: str = "v1beta"  # "v1" also serves generateContent
    max_bytes: int = 64 << 20
    call_timeout: float = 300.0  # for one generateContent, reply included (Pro takes 20-40 s)
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    @staticmethod
    def of(settings: Settings) -> GeminiSettings:
        """Gemini's part of the settings; UsageError when no key is set."""
        key = api_key(settings.gemini_key, KEY_VARS, "gemini")
        base = (settings.gemini_base_url or DEFAULT_BASE_URL).rstrip("/")
        version = "v1beta"
        for suffix in ("/v1beta", "/v1"):
            if base.endswith(suffix):
                base, version = base.removesuffix(suffix), suffix[1:]
        return GeminiSettings(
            api_key=key, base_url=base, api_version=settings.gemini_api_version or version,
            max_bytes=settings.max_image_bytes,
            call_timeout=settings.call_timeout or 300.0,
            retry=RetryPolicy.of(settings))


class GeminiBackend(HttpBackend):
    name = "gemini"
    label = "Gemini"
    base_var = "GOOGLE_GEMINI_BASE_URL"
    repeatable = False  # no idempotency key: a lost reply may have been billed
    settings: GeminiSettings

    async def render(self, request: Request, inputs: list[InputData], sink: Sink,
                     job: Job) -> Rendered:
        if job.lane not in CALL_LANES:  # sent as a call, it would be billed at standard price
            raise FrameFailed(f"a {job.lane}-lane frame is sent in a batch job, never as one "
                              "generateContent call (that would bill the standard price)")
        body = on_lane(inline_body(request, inputs), job.lane)
        retry = self.settings.retry
        if job.lane == FLEX:
            retry = replace(retry, attempts=max(retry.attempts, FLEX_ATTEMPTS))
        reply = await retry.run(lambda: self._generate(request.model, body, job.lane))
        image = reply_image(reply)
        if len(image) > self.settings.max_bytes:  # made, so billed
            raise FrameFailed(f"the image is {len(image):,} bytes, over the "
                              f"{self.settings.max_bytes:,}-byte cap; not retried, since "
                              "the image was made and may have been billed", maybe_billed=True)
        sink.write(image)
        return Rendered(task_id=None)

    async def _generate(self, model: str, body: dict[str, object],
                        lane: str = "standard") -> GeminiReply:
        url = f"{self.settings.base_url}/{self.settings.api_version}/models/{model}:generateContent"
        answer = await self.exchange("POST", url, {"x-goog-api-key": self.settings.api_key}, body)
        if answer.status != 200:
            error = self.error(answer, model, url, call=True)
            if lane == FLEX and _refuses_flex(answer, error):
                error = FrameFailed(f"this model does not take the flex lane: {error} (send it "
                                    "on the standard or batch lane: `lane:` in the manifest)")
            raise error
        try:
            if answer.problem:
                raise ReplyProblem(answer.problem)
            return validate(GeminiReply, answer.body)
        except ReplyProblem as exc:  # a 200 may carry a billed image: asking again pays twice
            raise FrameFailed(f"Gemini answered HTTP 200 with {exc}; not retried, since the "
                              "request may have been billed", maybe_billed=True) from None

    def error(self, answer: Answer, model: str, url: str, call: bool = False) -> Exception:
        """What `answer` means; `call`: it answered a generateContent (no idempotency key),
        where only a refusal that shows nothing ran is retried and any other 5xx is a lost
        reply, possibly billed."""
        status = answer.status
        try:
            error = validate(GeminiErrorBody, answer.body).error or GeminiError()
        except ReplyProblem:  # the status alone decides what to do
            error = GeminiError()
        if status == 404:
            # Google names the model it does not serve ("models/X is not found for API
            # version v1beta, ..."); any other 404 is from a wrong path, a proxy, a service
            # that is not Gemini: saying "retired" then would send the user the wrong way.
            if error.status == "NOT_FOUND" and model in (error.message or ""):
                return ModelUnknown("the Gemini API", model)
            return self.endpoint_missing(url,
                                         f"not Google's NOT_FOUND for model '{model}'")
        message = short(error.message or answer.reason)
        kind = f"{status} {short(error.status, 60)}" if error.status else str(status)
        if status in (401, 403) or (status == 400 and "api key" in message.lower()):
            return BuildStopped(f"Gemini refused the key (HTTP {kind}: {message}); "
                                "check GEMINI_API_KEY")
        refused = (status in CALL_RETRY_STATUSES or (status == 503 and error.status == SHED)
                   if call else status in RETRY_STATUSES)
        if refused:
            return Retryable(f"Gemini answered HTTP {kind}: {message}",
                             _retry_delay(error) or answer.delay)
        if call and status >= 500:  # a gateway's or a failed run's answer: maybe made
            return FrameFailed(f"Gemini answered HTTP {kind}: {message}; not retried, since the "
                               "image may have been made and billed before the answer was lost",
                               maybe_billed=True)
        return FrameFailed(f"Gemini rejected the request (HTTP {kind}): {message}")


def _refuses_flex(answer: Answer, error: Exception) -> bool:
    """A 400 that names the tier: the server does not take flex for this model (the catalogue
    marks flex unconfirmed for image models). Any other 400 is the request's own fault."""
    if answer.status != 400 or type(error) is not FrameFailed:  # a refused key stays so
        return False
    said = str(error).lower()
    return any(w in said for w in ("servicetier", "service_tier", "service tier", "flex"))


def _retry_delay(error: GeminiError) -> float | None:
    for detail in error.details or []:
        if (detail.type or "").endswith("google.rpc.RetryInfo"):
            try:
                delay = float((detail.retryDelay or "").rstrip("s"))
            except ValueError:
                return None
            return delay if math.isfinite(delay) else None
    return None


def reply_image(reply: GeminiReply) -> bytes:
    """The first non-thought inline image of the reply, or FrameFailed saying why there is none.

    Policy: Google prices image output per image, so a well-formed 200 without one (a block, a
    finishReason, text only) bills no image and is not counted as spent; an image part that
    cannot be decoded was made, and is counted as possibly billed."""
    if not reply.candidates:
        reason = reply.promptFeedback.blockReason if reply.promptFeedback else None
        raise FrameFailed(f"Gemini blocked the prompt ({short(reason, 60)})" if reason
                          else "Gemini's reply holds no candidates")
    candidate = reply.candidates[0]
    parts = candidate.content.parts if candidate.content else None
    texts = []
    for part in parts or []:
        if part.thought:
            continue
        if part.inlineData is not None:
            return _b64(part.inlineData.data)
        if part.text is not None:
            texts.append(part.text)
    finish = candidate.finishReason
    if finish and finish != "STOP":
        raise FrameFailed(f"Gemini made no image: {FINISH_REASONS.get(finish, 'it stopped')} "
                          f"({short(finish, 60)})")
    said = f"; the model said: {short(' '.join(texts), 200)}" if texts else ""
    raise FrameFailed(f"Gemini's reply holds no image{said}")


def _b64(data: str) -> bytes:
    """Standard or URL-safe base64, padded or not (the proto3 JSON mapping accepts all four)."""
    text = data.strip().replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise FrameFailed("Gemini's image data is not valid base64; not retried, since the "
                          "image was made and may have been billed", maybe_billed=True) from None


def open_gemini(jobs: int, rpm: int | None, settings: Settings) -> GeminiBackend:
    mine = GeminiSettings.of(settings)  # first: a missing key is said before anything opens
    return GeminiBackend(mine, pooled_client(jobs), RateLimiter(rpm))


def _batches(backend: Backend) -> Batches:
    from nbpipe.backends.gemini_batch import GeminiBatches  # it imports this module

    if not isinstance(backend, GeminiBackend):
        raise TypeError(f"not a Gemini backend: {backend!r}")
    return GeminiBatches(backend)


SPEC = BackendSpec(name="gemini", lanes=(Lane.CALL, Lane.BATCH), inputs=Inputs.INLINE,
                   key_env=KEY_VARS,
                   base_url_env="GOOGLE_GEMINI_BASE_URL", payload_style=PAYLOAD_STYLE,
                   open=open_gemini, describe=generate_body, on_lane=on_lane,
                   endpoint=lambda model: f"POST /v1beta/models/{model}:generateContent",
                   batch=_batches, label="Gemini")
