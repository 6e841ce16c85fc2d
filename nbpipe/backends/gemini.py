"""Gemini's generateContent: one text part plus inlineData parts; images come back inline.

generateContent has no idempotency key: a reply lost after the request was sent is not retried
(it may have been billed); a reply the server refused (429, 5xx) is.
"""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass, field

import httpx

from nbpipe.backends.base import InputData, Job, Rendered, Sink
from nbpipe.backends.http import (HttpBackend, RetryPolicy, Retryable, api_key, env_number,
                                  json_body, network_error, redact, retry_after, short)
from nbpipe.errors import BuildStopped, FrameFailed, ModelUnknown
from nbpipe.plan.frame import Request

PAYLOAD_STYLE = "base64 data"
DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"
KEY_VARS = ("GEMINI_API_KEY", "GOOGLE_API_KEY")
RETRY_STATUSES = {408, 429, 500, 502, 503, 504}
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
                  mimes: list[str] | None = None) -> dict:
    """The POST /v1beta/models/{model}:generateContent body (the model is in the URL)."""
    parts: list[dict] = [{"text": request.prompt}]
    for i, data in enumerate(image_data):
        mime = mimes[i] if mimes else "image/png"
        parts.append({"inlineData": {"mimeType": mime, "data": data}})
    image_config = {}
    if "aspect_ratio" in request.params:
        image_config["aspectRatio"] = request.params["aspect_ratio"]
    if "resolution" in request.params:
        image_config["imageSize"] = request.params["resolution"]
    config: dict = {"responseModalities": ["IMAGE"]}
    if image_config:
        config["imageConfig"] = image_config
    return {"contents": [{"role": "user", "parts": parts}], "generationConfig": config}


@dataclass(frozen=True)
class GeminiSettings:
    api_key: str
    base_url: str = DEFAULT_BASE_URL
    api_version: str = "v1beta"  # "v1" also serves generateContent
    max_bytes: int = 64 << 20
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    @staticmethod
    def from_env(env: dict[str, str] | None = None) -> "GeminiSettings":
        env = dict(os.environ if env is None else env)
        key = api_key(env, KEY_VARS, "gemini")
        base = env.get("GOOGLE_GEMINI_BASE_URL", DEFAULT_BASE_URL).rstrip("/")
        version = "v1beta"
        for suffix in ("/v1beta", "/v1"):
            if base.endswith(suffix):
                base, version = base.removesuffix(suffix), suffix[1:]
        version = env.get("NBPIPE_GEMINI_API_VERSION", version)
        return GeminiSettings(
            api_key=key, base_url=base, api_version=version,
            max_bytes=int(env_number(env, "NBPIPE_MAX_IMAGE_BYTES", 64 << 20)),
            retry=RetryPolicy(base=env_number(env, "NBPIPE_RETRY_BASE", 1.0)))


class GeminiBackend(HttpBackend):
    name = "gemini"

    async def render(self, request: Request, inputs: list[InputData], sink: Sink,
                     job: Job) -> Rendered:
        missing = [i.image.ref for i in inputs if i.data is None]
        if missing:
            raise FrameFailed(f"Gemini takes input images inline; no bytes for {', '.join(missing)}")
        body = generate_body(request, [base64.b64encode(i.data).decode() for i in inputs],
                             [i.mime for i in inputs])
        reply = await self.settings.retry.run(lambda: self._generate(request.model, body))
        image = _image(reply)
        if len(image) > self.settings.max_bytes:
            raise FrameFailed(f"the image is {len(image):,} bytes, over the "
                              f"{self.settings.max_bytes:,}-byte cap")
        sink.write(image)
        return Rendered(task_id=None, cost=job.cost)

    async def _generate(self, model: str, body: dict) -> dict:
        url = f"{self.settings.base_url}/{self.settings.api_version}/models/{model}:generateContent"
        await self.limiter.wait()
        try:
            response = await self.client.post(url, json=body,
                                              headers={"x-goog-api-key": self.settings.api_key})
        except httpx.TransportError as exc:
            raise network_error(exc, request_sent_safe=False) from None
        if response.status_code == 200:
            return json_body(response)
        if response.status_code == 404:  # the model is the only name in the URL
            raise ModelUnknown("the Gemini API", model)
        raise self._error(response)

    def _error(self, response: httpx.Response) -> Exception:
        status = response.status_code
        try:
            error = json_body(response).get("error") or {}
        except FrameFailed:
            error = {}
        error = error if isinstance(error, dict) else {}
        message = short(redact(str(error.get("message") or response.reason_phrase),
                               self.settings.api_key))
        kind = error.get("status", "")
        if status in (401, 403) or (status == 400 and "api key" in message.lower()):
            return BuildStopped(f"Gemini refused the key (HTTP {status} {kind}: {message}); "
                                "check GEMINI_API_KEY")
        if status in RETRY_STATUSES:
            return Retryable(f"Gemini answered HTTP {status} {kind}: {message}",
                             _retry_delay(error) or retry_after(response.headers))
        return FrameFailed(f"Gemini rejected the request (HTTP {status} {kind}): {message}")


def _retry_delay(error: dict) -> float | None:
    for detail in error.get("details") or []:
        if isinstance(detail, dict) and detail.get("@type", "").endswith("google.rpc.RetryInfo"):
            try:
                return float(str(detail.get("retryDelay", "")).rstrip("s"))
            except ValueError:
                return None
    return None


def _image(reply: dict) -> bytes:
    """The first non-thought inline image of the reply, or FrameFailed saying why there is none."""
    candidates = reply.get("candidates") if isinstance(reply.get("candidates"), list) else []
    if not candidates:
        feedback = reply.get("promptFeedback") or {}
        reason = feedback.get("blockReason") if isinstance(feedback, dict) else None
        raise FrameFailed(f"Gemini blocked the prompt ({reason})" if reason
                          else "Gemini's reply holds no candidates")
    candidate = candidates[0] if isinstance(candidates[0], dict) else {}
    content = candidate.get("content") if isinstance(candidate.get("content"), dict) else {}
    texts = []
    for part in content.get("parts") or []:
        if not isinstance(part, dict) or part.get("thought"):
            continue
        inline = part.get("inlineData") or part.get("inline_data")
        if isinstance(inline, dict) and isinstance(inline.get("data"), str):
            return _b64(inline["data"])
        if isinstance(part.get("text"), str):
            texts.append(part["text"])
    finish = candidate.get("finishReason")
    if finish and finish != "STOP":
        raise FrameFailed(f"Gemini made no image: {FINISH_REASONS.get(finish, finish)} ({finish})")
    said = f"; the model said: {short(' '.join(texts), 200)}" if texts else ""
    raise FrameFailed(f"Gemini's reply holds no image{said}")


def _b64(data: str) -> bytes:
    """Standard or URL-safe base64, padded or not (the proto3 JSON mapping accepts all four)."""
    text = data.strip().replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise FrameFailed("Gemini's image data is not valid base64") from None
