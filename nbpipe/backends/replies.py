"""What the servers may answer, as validating models: a reply is read here or not at all.

Every reply is untrusted. Its body is parsed once (strict JSON, no NaN), every string in it
is scrubbed of the key, and the result is validated against the documented shape. A body that
does not fit is a `ReplyProblem` that the backend turns into a retry or a failed frame: an odd
reply never becomes an exception that escapes the backend. Fields nbpipe does not read are
ignored; fields it reads are typed, so a list where a string belongs is caught here, not later.
"""

from __future__ import annotations

import functools
import json
import re
import urllib.parse
from typing import Annotated, Any, Generic, TypeVar

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    FiniteFloat,
    StrictBool,
    StrictInt,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
)

M = TypeVar("M", bound=BaseModel)
D = TypeVar("D")
REDACTED = "[redacted]"


class ReplyProblem(Exception):
    """The reply is not JSON, or not the documented shape; the message says where."""


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json(raw: bytes, secret: str | None) -> Any:
    """The body as JSON with every string (keys too) scrubbed of `secret`."""
    if not raw.strip():
        raise ReplyProblem("an empty body")
    try:
        return scrub(json.loads(raw, parse_constant=_no_constants), secret)
    except (ValueError, RecursionError):  # bad JSON or encoding, endless ints, deep nesting
        raise ReplyProblem("a body that is not JSON") from None


@functools.lru_cache(maxsize=8)
def secret_forms(secret: str) -> tuple[str, ...]:
    """What of `secret` a server may echo, longest first: the key, its secret half when it is
    a pair (fal's `id:secret`: the id alone is no credential), and each of those
    percent-encoded (either hex case), as a URL or a form echoes it."""
    forms = {secret}
    half = secret.partition(":")[2]
    if len(half) >= 8:  # a shorter half would redact ordinary words, and is no real secret
        forms.add(half)
    for form in list(forms):
        quoted = urllib.parse.quote(form, safe="")
        forms.update({quoted, re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), quoted)})
    return tuple(sorted(forms, key=len, reverse=True))


def scrub(value: Any, secret: str | None) -> Any:
    """`value` with `secret` (in any form `secret_forms` names) replaced in every string it
    holds: servers echo keys back."""
    if not secret:
        return value
    if isinstance(value, str):
        for form in secret_forms(secret):
            value = value.replace(form, REDACTED)
        return value
    if isinstance(value, list):
        return [scrub(item, secret) for item in value]
    if isinstance(value, dict):
        return {scrub(k, secret): scrub(v, secret) for k, v in value.items()}
    return value


def validate(model: type[M], data: Any) -> M:
    """`data` as `model`, or ReplyProblem naming the first field that does not fit."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_input=False, include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "the body"
        raise ReplyProblem(f"a body that does not match the documented shape "
                           f"({where}: {first['msg']})") from None


def _or_none(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    try:
        return handler(value)
    except ValidationError:
        return None


# A field nbpipe only takes as a hint (a timing stamp, a message to show): a value of the wrong
# type reads as absent, instead of failing a reply whose substance is fine. Failing it would
# fail every poll of a paid task, at every build.
Stamp = Annotated[FiniteFloat | None, WrapValidator(_or_none)]
Words = Annotated[str | int | None, WrapValidator(_or_none)]


class Reply(BaseModel):
    """Base of every reply model: unknown fields are ignored, read ones are typed."""

    model_config = ConfigDict(extra="ignore", frozen=True)


# --- HiAPI --------------------------------------------------------------------------------------

class HiEnvelope(Reply, Generic[D]):
    """`{code, message, data}`; a refusal adds `error_code` and sends `data: null`. `code`
    equals the HTTP status in every reply HiAPI itself sends (a proxy's reply lacks it)."""

    code: Annotated[StrictInt | None, WrapValidator(_or_none)] = None
    message: str | None = None
    error_code: str | None = None
    data: D | None = None


# A task id goes into a URL path: a safe alphabet, so a hostile id cannot aim a poll elsewhere.
TASK_ID = r"^[A-Za-z0-9][A-Za-z0-9._~-]{0,127}$"


class HiCreated(Reply):
    taskId: str = Field(pattern=TASK_ID)


class HiOutput(Reply):
    url: str
    expireAt: Stamp = None


class HiTaskError(Reply):
    code: Words = None
    message: Words = None


class HiTask(Reply):
    status: str
    created: Stamp = None
    completed: Stamp = None
    output: list[HiOutput] | None = None
    error: HiTaskError | None = None


# --- Gemini -------------------------------------------------------------------------------------

class GeminiInline(Reply):
    mimeType: str | None = Field(None, validation_alias=AliasChoices("mimeType", "mime_type"))
    data: str


class GeminiPart(Reply):
    text: str | None = None
    thought: StrictBool | None = None
    inlineData: GeminiInline | None = Field(
        None, validation_alias=AliasChoices("inlineData", "inline_data"))


class GeminiContent(Reply):
    parts: list[GeminiPart] | None = None


class GeminiCandidate(Reply):
    content: GeminiContent | None = None
    finishReason: str | None = None


class GeminiFeedback(Reply):
    blockReason: str | None = None


class GeminiReply(Reply):
    candidates: list[GeminiCandidate] | None = None
    promptFeedback: GeminiFeedback | None = None


class GeminiDetail(Reply):
    type: str | None = Field(None, alias="@type")
    retryDelay: str | None = None


class GeminiError(Reply):
    message: str | None = None
    status: str | None = None
    details: list[GeminiDetail] | None = None


class GeminiErrorBody(Reply):
    error: GeminiError | None = None


# --- OpenAI Images ------------------------------------------------------------------------------

class OpenAIImage(Reply):
    b64_json: str | None = None


class OpenAIImages(Reply):
    """`{created, data: [{b64_json}], usage}`: gpt-image models always answer base64."""

    data: list[OpenAIImage]


class OpenAIError(Reply):
    message: Words = None
    type: Words = None
    param: Words = None
    code: Words = None


class OpenAIErrorBody(Reply):
    error: OpenAIError | None = None


# --- fal's queue --------------------------------------------------------------------------------

# A request id as fal hands them out (a UUID): a safe alphabet, as it is shown and journalled.
FAL_REQUEST_ID = r"^[A-Za-z0-9][A-Za-z0-9._~-]{0,127}$"


class FalQueued(Reply):
    """The submit's reply: the request's id and the URLs to poll and fetch it at (used as
    given, never built: fal's docs say so)."""

    request_id: str = Field(pattern=FAL_REQUEST_ID)
    status_url: str
    response_url: str


class FalStatus(Reply):
    status: str
    queue_position: Annotated[StrictInt | None, WrapValidator(_or_none)] = None
    error: Words = None
    error_type: Words = None


class FalImage(Reply):
    url: str
    content_type: Words = None


class FalResult(Reply):
    images: list[FalImage]
    has_nsfw_concepts: list[StrictBool | None] | None = None


class FalProblem(Reply):
    """One entry of a model error's `detail` list: where (`loc`), what (`msg`), `type`."""

    loc: list[str | int] | None = None
    msg: Words = None
    type: Words = None


class FalError(Reply):
    """fal's error body: `detail` is a list of problems (model errors: validation, content
    policy) or one string (request errors), with `error_type` beside it."""

    detail: list[FalProblem] | str | None = None
    error_type: Words = None
