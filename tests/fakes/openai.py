"""A fake of OpenAI's Images API (/v1/images/generations, /v1/images/edits), as api-facts.md and
openai-python's types document it, strict: it rejects what the real API rejects.

Which models exist and what each takes (sizes, qualities, backgrounds, formats, input images)
come from nbpipe's catalogue (one source of truth): a model shut down by today (NBPIPE_TODAY
moves the clock) answers 404 `model_not_found`. Unknown parameters, `response_format`, a size
the model does not take, a transparent background in JPEG: 400 with `param`. Key by
`Authorization: Bearer`. Every PNG it makes carries a C2PA `caBX` chunk, as OpenAI's do, so a
test can see whether the bytes reached the output untouched. Faults, scripted on "images":

    429 (Retry-After and x-ratelimit headers) quota(429 insufficient_quota) 500 503
    drop(billed, the reply lost) moderation(400 moderation_blocked, not billed) badkey(401)
    malformed:NAME (billed: a 200 of the wrong shape, see MALFORMED) bad-400(an error whose
    fields have the wrong types) echo-key(a 400 whose message and param carry the key)

`holds.hold("reply")` keeps every billed reply until the test releases it; `delay` (seconds)
slows each; `billed` says of each request billed what it asked, its price (the catalogue's)
and the image it sent (a lost reply, `drop`, is billed for an image nobody received).
"""

from __future__ import annotations

import base64
import datetime as dt
import email.parser
import email.policy
import hashlib
import io
import json
import struct
import time
import zlib
from dataclasses import dataclass, field
from decimal import Decimal

from nbpipe.catalog import ModelSpec, builtin, today
from nbpipe.imagefmt import sniff
from tests.fakes.server import BIG_NUMBER, DEEP_JSON, FakeServer, Handler

GENERATE_FIELDS = {"model", "prompt", "n", "size", "quality", "background", "output_format",
                   "output_compression", "moderation", "user", "partial_images", "stream",
                   "response_format", "style"}
EDIT_FIELDS = GENERATE_FIELDS - {"moderation", "style"} | {"input_fidelity"}
C2PA = b"c2pa manifest store: made by the fake OpenAI"  # the payload of each PNG's caBX chunk
MALFORMED = {  # name → the raw 200 a billed request gets (an image made, its reply unusable)
    "data-dict": {"created": 1, "data": {"0": {"b64_json": "AAAA"}}},
    "b64-int": {"created": 1, "data": [{"b64_json": 5}]},
    "no-b64": {"created": 1, "data": [{"url": "https://example.com/x.png"}]},
    "empty-data": {"created": 1, "data": []},
    "bad-base64": {"created": 1, "data": [{"b64_json": "*not base64*"}]},
    "not-an-image": {"created": 1, "data": [{"b64_json": base64.b64encode(b"hello").decode()}]},
    "bignum": BIG_NUMBER,
    "deep": DEEP_JSON,
}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def models(when: dt.date | None = None) -> dict[str, ModelSpec]:
    """The OpenAI models in service on `when` (default today)."""
    return builtin().in_service("openai", when or today())


def with_chunk(png: bytes, kind: bytes, payload: bytes) -> bytes:
    """`png` with one more chunk before IEND (C2PA manifests travel in a `caBX` chunk)."""
    chunk = struct.pack(">I", len(payload)) + kind + payload + \
        struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)
    end = png.rindex(b"IEND") - 4
    return png[:end] + chunk + png[end:]


def made_image(fmt: str, seed: str, size: tuple[int, int] = (48, 32)) -> bytes:
    """A small real image in `fmt` (png | jpeg | webp), different for each seed; a PNG with
    a C2PA chunk."""
    from PIL import Image

    colour = tuple(hashlib.sha256(seed.encode()).digest()[:3])
    out = io.BytesIO()
    mode = "RGBA" if fmt in ("png", "webp") else "RGB"
    Image.new(mode, size, colour).save(out, {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}[fmt])
    data = out.getvalue()
    return with_chunk(data, b"caBX", C2PA) if fmt == "png" else data


@dataclass
class Billed:
    """One request the server billed (an image made: delivered, or lost on the way back)."""

    endpoint: str  # generations | edits
    model: str
    prompt: str
    params: dict[str, str]  # size, quality, background, output_format as sent (or defaulted)
    fault: str | None
    usd: Decimal
    inputs: list[bytes] = field(default_factory=list)  # the input files, in order
    body: dict = field(default_factory=dict)  # its fields as sent (files as their digests)
    number: int = 0
    image: bytes = b""


class Refused(Exception):
    def __init__(self, status: int, message: str, param: str | None = None,
                 code: str | None = None, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.param, self.code, self.kind = status, param, code, kind


class FakeOpenAI(FakeServer):
    def __init__(self, key: str = "sk-fake-openai-key", today: dt.date | None = None):
        super().__init__()
        self.key = key
        self.today = today
        self.billed: list[Billed] = []
        self.bodies: list[dict] = []  # every accepted request's fields (files as their digests)
        self.delay = 0.0  # seconds each billed reply takes (a build to interrupt meanwhile)
        self.prompt_max: int | None = None  # a tighter rule than the catalogue's, for a test

    @property
    def base(self) -> str:
        """What OPENAI_BASE_URL is set to (it ends with /v1, as the SDK's default does)."""
        return self.url + "/v1"

    def dispatch(self, request: Handler, method: str) -> None:
        self.count("requests")
        route = request.route()
        raw = request.body()
        endpoint = {"/v1/images/generations": "generations",
                    "/v1/images/edits": "edits"}.get(route)
        if method != "POST" or endpoint is None:
            return self._error(request, Refused(404, f"Invalid URL ({method} {route})"))
        if request.headers.get("Authorization") != f"Bearer {self.key}":
            return self._error(request, Refused(401, "Incorrect API key provided.",
                                                code="invalid_api_key"))
        fault = self.faults.next("images")
        try:
            billed = self._accept(request, endpoint, raw, fault)
        except Refused as refused:
            return self._error(request, refused)
        if billed is not None:
            self._bill(request, billed)

    def _accept(self, request: Handler, endpoint: str, raw: bytes,
                fault: str | None) -> Billed | None:
        if fault == "badkey":
            raise Refused(401, "Incorrect API key provided.", code="invalid_api_key")
        if fault == "429":
            self._limited(request)
            return None
        if fault == "quota":
            raise Refused(429, "You exceeded your current quota, please check your plan and "
                          "billing details.", code="insufficient_quota", kind="insufficient_quota")
        if fault == "bad-400":
            request.send(400, {"error": {"message": ["a", "list"], "type": 5, "param": {},
                                         "code": [1]}})
            return None
        if fault == "echo-key":
            raise Refused(400, f"Invalid key {self.key}", param=f"x-{self.key}",
                          code=f"c-{self.key}")
        if fault in ("500", "503"):
            raise Refused(int(fault), "The server had an error while processing your request.",
                          kind="server_error")
        fields, files = self._fields(request, endpoint, raw)
        spec, params = self._checked(endpoint, fields, files)
        if fault == "moderation":
            raise Refused(400, "Your request was rejected by the safety system.",
                          code="moderation_blocked", kind="image_generation_user_error")
        body = {**fields, **({"image[]": [sha(f) for f in files]} if files else {})}
        with self.lock:
            self.bodies.append(body)
        return Billed(endpoint, spec.name, str(fields["prompt"]), params, fault,
                      spec.price_of({**params, "resolution": self._tier(spec, params["size"])}),
                      files, body)

    def _limited(self, request: Handler) -> None:
        request.send(429, {"error": {"message": "Rate limit reached for images per minute.",
                                     "type": "requests", "param": None,
                                     "code": "rate_limit_exceeded"}},
                     headers={"retry-after-ms": "0", "retry-after": "0",
                              "x-ratelimit-limit-requests": "5",
                              "x-ratelimit-remaining-requests": "0",
                              "x-ratelimit-reset-requests": "0s"})

    def _fields(self, request: Handler, endpoint: str,
                raw: bytes) -> tuple[dict[str, object], list[bytes]]:
        kind = request.headers.get("Content-Type", "")
        if endpoint == "generations":
            if not kind.startswith("application/json"):
                raise Refused(400, "Content-Type must be application/json")
            try:
                body = json.loads(raw)
            except ValueError:
                raise Refused(400, "We could not parse the JSON body of your request.") from None
            if not isinstance(body, dict):
                raise Refused(400, "The body must be a JSON object.")
            return body, []
        if not kind.startswith("multipart/form-data"):
            raise Refused(400, "Invalid Content-Type header: multipart/form-data expected")
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + kind.encode() + b"\r\n\r\n" + raw)
        fields: dict[str, object] = {}
        files: list[bytes] = []
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            data = part.get_payload(decode=True) or b""
            if name in ("image", "image[]") and part.get_filename():
                files.append(data)
            elif name == "mask":
                raise Refused(400, "nbpipe's fake takes no mask", param="mask")
            else:
                fields[str(name)] = data.decode()
        return fields, files

    def _checked(self, endpoint: str, fields: dict[str, object],
                 files: list[bytes]) -> tuple[ModelSpec, dict[str, str]]:
        allowed = GENERATE_FIELDS if endpoint == "generations" else EDIT_FIELDS
        for name in fields:
            if name not in allowed:
                raise Refused(400, f"Unknown parameter: '{name}'.", param=name,
                              code="unknown_parameter")
        model = fields.get("model")
        spec = models(self.today).get(str(model))
        if spec is None:
            raise Refused(404, f"The model `{model}` does not exist or you do not have access "
                          "to it.", code="model_not_found")
        prompt = fields.get("prompt")
        if not isinstance(prompt, str) or not prompt:
            raise Refused(400, "Missing required parameter: 'prompt'.", param="prompt",
                          code="missing_required_parameter")
        limit = self.prompt_max or spec.prompt_max
        if limit is not None and len(prompt) > limit:
            raise Refused(400, f"Prompt too long: at most {limit} characters",
                          param="prompt", code="string_above_max_length")
        if "response_format" in fields or "style" in fields:
            name = "response_format" if "response_format" in fields else "style"
            raise Refused(400, f"Unknown parameter: '{name}'.", param=name,
                          code="unknown_parameter")
        if str(fields.get("n", 1)) != "1":
            raise Refused(400, "nbpipe's fake makes one image a request", param="n")
        params = self._params(spec, fields)
        if endpoint == "edits":
            self._inputs(spec, files)
        return spec, params

    def _params(self, spec: ModelSpec, fields: dict[str, object]) -> dict[str, str]:
        fmt = str(fields.get("output_format", "png"))
        if fmt not in (spec.formats or {}):
            raise Refused(400, f"Invalid value: '{fmt}'.", param="output_format",
                          code="invalid_value")
        quality = str(fields.get("quality", "auto"))
        if quality not in (*spec.qualities, "auto"):
            raise Refused(400, f"Invalid value: '{quality}'. Supported values are: "
                          f"{', '.join(spec.qualities)} and 'auto'.", param="quality",
                          code="invalid_value")
        background = str(fields.get("background", "auto"))
        if background not in (*spec.backgrounds, "auto"):
            raise Refused(400, f"Invalid value: '{background}'.", param="background",
                          code="invalid_value")
        if background == "transparent" and fmt not in ("png", "webp"):
            raise Refused(400, "Transparent background requires output_format png or webp.",
                          param="background")
        size = str(fields.get("size", "auto"))
        if not self._size_ok(spec, size):
            raise Refused(400, f"Invalid size '{size}' for {spec.name}.", param="size",
                          code="invalid_value")
        return {"size": size, "quality": quality, "background": background,
                "output_format": fmt}

    def _size_ok(self, spec: ModelSpec, size: str) -> bool:
        if size == "auto":
            return True
        if spec.sizes is not None:
            return size in spec.sizes.values()
        free = spec.free_size
        w, _, h = size.partition("x")
        if free is None or not (w.isdigit() and h.isdigit()) or not int(w) or not int(h):
            return False
        width, height = int(w), int(h)
        return width % free.multiple == 0 and height % free.multiple == 0 and \
            max(width, height) <= free.max_ratio * min(width, height) and \
            max(width, height) <= free.max_side and width * height <= free.max_pixels

    def _inputs(self, spec: ModelSpec, files: list[bytes]) -> None:
        if not files:
            raise Refused(400, "Missing required parameter: 'image'.", param="image")
        if len(files) > spec.max_inputs:
            raise Refused(400, f"Too many images: at most {spec.max_inputs}", param="image")
        for data in files:
            if sniff(data[:16]) is None:
                raise Refused(400, "Invalid image file: png, webp or jpg expected",
                              param="image", code="invalid_image_format")
            if spec.input_max_bytes is not None and len(data) > spec.input_max_bytes:
                raise Refused(400, "Image too large", param="image")

    @staticmethod
    def _tier(spec: ModelSpec, size: str) -> str | None:
        """The resolution tier a size falls in (the free-size models are priced per tier)."""
        if not spec.resolutions:
            return None
        w, _, h = size.partition("x")
        side = max(int(w), int(h)) if w.isdigit() and h.isdigit() else 1024
        tiers = builtin().tiers
        return next((t for t in spec.resolutions if tiers[t] >= side), spec.resolutions[-1])

    def _bill(self, request: Handler, billed: Billed) -> None:
        with self.lock:
            self.billed.append(billed)
            billed.number = len(self.billed)
        self.count("billed")
        seed = f"{billed.number}:{billed.prompt}"
        billed.image = made_image(billed.params["output_format"], seed)
        if self.delay:
            time.sleep(self.delay)
        self.holds.passing("reply")  # billed, the reply held until the test releases it
        if billed.fault == "drop":
            return request.drop()
        if billed.fault and billed.fault.startswith("malformed:"):
            reply = MALFORMED[billed.fault.removeprefix("malformed:")]
            return request.send(200, raw=reply if isinstance(reply, bytes)
                                else json.dumps(reply).encode())
        p = billed.params
        request.send(200, {
            "created": int(time.time()), "background": p["background"],
            "data": [{"b64_json": base64.b64encode(billed.image).decode()}],
            "output_format": p["output_format"], "quality": p["quality"], "size": p["size"],
            "usage": {"input_tokens": 50, "output_tokens": 1056, "total_tokens": 1106,
                      "input_tokens_details": {"image_tokens": 0, "text_tokens": 50}}})

    def _error(self, request: Handler, refused: Refused) -> None:
        request.send(refused.status, {"error": {"message": str(refused), "type": refused.kind,
                                                "param": refused.param, "code": refused.code}})
