"""A fake of Gemini's generateContent (both /v1beta and /v1), as documented in api-facts.md.

Which models exist and what each accepts come from nbpipe's catalogue (one source of truth):
a model shut down by today (NBPIPE_TODAY moves the clock) answers 404 NOT_FOUND, as the real
API does. Replies carry a thought part and a text part before the image, as real ones may; Pro
models answer JPEG (real Pro often does). Key by `x-goog-api-key` or `?key=`. Faults, scripted:

    generate: 429 500 503 drop badkey 403 safety prompt-blocked no-image
              flex-shed flex-shed:429 (a flex request shed: 503 UNAVAILABLE, or 429
              RESOURCE_EXHAUSTED; script it n times)
              flex-refused (a flex request refused: 400 naming serviceTier)

A body may ask for a tier with `serviceTier` (standard, flex, priority; as google-genai sends
it): a model whose catalogue entry does not list flex refuses flex with a 400, and a flex image
is billed at the catalogue's flex price (`billed[i].lane`, `.usd`).

`holds.hold("reply")` keeps every billed reply until the test releases it; `delay` (seconds)
holds every billed reply that long (Gemini Pro takes 20-40 s); `generates`
counts the requests billed, and `billed` says of each what it asked, which fault it met and which
image it sent (a lost reply, `drop`, is billed for an image nobody received). More faults:
              slow(the reply drips in) gzip(labelled gzip, not compressed)
              redirect(307 to `redirect_to`) redirect-self(307 to the same URL)
              malformed:NAME (see MALFORMED) garbled(an image billed; its 200 is not JSON)
              bad-base64(an image billed; its data is not base64)
              gateway:NNN (an image billed; a gateway then answers HTTP NNN with an HTML page,
              as a proxy's 502/504 or Cloudflare's 524 does)
              truncated(an image billed; its data, valid base64, is the image's first half)
              echo-text echo-escaped echo-finish echo-block echo-error (the key comes back in
              a text part, JSON-escaped, finishReason, blockReason, or an error's fields)
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import re
import time
from dataclasses import dataclass
from decimal import Decimal

from nbpipe.catalog import builtin, today
from tests.fakes.server import BIG_NUMBER, DEEP_JSON, FakeServer, Handler, image_bytes


def models(when: dt.date | None = None) -> dict[str, dict]:
    """The Gemini models in service on `when` (default today), with what the server checks."""
    return {name: {"sizes": list(spec.resolutions) or None, "ratios": list(spec.aspect_ratios),
                   "max_images": spec.max_inputs, "max_bytes": spec.input_max_bytes,
                   "mimes": set(spec.input_types or ()),
                   "mime": "jpeg" if "-pro-" in name else "png", "lanes": spec.lanes}
            for name, spec in builtin().in_service("gemini", when or today()).items()}

ROUTE = re.compile(r"^/(v1beta|v1)/models/([^/:]+):generateContent$")
MALFORMED = {  # name → the raw reply
    "finish-list": (200, {"candidates": [{"finishReason": ["SAFETY"], "index": 0}]}),
    "parts-int": (200, {"candidates": [{"content": {"parts": 5}, "finishReason": "STOP"}]}),
    "details-int": (429, {"error": {"code": 429, "message": "slow down",
                                    "status": "RESOURCE_EXHAUSTED", "details": 5}}),
    "type-int": (429, {"error": {"code": 429, "message": "slow down",
                                 "status": "RESOURCE_EXHAUSTED",
                                 "details": [{"@type": 5, "retryDelay": "0s"}]}}),
    "candidates-dict": (200, {"candidates": {"0": {"finishReason": "STOP"}}}),
    "data-int": (200, {"candidates": [{"content": {"parts": [{"inlineData": {"data": 5}}]}}]}),
    "bignum": (200, BIG_NUMBER),
    "deep": (200, DEEP_JSON),
}


@dataclass
class Billed:
    """One generateContent the server billed."""

    prompt: str
    fault: str | None
    number: int = 0  # 1 for the first request billed: seeds its image (one of its own)
    image: bytes = b""  # the image the reply carried, if it carried one
    model: str = ""  # the model named in the URL (part of the request, not of the body)
    lane: str = "standard"  # or "batch": a line of a batch job (gemini_batch.py)
    usd: Decimal = Decimal(0)  # the catalogue's price of the image asked for, in this lane
    batch: str = ""  # the batch job's name ("batches/ID"), for a batch line
    key: str = ""  # the batch line's key, as its client named it

    @property
    def paid_image(self) -> bool:
        """An image was made and billed (delivered, or lost on the way back)."""
        return bool(self.image) or self.fault == "drop"


class FakeGemini(FakeServer):
    def __init__(self, key: str = "fake-gemini-key", today: dt.date | None = None):
        super().__init__()
        self.key = key
        self.today = today  # the server's own clock: Google may shut a model down early
        self.bodies: list[dict] = []
        self.billed: list[Billed] = []
        self.delay = 0.0
        self.redirect_to = ""  # where the `redirect` fault sends a client

    def dispatch(self, request: Handler, method: str) -> None:
        self.count("requests")
        match = ROUTE.match(request.route())
        if method != "POST" or not match:
            return self._error(request, 404, "NOT_FOUND", "no such method")
        key = request.headers.get("x-goog-api-key") or request.query().get("key")
        raw = request.body()
        fault = self.faults.next("generate")
        if key != self.key or fault == "badkey":
            return self._error(request, 400, "INVALID_ARGUMENT",
                               "API key not valid. Please pass a valid API key.")
        if fault == "403":
            return self._error(request, 403, "PERMISSION_DENIED", "permission denied")
        if fault == "slow":  # the reply drips in for seconds
            return request.drip(json.dumps({"candidates": []}).encode(), 5)
        if fault in ("redirect", "redirect-self"):
            return request.redirect((self.redirect_to if fault == "redirect" else "")
                                    + request.path)
        if fault and fault.startswith("malformed:"):
            status, reply = MALFORMED[fault.removeprefix("malformed:")]
            return request.send(status, raw=reply if isinstance(reply, bytes)
                                else json.dumps(reply).encode())
        if fault == "echo-error":
            request.reason = f"Bad {self.key}"
            return self._error(request, 400, f"KEY_{self.key}", f"key {self.key} is wrong",
                               details=[{"@type": f"type.example/{self.key}",
                                         "reason": self.key}])
        request.gzip_lie = fault == "gzip"
        if fault in ("429", "500", "503"):
            details = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "0s"}] \
                if fault == "429" else []
            status = {"429": "RESOURCE_EXHAUSTED", "500": "INTERNAL", "503": "UNAVAILABLE"}[fault]
            return self._error(request, int(fault), status, "try again later", details=details)
        model = match.group(2)
        spec = models(self.today).get(model)
        if spec is None:
            return self._error(request, 404, "NOT_FOUND", (
                f"models/{model} is not found for API version {match.group(1)}, or is not "
                "supported for generateContent. Call ListModels to see the list of available "
                "models and their supported methods."))
        try:
            body = json.loads(raw)
        except ValueError:
            return self._error(request, 400, "INVALID_ARGUMENT", "Invalid JSON payload")
        problem = validate(body, spec)
        if problem:
            return self._error(request, 400, "INVALID_ARGUMENT", problem)
        lane = tier(body)
        if lane == "flex" and fault == "flex-shed":
            return self._error(request, 503, "UNAVAILABLE", "The service is currently "
                               "unavailable for the flex tier; try again later.")
        if lane == "flex" and fault == "flex-shed:429":
            return self._error(request, 429, "RESOURCE_EXHAUSTED", "Flex capacity exhausted; "
                               "try again later.")
        if lane == "flex" and (fault == "flex-refused" or "flex" not in spec["lanes"]):
            return self._error(request, 400, "INVALID_ARGUMENT", f"serviceTier FLEX is not "
                               f"supported for models/{model}.")
        billed = Billed(_prompt(body), fault, model=model, lane=lane,
                        usd=image_price(model, body, lane))
        with self.lock:
            self.bodies.append(body)
            self.billed.append(billed)
            billed.number = len(self.bodies)
        self.count("generates")
        if self.delay:
            time.sleep(self.delay)
        self.holds.passing("reply")  # billed, the reply held until the test releases it
        if fault == "drop":
            return request.drop()
        if fault and fault.startswith("gateway:"):  # made and billed; the edge lost the reply
            billed.image = image_bytes(spec["mime"], str(billed.number))
            return request.send(int(fault.removeprefix("gateway:")), content_type="text/html",
                                raw=b"<html><body>upstream error</body></html>")
        if fault == "garbled":  # made and billed; the 200 that carries it is cut short
            billed.image = image_bytes(spec["mime"], str(billed.number))
            return request.send(200, raw=b'{"candidates": [')
        if fault == "echo-escaped":  # JSON escapes: the key is only there once parsed
            escaped = "".join(f"\\u{ord(c):04x}" for c in self.key)
            return request.send(200, raw=('{"candidates": [{"content": {"parts": [{"text": '
                                          f'"I saw {escaped}"}}]}}, "finishReason": "STOP"}}]}}'
                                          ).encode())
        request.send(200, self._reply(body, spec, billed))

    def _reply(self, body: dict, spec: dict, billed: Billed) -> dict:
        fault = billed.fault
        if fault in ("prompt-blocked", "echo-block"):
            reason = "SAFETY" if fault == "prompt-blocked" else f"SAFETY_{self.key}"
            return {"promptFeedback": {"blockReason": reason}}
        if fault in ("safety", "echo-finish"):
            reason = "IMAGE_SAFETY" if fault == "safety" else f"IMAGE_{self.key}"
            return {"candidates": [{"finishReason": reason, "index": 0}]}
        if fault == "echo-text":
            return {"candidates": [{"content": {"role": "model", "parts": [
                {"text": f"Your key is {self.key}."}]}, "finishReason": "STOP", "index": 0}]}
        parts = [{"text": "Planning the composition.", "thought": True},
                 {"text": "Here is the image."}]
        if fault != "no-image":
            seed = str(billed.number) + json.dumps(body)[:40]
            billed.image = image_bytes(spec["mime"], seed)
            data = base64.b64encode(billed.image).decode()
            if fault == "bad-base64":
                data = "*" + data
            if fault == "truncated":
                data = base64.b64encode(billed.image[:len(billed.image) // 2]).decode()
            parts.append({"inlineData": {"mimeType": f"image/{spec['mime']}", "data": data}})
        return {"candidates": [{"content": {"role": "model", "parts": parts},
                                "finishReason": "STOP", "index": 0}],
                "usageMetadata": {"promptTokenCount": 12, "candidatesTokenCount": 1290}}

    def _error(self, request: Handler, status: int, kind: str, message: str,
               details: list | None = None) -> None:
        request.send(status, {"error": {"code": status, "message": message, "status": kind,
                                        **({"details": details} if details else {})}})


def image_price(model: str, body: dict, lane: str = "standard") -> Decimal:
    """The catalogue's price of the image a valid request asks for, on `lane`."""
    size = ((body.get("generationConfig") or {}).get("imageConfig") or {}).get("imageSize")
    spec = builtin().get("gemini", model)
    return spec.price(size, lane) if spec is not None else Decimal(0)


TIERS = {"unspecified": "standard", "standard": "standard", "flex": "flex",
         "priority": "priority"}


def tier(body: dict) -> str:
    """The lane a valid body asks for by its `serviceTier` (case-insensitive, as the enum is)."""
    said = body.get("serviceTier")
    return TIERS[said.lower()] if isinstance(said, str) else "standard"


def _prompt(body: dict) -> str:
    """The text part of a valid body (validate has checked its shape)."""
    return next((p["text"] for p in body["contents"][0]["parts"] if "text" in p), "")


def validate(body: dict, spec: dict) -> str | None:
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        return "contents is required"
    parts = contents[0].get("parts") if isinstance(contents[0], dict) else None
    if not isinstance(parts, list) or not parts:
        return "contents[0].parts is required"
    images = 0
    for part in parts:
        inline = part.get("inlineData") or part.get("inline_data") if isinstance(part, dict) else None
        if inline is not None:
            images += 1
            mime = inline.get("mimeType") or inline.get("mime_type")
            if spec["mimes"] and mime not in spec["mimes"]:
                return f"unsupported mimeType {mime!r}"
            data = str(inline.get("data", "")).replace("-", "+").replace("_", "/")
            try:
                raw = base64.b64decode(data + "=" * (-len(data) % 4), validate=True)
            except (binascii.Error, ValueError):
                return "inlineData.data is not base64"
            if spec["max_bytes"] and len(raw) > spec["max_bytes"]:
                return "an inline image is too large"
        elif not isinstance(part, dict) or not isinstance(part.get("text"), str):
            return "a part must hold text or inlineData"
    if images > spec["max_images"]:
        return f"too many input images ({images})"
    config = body.get("generationConfig") or {}
    image_config = config.get("imageConfig") or {}
    ratio, size = image_config.get("aspectRatio"), image_config.get("imageSize")
    if ratio is not None and ratio not in spec["ratios"]:
        return f"unsupported aspectRatio {ratio!r}"
    if size is not None and (spec["sizes"] is None or size not in spec["sizes"]):
        return f"unsupported imageSize {size!r}"
    said = body.get("serviceTier")
    if said is not None and (not isinstance(said, str) or said.lower() not in TIERS):
        return f"Invalid value at 'service_tier' ({said!r})"
    modalities = config.get("responseModalities") or ["TEXT", "IMAGE"]
    if "IMAGE" not in modalities:
        return "responseModalities must include IMAGE for an image model"
    return None
