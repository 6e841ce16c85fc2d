"""A fake of HiAPI's /v1/tasks API as documented in ../shared/api-facts.md.

Envelopes `{code, message, data}` (errors add `error_code`), ids `tk-hiapi-` + 26 characters,
the status walk queued → handling → archiving → success | fail (one step per poll),
`completed: 0` until terminal, output URLs with `expireAt`, idempotent replay, and per-model
validation answering 400 INVALID_REQUEST. Faults are scripted per endpoint:

    create:   429 503 drop(after creating) 400 401 402 404(no such model) 409 echo-id
    poll:     429 503 drop garbage retry-later(503 with Retry-After: 3600)
    task:     fail stuck weird(an unknown status first) fileurl (applied to the next task created)
              url:URL(the output URL it hands out, e.g. one on a link-local address)
              vanish(HiAPI forgets the task: every poll answers 404 NOT_FOUND)
              echo-fail echo-url(the key in error.code/message, in a non-http output URL)
              msstamps(`completed` in milliseconds: an absurd latency) isostamps(as strings)
              msexpiry(`expireAt` in milliseconds) ttlexpiry(`expireAt` a lifetime: 604800)
    download: truncate notimage gone slow huge loop(redirects to itself)
              redirect(to `redirect_to`) redirect-file(to file:///etc/passwd) gzip
    replay:   429:N (only a create that would replay an existing task: the resend of a
              lost reply is held off for N seconds; counted as `held replays`)
    create, poll: 429:N(429 with Retry-After: N seconds)
              slow(the reply drips in) gzip(labelled gzip, not compressed)
              redirect(307 to `redirect_to`) redirect-self(307 to the same URL)
              malformed:NAME (see MALFORMED)

Idempotency keys are remembered for `key_window` seconds (HiAPI: about 24 h) of the fake's own
clock, which only the test moves (`advance(seconds)`): a create after that window is a new,
billed task, as at HiAPI, so a client that re-creates instead of polling a task it knows pays
twice. `pause_create` (tests/fakes/pause.py), once armed, holds the next create after the task
is made (billed) and loses its reply: the moment a kill lands between sending and hearing.

Accounts: `add_account(key)` makes another valid key. A task belongs to the account that
created it; polled with another account's key it answers 404, as documented.

Each task keeps the download faults it met (`download_faults`): a model of what was paid knows
which images a fault may have cost.
"""

from __future__ import annotations

import hashlib
import json
import random
import string
import threading
import time
from dataclasses import dataclass, field

from nbpipe.catalog import builtin, today
from tests.fakes.pause import Pause
from tests.fakes.server import BIG_NUMBER, DEEP_JSON, FakeServer, Handler, image_bytes

DAY = 86400.0  # how long HiAPI remembers an Idempotency-Key (about 24 h)


def models() -> dict[str, dict]:
    """The HiAPI models in service today, with what the server checks of each: the limits of
    nbpipe's catalogue (a limit it leaves open, such as an unstated prompt maximum, is not
    checked)."""
    return {name: {"prompt_max": spec.prompt_max, "aspects": list(spec.aspect_ratios),
                   "resolutions": list(spec.resolutions) or None,
                   "formats": list((spec.formats or {}).values()), "max_images": spec.max_inputs}
            for name, spec in builtin().in_service("hiapi", today()).items()}


WALK = ["queued", "handling", "archiving"]
MALFORMED = {  # endpoint → name → the raw reply
    "create": {"error-code-list": (400, b'{"code": 400, "message": "no", "data": null, '
                                        b'"error_code": ["INVALID_REQUEST"]}'),
               "taskid-int": (200, b'{"code": 200, "message": "success", "data": {"taskId": 7}}'),
               "bignum": (200, BIG_NUMBER)},
    "poll": {"bignum": (200, BIG_NUMBER), "deep": (200, DEEP_JSON),
             "nan": (200, b'{"code": 200, "data": {"status": "success", "created": NaN}}'),
             "status-list": (200, b'{"code": 200, "data": {"status": ["success"]}}'),
             "output-dict": (200, b'{"code": 200, "data": {"status": "success", '
                                  b'"output": {"url": "http://x/y.png"}}}')},
}


@dataclass
class Task:
    task_id: str
    model: str
    input: dict
    created: int
    outcome: str = "success"  # success | fail | stuck
    started: float = 0.0
    weird: bool = False
    fileurl: bool = False
    echo: str = ""  # echo-fail | echo-url: the key appears in the reply
    url: str = ""  # an output URL other than the real one
    stamps: str = ""  # ms: `completed` in milliseconds; iso: every stamp an ISO 8601 string
    expiry: str = ""  # ms: `expireAt` in milliseconds; ttl: seconds to live, not a time
    polls: int = 0
    status: str = "queued"
    completed: int = 0
    image: bytes = b""
    creates: int = 1
    owner: str = ""  # the key of the account that created it
    download_faults: list = field(default_factory=list)  # what each download of it met


class FakeHiApi(FakeServer):
    """`latency`: None walks one status per poll; a number of seconds walks by the clock."""

    def __init__(self, key: str = "sk-fake-hiapi-key", latency: float | None = None,
                 image_size: tuple[int, int] = (64, 48), make_image=None):
        super().__init__()
        self.key = key
        self.keys = {key}  # every account's key (see add_account)
        self.latency = latency
        self.make_image = make_image or (lambda fmt, task_id: image_bytes(fmt, task_id, image_size))
        self.tasks: dict[str, Task] = {}
        # (account, Idempotency-Key) → (body digest, task id, when): keys are per account
        self.idempotency: dict[tuple[str, str], tuple[str, str, float]] = {}
        self.clock = 0.0  # seconds of the fake's own time: only `advance` moves it
        self.key_window = DAY
        self.pause_create = Pause()
        self.created_keys: list[str] = []  # the Idempotency-Key of every task really created
        self.forgotten_keys: list[str] = []  # keys that created again after the window
        self.redirect_to = ""  # where the `redirect` fault sends a client
        self._lock = threading.Lock()

    def add_account(self, key: str) -> None:
        self.keys.add(key)

    def advance(self, seconds: float) -> None:
        """Time passes at HiAPI: keys older than the window are forgotten."""
        with self._lock:
            self.clock += seconds

    # --- routing ------------------------------------------------------------------------------

    def dispatch(self, request: Handler, method: str) -> None:
        path = request.route()
        self.count("requests")
        if path.startswith("/files/"):
            return self._file(request, path.removeprefix("/files/"))
        if request.headers.get("Authorization") not in {f"Bearer {k}" for k in self.keys}:
            return self._error(request, 401, "UNAUTHORIZED", "invalid API key")
        if method == "POST" and path == "/v1/tasks":
            return self._create(request)
        if method == "GET" and path == "/v1/tasks":
            return self._list(request)
        if method == "GET" and path.startswith("/v1/tasks/"):
            return self._poll(request, path.removeprefix("/v1/tasks/"))
        self._error(request, 404, "NOT_FOUND", "no such route")

    def _error(self, request: Handler, status: int, error_code: str, message: str,
               headers: dict | None = None) -> None:
        request.send(status, {"code": status, "message": message, "data": None,
                              "error_code": error_code}, headers)

    # --- create -------------------------------------------------------------------------------

    def _transport_fault(self, request: Handler, endpoint: str, fault: str | None) -> bool:
        """Serve the faults every endpoint understands; True when the reply is sent."""
        if fault == "gzip":
            request.gzip_lie = True
        elif fault == "slow":  # the reply drips in for seconds
            request.drip(json.dumps(envelope({"taskId": "tk-late"})).encode(), 5)
            return True
        elif fault in ("redirect", "redirect-self"):
            base = self.redirect_to if fault == "redirect" else ""
            request.redirect(base + request.path)
            return True
        elif fault and fault.startswith("malformed:"):
            status, raw = MALFORMED[endpoint][fault.removeprefix("malformed:")]
            request.send(status, raw=raw)
            return True
        elif fault and fault.startswith("429:"):  # a rate limit that names its pause
            self._error(request, 429, "RATE_LIMITED", "too many requests",
                        {"Retry-After": fault.removeprefix("429:")})
            return True
        return False

    def _create(self, request: Handler) -> None:
        raw = request.body()
        fault = self.faults.next("create")
        if self._transport_fault(request, "create", fault):
            return
        if fault in ("429", "503"):
            return self._error(request, int(fault), "RATE_LIMITED" if fault == "429"
                               else "SERVICE_UNAVAILABLE", "try again", {"Retry-After": "0"})
        if fault in ("401", "402"):
            return self._error(request, int(fault), "UNAUTHORIZED" if fault == "401"
                               else "INSUFFICIENT_BALANCE", f"refused ({self.key})")
        if fault == "400":
            return self._error(request, 400, "INVALID_REQUEST", "prompt rejected by policy")
        if fault == "404":
            return self._error(request, 404, "NOT_FOUND", "model not found")
        try:
            body = json.loads(raw)
        except ValueError:
            return self._error(request, 400, "INVALID_REQUEST", "body is not JSON")
        problem = validate(body)
        if problem:
            return self._error(request, 400, "INVALID_REQUEST", problem)
        key = request.headers.get("Idempotency-Key")
        digest = hashlib.sha256(raw).hexdigest()
        account = caller(request)
        with self._lock:
            known = self.idempotency.get((account, key)) if key else None
            if known and self.clock - known[2] >= self.key_window:
                del self.idempotency[(account, key)]  # forgotten: this create is a new task
                self.forgotten_keys.append(key)
                known = None
            if known:
                known_digest, task_id, _ = known
                if known_digest != digest:
                    return self._error(request, 422, "IDEMPOTENCY_KEY_MISMATCH",
                                       "Idempotency-Key reused with another body")
                held = self.faults.next("replay")
                if held and self._transport_fault(request, "create", held):
                    return self.count("held replays")
                if fault == "409":
                    return self._error(request, 409, "IDEMPOTENCY_KEY_PROCESSING", "in flight",
                                       {"Retry-After": "0"})
                self.count("replays")
                return request.send(200, envelope({"taskId": task_id}),
                                    {"Idempotent-Replay": "true"})
            task = self._new_task(body, account)
            if key:
                self.idempotency[(account, key)] = (digest, task.task_id, self.clock)
            self.created_keys.append(key or "")
        self.count("creates")
        if self.pause_create.hold():  # billed; the reply waits, then is lost
            return request.drop()
        if fault == "drop":  # the task exists and is billed; the reply is lost
            return request.drop()
        if fault == "echo-id":
            return request.send(200, envelope({"taskId": f"tk-{self.key}"}))
        request.send(200, envelope({"taskId": task.task_id}))

    def _new_task(self, body: dict, account: str) -> Task:
        task_id = "tk-hiapi-" + "".join(random.choices(string.ascii_uppercase + string.digits,
                                                       k=26))
        task = Task(task_id, body["model"], body["input"], int(time.time()),
                    started=time.monotonic(), owner=account)
        outcome = self.faults.next("task")
        if outcome == "vanish":
            task.owner = ""  # no account knows it any more
        elif outcome == "weird":
            task.weird = True
        elif outcome == "fileurl":
            task.fileurl = True
        elif outcome in ("echo-fail", "echo-url"):
            task.outcome = "fail" if outcome == "echo-fail" else "success"
            task.echo = outcome
        elif outcome == "badurl":
            task.url = "http://[::1"
        elif outcome and outcome.startswith("url:"):  # url:ADDRESS: the output URL it hands out
            task.url = outcome.removeprefix("url:")
        elif outcome in ("msstamps", "isostamps"):
            task.stamps = outcome.removesuffix("stamps")
        elif outcome in ("msexpiry", "ttlexpiry"):
            task.expiry = outcome.removesuffix("expiry")
        elif outcome in ("fail", "stuck"):
            task.outcome = outcome
        fmt = body["input"].get("output_format", "png")
        task.image = self.make_image(fmt, task_id)
        self.tasks[task_id] = task
        return task

    # --- poll ---------------------------------------------------------------------------------

    def _poll(self, request: Handler, task_id: str) -> None:
        self.count("polls")
        fault = self.faults.next("poll")
        if self._transport_fault(request, "poll", fault):
            return
        if fault in ("429", "503"):
            return self._error(request, int(fault), "RATE_LIMITED", "slow down",
                               {"Retry-After": "0"})
        if fault == "retry-later":  # a server that asks for an hour's pause
            return self._error(request, 503, "SERVICE_UNAVAILABLE", "busy",
                               {"Retry-After": "3600"})
        if fault == "drop":
            return request.drop()
        if fault == "garbage":
            return request.send(200, raw=b"<html>gateway</html>", content_type="text/html")
        task = self.tasks.get(task_id)
        if task is None or task.owner != caller(request):  # unknown, or another account's
            return self._error(request, 404, "NOT_FOUND", "task not found")
        with self._lock:
            self._advance(task)
        request.send(200, envelope(self.task_json(task, request)))

    def _advance(self, task: Task) -> None:
        task.polls += 1
        if task.status in ("success", "fail") or task.outcome == "stuck" or \
                self.holds.holding("tasks"):  # held tasks stay queued until released
            return
        if self.latency is not None:
            progress = (time.monotonic() - task.started) / self.latency if self.latency else 1
            if progress < 1:
                task.status = WALK[min(int(progress * len(WALK)), len(WALK) - 1)]
                return
            task.status = "fail" if task.outcome == "fail" else "success"
            task.completed = int(time.time() - (time.monotonic() - task.started) + self.latency)
            return
        if task.weird and task.polls == 1:
            task.status = "pending_review"  # a status this client has never heard of
            return
        step = task.polls - 1 - (1 if task.weird else 0)
        if step < len(WALK):
            task.status = WALK[step]
            return
        task.status = "fail" if task.outcome == "fail" else "success"
        task.completed = int(time.time())

    def task_json(self, task: Task, request: Handler) -> dict:
        created, completed = task.created, task.completed * (1000 if task.stamps == "ms" else 1)
        expires = int(time.time()) + 7 * 86400
        expires = {"ms": expires * 1000, "ttl": 7 * 86400}.get(task.expiry, expires)
        if task.stamps == "iso":
            created, completed, expires = (
                time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
                for t in (created, completed, expires))
        doc = {"taskId": task.task_id, "model": task.model, "status": task.status,
               "created": created, "completed": completed}
        if task.status == "success":
            ext = "jpg" if task.input.get("output_format") in ("jpeg", "jpg") else "png"
            host = request.headers.get("Host")
            url = "file:///etc/passwd" if task.fileurl else \
                f"http://{host}/files/{task.task_id}.{ext}"
            if task.echo == "echo-url":
                url = f"s3://bucket/{self.key}/{task.task_id}.png"
            doc["output"] = [{"url": task.url or url, "type": "image", "expireAt": expires}]
        if task.status == "fail":
            doc["error"] = {"code": "CONTENT_POLICY", "message": "the output was flagged"}
            if task.echo == "echo-fail":
                doc["error"] = {"code": f"BAD_KEY_{self.key}", "message": f"key {self.key}"}
        return doc

    def _list(self, request: Handler) -> None:
        query = request.query()
        page, size = int(query.get("page", 1)), int(query.get("size", 20))
        items = sorted((t for t in self.tasks.values() if t.owner == caller(request)),
                       key=lambda t: t.created, reverse=True)
        chunk = items[(page - 1) * size: page * size]
        request.send(200, envelope({"items": [self.task_json(t, request) for t in chunk],
                                    "page": page, "size": size, "total": len(items)}))

    # --- files --------------------------------------------------------------------------------

    def _file(self, request: Handler, name: str) -> None:
        self.count("downloads")
        task = self.tasks.get(name.rpartition(".")[0])
        fault = self.faults.next("download")
        if fault == "gzip":
            request.gzip_lie = True
        elif fault == "redirect":  # a CDN hop to another origin: fine, nothing secret goes along
            return request.redirect(self.redirect_to + "/files/" + name)
        elif fault == "redirect-file":
            return request.redirect("file:///etc/passwd", 302)
        if task is not None and fault:
            task.download_faults.append(fault)
        if task is None or task.status != "success" or fault == "gone":
            return request.send(410, raw=b"expired", content_type="text/plain")
        data = task.image
        if fault == "truncate":
            data = data[: len(data) // 2]
        elif fault == "notimage":
            data = b"<html>not an image</html>" * 10
        elif fault == "huge":
            data = b"\x89PNG\r\n\x1a\n" + b"\0" * (80 << 20)
        elif fault == "slow":
            return request.drip(data, 30)
        elif fault == "loop":
            self.faults.add("download", "loop")  # every hop redirects again
            return request.send(302, raw=b"", headers={"Location": request.path})
        request.send(200, raw=data, content_type="image/png")


def caller(request: Handler) -> str:
    """The key of the account making an (authenticated) request."""
    return str(request.headers.get("Authorization", "")).removeprefix("Bearer ")


def envelope(data: dict) -> dict:
    return {"code": 200, "message": "success", "data": data}


def validate(body: dict) -> str | None:
    """The server's per-model checks: what a real server answers 400 to."""
    if not isinstance(body, dict) or set(body) - {"model", "input", "callback", "route", "storage"}:
        return "unknown top-level fields"
    spec = models().get(body.get("model"))
    if spec is None:
        return f"unknown model {body.get('model')!r}"
    task_input = body.get("input")
    if not isinstance(task_input, dict) or not isinstance(task_input.get("prompt"), str):
        return "input.prompt is required"
    allowed = {"prompt", "aspect_ratio", "output_format"}
    if spec["resolutions"]:
        allowed.add("resolution")
    if spec["max_images"]:
        allowed.add("image_input")
    extra = set(task_input) - allowed
    if extra:
        return f"unsupported input fields for {body['model']}: {sorted(extra)}"
    if spec["prompt_max"] is not None and len(task_input["prompt"]) > spec["prompt_max"]:
        return "prompt too long"
    if "aspect_ratio" in task_input and task_input["aspect_ratio"] not in spec["aspects"]:
        return "invalid aspect_ratio"
    if "resolution" in task_input and task_input["resolution"] not in spec["resolutions"]:
        return "invalid resolution"
    if "output_format" in task_input and task_input["output_format"] not in spec["formats"]:
        return "invalid output_format"
    images = task_input.get("image_input", [])
    if not isinstance(images, list) or len(images) > spec["max_images"] or \
            not all(isinstance(u, str) and u.startswith(("http://", "https://")) for u in images):
        return "image_input must be a list of URLs"
    return None
