"""A fake of fal's queue as documented in ../shared/api-facts.md ("fal queue") and fal's docs.

    POST /{model_id}                         → {request_id, status_url, response_url, cancel_url,
                                                queue_position}   (Authorization: Key KEY)
    GET  /{owner}/{app}/requests/{id}/status → 202 IN_QUEUE | IN_PROGRESS, 200 COMPLETED
    GET  /{owner}/{app}/requests/{id}        → 200 {images: [{url, content_type, width, height}],
                                                seed, has_nsfw_concepts}; 400 while in progress;
                                                422 {detail: [{loc, msg, type}]} for an input
                                                the model refuses; 5xx with error_type
    PUT  /{owner}/{app}/requests/{id}/cancel → 202 while IN_QUEUE, else 400
    GET  /media/{id}.{ext}                   → the image (its URL expires: fault `expired`)

Status and result URLs use the owner and app only (owner/app/path → owner/app), as fal's do:
a client that builds them from the model id polls a 404. Strict: the input is checked per model
as fal's schemas state it (at the result, where fal's runner answers), with the models and
limits of nbpipe's catalogue; unknown models answer 404 at submit, another account's request
404 at every poll.

Money: a request queued that will make an image is billed (once queued, fal runs it: it is
never dropped, whoever asks for it later), `billed` lists each: a model with size presets (FLUX)
per megapixel, rounded up, at the catalogue's price; another (Kontext) per image. A request
refused (422) or failed on fal's side (5xx) is not billed.

Faults, consumed in order:
    submit: lost (queued, the reply dropped) 502 (queued, a gateway's error page instead of the
            reply) garbage(queued, 200 not JSON) 429 500 503 401 404 (nothing queued)
    request: nsfw fail(a 500 runner failure, not billed) (applied to the next request submitted)
    status: 429 503 drop
    result: 503 drop
    media: expired(404: the URL no longer serves)
Holds: the point "queue" keeps every request IN_QUEUE while it holds (queue latency, as long as
the test wants); "submitted" holds a submit's reply once it is queued (a kill then lands
between sending and hearing); "POST /..." holds a submit before it is read.

`tls=True` serves https with a throwaway certificate for 127.0.0.1 (`cert_file`: its PEM, for
a client to trust): fal-client speaks only https.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import ssl
import tempfile
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from nbpipe.catalog import ModelSpec, builtin, today
from tests.fakes.server import FakeServer, Handler, image_bytes

SIZES = {"square_hd": (1024, 1024), "square": (512, 512), "portrait_4_3": (768, 1024),
         "portrait_16_9": (576, 1024), "landscape_4_3": (1024, 768),
         "landscape_16_9": (1024, 576)}  # fal's image_size presets
FLUX_FIELDS = {"prompt", "image_size", "num_inference_steps", "guidance_scale", "seed",
               "num_images", "output_format", "enable_safety_checker", "sync_mode",
               "acceleration"}
EDIT_FIELDS = {"prompt", "image_url", "aspect_ratio", "seed", "guidance_scale", "num_images",
               "output_format", "safety_tolerance", "sync_mode", "enhance_prompt"}
MEGAPIXEL = 1 << 20  # fal prices a 1024x1024 image at one megapixel's rate


@dataclass
class Bill:
    request_id: str
    model: str
    usd: Decimal


@dataclass
class Queued:
    request_id: str
    model: str
    app: str
    body: dict
    owner: str
    outcome: str = "ok"  # ok | nsfw | fail
    polls: int = 0
    status: str = "IN_QUEUE"
    cancelled: bool = False
    billed: bool = False
    problems: list = field(default_factory=list)
    media_faults: list = field(default_factory=list)  # what each download of its image met
    make: Callable[[str, str], bytes] = image_bytes  # (format, request id) → its bytes

    def image(self) -> bytes:
        """The image it makes (a real one, distinct per request)."""
        return self.make(self.body.get("output_format", "jpeg"), self.request_id)


class FakeFal(FakeServer):
    def __init__(self, key: str = "fal-fake-key-id:fal-fake-secret", tls: bool = False,
                 make_image: Callable[[str, str], bytes] = image_bytes):
        super().__init__()
        self.make_image = make_image
        self.key = key
        self.keys = {key}
        self.requests: dict[str, Queued] = {}
        self.billed: list[Bill] = []
        self.submitted: list[dict] = []  # every body queued, in order
        self._lock = threading.Lock()
        self.cert_file = ""
        self.answer_base = ""  # where the submit's reply says to poll: its own URL unless set
        if tls:
            self._serve_tls()

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"{'https' if self.cert_file else 'http'}://{host}:{port}"

    @property
    def host(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"{host}:{port}"

    def add_account(self, key: str) -> None:
        self.keys.add(key)

    def spent(self) -> Decimal:
        return sum((b.usd for b in self.billed), Decimal(0))

    # --- routing ------------------------------------------------------------------------------

    def dispatch(self, request: Handler, method: str) -> None:
        path = request.route().strip("/")
        self.count("requests")
        if path.startswith("media/"):
            return self._media(request, path.removeprefix("media/"))
        if request.headers.get("Authorization") not in {f"Key {k}" for k in self.keys}:
            return request.send(401, {"detail": "No user found for Key ID and Secret"})
        parts = path.split("/")
        if "requests" in parts:
            at = parts.index("requests")
            app, rest = "/".join(parts[:at]), parts[at + 1:]
            if method == "GET" and len(rest) == 2 and rest[1] == "status":
                return self._status(request, app, rest[0])
            if method == "GET" and len(rest) == 1:
                return self._result(request, app, rest[0])
            if method == "PUT" and len(rest) == 2 and rest[1] == "cancel":
                return self._cancel(request, app, rest[0])
        if method == "POST":
            return self._submit(request, path)
        request.send(404, {"detail": "Not Found"})

    # --- submit -------------------------------------------------------------------------------

    def _submit(self, request: Handler, model: str) -> None:
        raw = request.body()
        fault = self.faults.next("submit")
        if fault in ("429", "500", "503"):
            return request.send(int(fault), {"detail": "try again",
                                             "error_type": "runner_scheduling_failure"}
                                if fault != "429" else {"detail": "Too many requests"},
                                {"Retry-After": "0"})
        if fault == "401":
            return request.send(401, {"detail": f"Invalid key {self.key}"})
        if model not in models() or fault == "404":
            return request.send(404, {"detail": f"Application '{model}' not found"})
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return request.send(422, {"detail": [{"loc": ["body"], "msg": "Input should be a "
                                                  "valid dictionary", "type": "dict_type"}]})
        queued = self._queue(model, body, caller(request))
        self.holds.passing("submitted")  # queued; the reply waits while the test holds it
        if fault == "lost":  # queued and (once done) billed; the reply never comes
            return request.drop()
        if fault == "garbage":
            return request.send(200, raw=b"<html>gateway</html>", content_type="text/html")
        if fault == "502":  # queued; a gateway lost the queue's answer on the way back
            return request.send(502, raw=b"<html>nginx: bad gateway</html>",
                                content_type="text/html")
        base = f"{self.answer_base or self.url}/{queued.app}/requests/{queued.request_id}"
        request.send(200, {"request_id": queued.request_id, "response_url": base,
                           "status_url": f"{base}/status", "cancel_url": f"{base}/cancel",
                           "queue_position": 0})

    def _queue(self, model: str, body: dict, owner: str) -> Queued:
        request_id = str(uuid.uuid4())
        queued = Queued(request_id, model, "/".join(model.split("/")[:2]), body, owner,
                        make=self.make_image)
        outcome = self.faults.next("request")
        if outcome in ("nsfw", "fail"):
            queued.outcome = outcome
        queued.problems = validate(model, body)
        with self._lock:
            self.requests[request_id] = queued
            self.submitted.append(body)
            if queued.outcome != "fail" and not queued.problems:
                # queued is as good as billed: fal never drops a request, and runs it whether
                # or not anyone asks for it again
                queued.billed = True
                self.billed.append(Bill(request_id, model, price(queued)))
        self.count("submits")
        return queued

    # --- status and result --------------------------------------------------------------------

    def _find(self, request: Handler, app: str, request_id: str) -> Queued | None:
        queued = self.requests.get(request_id)
        if queued is None or queued.app != app or queued.owner != caller(request):
            request.send(404, {"detail": f"Request {request_id} not found"})
            return None
        return queued

    def _status(self, request: Handler, app: str, request_id: str) -> None:
        self.count("statuses")
        fault = self.faults.next("status")
        if fault in ("429", "503"):
            return request.send(int(fault), {"detail": "slow down"}, {"Retry-After": "0"})
        if fault == "drop":
            return request.drop()
        queued = self._find(request, app, request_id)
        if queued is None:
            return
        with self._lock:
            self._advance(queued)
        base = f"{self.url}/{queued.app}/requests/{queued.request_id}"
        doc: dict = {"status": queued.status, "request_id": request_id, "response_url": base,
                     "status_url": f"{base}/status", "cancel_url": f"{base}/cancel"}
        if queued.status == "IN_QUEUE":
            doc["queue_position"] = 0
        else:
            doc["logs"] = None
        if queued.status == "COMPLETED":
            doc["metrics"] = {"inference_time": 0.5}
            if queued.problems or queued.outcome == "fail":
                doc["error"] = "Unprocessable" if queued.problems else "Internal error"
                doc["error_type"] = "validation_error" if queued.problems \
                    else "runner_server_error"
        request.send(200 if queued.status == "COMPLETED" else 202, doc)

    def _advance(self, queued: Queued) -> None:
        """One step a poll: IN_QUEUE → IN_PROGRESS → COMPLETED, unless the queue is held."""
        queued.polls += 1
        if queued.status == "COMPLETED" or self.holds.holding("queue") or queued.cancelled:
            return
        queued.status = "IN_PROGRESS" if queued.status == "IN_QUEUE" else "COMPLETED"

    def _result(self, request: Handler, app: str, request_id: str) -> None:
        self.count("results")
        fault = self.faults.next("result")
        if fault == "503":
            return request.send(503, {"detail": "busy"}, {"Retry-After": "0"})
        if fault == "drop":
            return request.drop()
        queued = self._find(request, app, request_id)
        if queued is None:
            return
        if queued.status != "COMPLETED":
            return request.send(400, {"detail": "Request is still in progress"})
        if queued.problems:
            return request.send(422, {"detail": queued.problems},
                                {"X-Fal-Error-Type": "validation_error"})
        if queued.outcome == "fail":
            return request.send(500, {"detail": "Runner failed", "error_type":
                                      "runner_server_error"},
                                {"X-Fal-Error-Type": "runner_server_error"})
        fmt = queued.body.get("output_format", "jpeg")
        width, height = size_of(queued)
        request.send(200, {"images": [{"url": f"{self.url}/media/{request_id}."
                                              f"{'png' if fmt == 'png' else 'jpg'}",
                                       "content_type": f"image/{fmt}", "width": width,
                                       "height": height}],
                           "seed": 42, "has_nsfw_concepts": [queued.outcome == "nsfw"],
                           "prompt": queued.body.get("prompt"), "timings": {}})

    def _cancel(self, request: Handler, app: str, request_id: str) -> None:
        queued = self._find(request, app, request_id)
        if queued is None:
            return
        if queued.status != "IN_QUEUE":
            return request.send(400, {"status": "ALREADY_COMPLETED"})
        queued.cancelled = True
        request.send(202, {"status": "CANCELLATION_REQUESTED"})

    def _media(self, request: Handler, name: str) -> None:
        self.count("downloads")
        request_id, _, ext = name.partition(".")
        queued = self.requests.get(request_id)
        fault = self.faults.next("media")
        if queued is not None and fault:
            queued.media_faults.append(fault)
        if fault == "expired" or queued is None or queued.status != "COMPLETED" or \
                not queued.billed:
            return request.send(404, raw=b"expired", content_type="text/plain")
        request.send(200, raw=queued.image(),
                     content_type="image/jpeg" if ext == "jpg" else "image/png")

    # --- TLS ----------------------------------------------------------------------------------

    def _serve_tls(self) -> None:
        cert, key = throwaway_cert("127.0.0.1")
        folder = Path(tempfile.mkdtemp(prefix="fakefal-"))
        (folder / "cert.pem").write_bytes(cert)
        (folder / "key.pem").write_bytes(key)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(folder / "cert.pem", folder / "key.pem")
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.cert_file = str(folder / "cert.pem")


def caller(request: Handler) -> str:
    return str(request.headers.get("Authorization", "")).removeprefix("Key ")


def size_of(queued: Queued) -> tuple[int, int]:
    size = queued.body.get("image_size", "landscape_4_3")
    if isinstance(size, dict):
        return int(size.get("width", 1024)), int(size.get("height", 768))
    return SIZES.get(size, (1024, 768))


def models() -> dict[str, ModelSpec]:
    """The fal models in service today, as nbpipe's catalogue states them."""
    return builtin().in_service("fal", today())


def price(queued: Queued) -> Decimal:
    spec = models()[queued.model]
    if not spec.sizes:
        return spec.price(None)
    width, height = size_of(queued)
    return spec.price(None) * math.ceil(width * height / MEGAPIXEL)


def validate(model: str, body: dict) -> list[dict]:
    """What fal's schema for `model` refuses in `body`: its 422 `detail` list."""
    problems = []

    def refuse(where: str, msg: str, kind: str) -> None:
        problems.append({"loc": ["body", where], "msg": msg, "type": kind})

    spec = models()[model]
    edit = spec.max_inputs > 0
    for name in sorted(set(body) - (EDIT_FIELDS if edit else FLUX_FIELDS)):
        refuse(name, "Extra inputs are not permitted", "extra_forbidden")
    if not isinstance(body.get("prompt"), str) or not body["prompt"]:
        refuse("prompt", "Field required", "missing")
    elif "flagged" in body["prompt"]:
        problems.append({"loc": ["body", "prompt"], "msg": "The content was flagged by a "
                         "content checker.", "type": "content_policy_violation",
                         "categories": ["violence"]})
    if edit:
        url = body.get("image_url")
        if not isinstance(url, str) or not url.startswith(("https://", "http://", "data:")):
            refuse("image_url", "Field required", "missing")
        if "aspect_ratio" in body and body["aspect_ratio"] not in spec.aspect_ratios:
            refuse("aspect_ratio", "Input should be one of the listed ratios", "enum")
    elif "image_size" in body and not (isinstance(body["image_size"], dict) or
                                       body["image_size"] in SIZES):
        refuse("image_size", "Input should be a size preset or {width, height}", "enum")
    if body.get("output_format", "jpeg") not in (spec.formats or {}).values():
        refuse("output_format", "Input should be 'jpeg' or 'png'", "enum")
    return problems


def throwaway_cert(host: str) -> tuple[bytes, bytes]:
    """A self-signed certificate for `host` (an IP address) and its key, both PEM."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(
                ipaddress.ip_address(host))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))
