"""The fake Gemini with the Batch API (api-facts.md, "Gemini Batch API and lanes"), on the same
port, key, model catalogue and images as generateContent (FakeGemini), plus the Files API
(gemini_files.py). Served under /v1beta and /v1 (google-genai 3.x defaults to v1).

    POST /{v}/models/{model}:batchGenerateContent   {"batch": {"displayName", "inputConfig"}}
    GET /{v}/batches/{id}   GET /{v}/batches?pageSize&pageToken
    POST /{v}/batches/{id}:cancel   DELETE /{v}/batches/{id}

A batch is an Operation: `{"name": "batches/ID", "metadata": GenerateContentBatch, "done",
"response"|"error"}`; the SDK reads everything from `metadata` (state `BATCH_STATE_*`,
displayName, model, createTime, `output`). `batchStats` counts are int64, so JSON strings, and a
zero count is left out (proto3 JSON): read a missing count as 0.

The test drives time, never the wall clock: a job stays PENDING until `advance(name, state)` or
`finish_all()`, and `pass_hours(h)` moves the fake clock (a job pending or running for more than
48 h is EXPIRED, with no results). Only a SUCCEEDED job has results, in a shuffled order (match
them by key): inline input → `output.inlinedResponses.inlinedResponses[]`, file input → a JSONL
`output.responsesFile`, one `{"key", "response"|"error"}` a line. Each image made is billed in
`billed` with `lane="batch"` at the batch price. DELETE forgets a job, and does not stop it: a
deleted job still runs and bills at `finish_all()`.

Faults, scripted (`fake.faults.add(endpoint, ...)`):
    batch-create: 429 (quota: RESOURCE_EXHAUSTED) 503 badkey
                  drop (the job IS created; the reply is lost: re-attach by displayName)
                  gateway (the job IS created; a proxy answers 502 HTML)
    batch-line:   error (the line answers {"code": 13, "message"}) invalid (code 3)
                  prompt-blocked safety no-image (as generateContent's faults)
                  no-metadata (an inline response without its metadata: reported on the forum)
    batch-job:    fail cancel expire (how `finish_all` ends the next job; default SUCCEEDED)
`holds.hold("batch-created")` keeps a create's reply after the job exists (a crash there).
`end_at_poll = N` ends each job at its Nth GET (for a build running in the test's process).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import re
from collections.abc import Iterator

from tests.fakes.batch_jobs import TERMINAL, BatchJob, Line, finish, inline_lines, jsonl_lines
from tests.fakes.gemini import FakeGemini, models, validate
from tests.fakes.gemini_files import FakeFiles
from tests.fakes.server import Handler

CREATE = re.compile(r"^/(v1beta|v1)/models/([^/:]+):batchGenerateContent$")
BATCH = re.compile(r"^/(v1beta|v1)/batches/([a-z0-9]+)(:cancel)?$")
BATCHES = re.compile(r"^/(v1beta|v1)/batches$")
EPOCH = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)  # hour 0 of the fake clock
EXPIRY_HOURS = 48.0
STATES = ("RUNNING", "SUCCEEDED", "FAILED", "CANCELLED", "EXPIRED")


class FakeGeminiBatch(FakeGemini):
    """FakeGemini plus the Batch and Files APIs; the test moves jobs and the clock."""

    def __init__(self, key: str = "fake-gemini-key", today: dt.date | None = None):
        super().__init__(key, today)
        self.jobs: dict[str, BatchJob] = {}  # id → job, in creation order (deleted ones too)
        self.creates: list[str] = []  # every job created, by name: a resend is a second job
        self.hours = 0.0  # the fake clock (see pass_hours)
        self.inline_cap = 20 * 1024 * 1024  # a create's body, as Google's 20 MB
        self.max_jobs = 100  # pending or running at once, per project
        self.page_size = 50  # when a list names none
        self.files = FakeFiles(self)
        # A build in this process cannot wait for the test to end its jobs: with this set, a
        # job ends (as `finish_all` would end it) at its Nth GET. Counted, never timed.
        self.end_at_poll: int | None = None
        self.polls: dict[str, int] = {}

    def dispatch(self, request: Handler, method: str) -> None:
        path = request.route()
        if not (CREATE.match(path) or BATCH.match(path) or BATCHES.match(path)
                or path.startswith(("/upload/", "/download/")) or "/files/" in path):
            return super().dispatch(request, method)  # generateContent
        self.count("requests")
        fault = self.faults.next("batch-create") if CREATE.match(path) else None
        key = request.headers.get("x-goog-api-key") or request.query().get("key")
        # The SDK sends an upload's bytes without the key: the session's upload URL is its
        # credential (an unknown upload_id is a 404).
        session = path.startswith("/upload/") and "upload_id" in request.query()
        if (key != self.key and not session) or fault == "badkey":
            request.body()
            return self.refuse(request, 400, "INVALID_ARGUMENT",
                               "API key not valid. Please pass a valid API key.")
        if self.files.serve(request, method, path):
            return None
        created, one = CREATE.match(path), BATCH.match(path)
        if created and method == "POST":
            return self._create(request, created.group(2), fault)
        if BATCHES.match(path) and method == "GET":
            return self._list(request)
        job = self.jobs.get(one.group(2)) if one else None
        if one is None or job is None or job.deleted:
            request.body()
            return self.refuse(request, 404, "NOT_FOUND", "Requested entity was not found.")
        if one.group(3) and method == "POST":
            return self._cancel(request, job)
        if not one.group(3) and method in ("GET", "DELETE"):
            if method == "DELETE":
                job.deleted = True
                return request.send(200, {})
            self._polled(job)
            return request.send(200, self.show(job))
        return self.refuse(request, 404, "NOT_FOUND", "no such method")

    def _create(self, request: Handler, model: str, fault: str | None) -> None:
        raw = request.body()
        if len(raw) > self.inline_cap:
            return self.refuse(request, 400, "INVALID_ARGUMENT",
                               f"Request payload size exceeds the limit: {self.inline_cap} bytes.")
        if fault in ("429", "503"):
            kind = "RESOURCE_EXHAUSTED" if fault == "429" else "UNAVAILABLE"
            return self.refuse(request, int(fault), kind, "try again later")
        spec = models(self.today).get(model)
        if spec is None:
            return self.refuse(request, 404, "NOT_FOUND", f"models/{model} is not found.")
        try:
            batch = json.loads(raw)["batch"]
            config = batch["inputConfig"]
            name = batch.get("displayName")
        except (ValueError, KeyError, TypeError):
            return self.refuse(request, 400, "INVALID_ARGUMENT", "batch.inputConfig is required")
        lines = self._lines(config)
        if isinstance(lines, str):
            return self.refuse(request, 400, "INVALID_ARGUMENT", lines)
        problem = next((f"requests[{i}]: {p}" for i, line in enumerate(lines)
                        if (p := validate(line.request, spec))), None)
        if not isinstance(name, str) or not name:
            problem = "batch.displayName is required"
        if problem:
            return self.refuse(request, 400, "INVALID_ARGUMENT", problem)
        with self.lock:
            if sum(not j.done for j in self.jobs.values()) >= self.max_jobs:
                return self.refuse(request, 429, "RESOURCE_EXHAUSTED",
                                   f"at most {self.max_jobs} batch jobs may run at once")
            number = hashlib.sha256(f"{len(self.jobs)}/{name}".encode()).hexdigest()[:16]
            job = BatchJob(number, name, model, spec, lines,
                           "file" if "fileName" in config else "inline", self.hours)
            self.jobs[job.id] = job
            self.creates.append(job.name)
        self.count("creates")
        self.holds.passing("batch-created")  # the job exists; its reply held
        if fault == "drop":
            return request.drop()
        if fault == "gateway":  # a proxy's 502 after the job was made
            return request.send(502, raw=b"<html><body>502 Bad Gateway</body></html>",
                                content_type="text/html")
        request.send(200, self.show(job))

    def _lines(self, config: object) -> list[Line] | str:
        if not isinstance(config, dict):
            return "batch.inputConfig must be an object"
        if "fileName" in config:
            stored = self.files.files.get(str(config["fileName"]).removeprefix("files/"))
            if stored is None:
                return f"input file {config['fileName']} does not exist"
            return jsonl_lines(bytes(stored.data))
        return inline_lines(config)


    def _list(self, request: Handler) -> None:
        query = request.query()
        try:
            size = int(query.get("pageSize") or self.page_size)
            after = base64.urlsafe_b64decode(query["pageToken"]).decode() \
                if query.get("pageToken") else None
        except (ValueError, binascii.Error, UnicodeDecodeError):
            return self.refuse(request, 400, "INVALID_ARGUMENT", "bad pageSize or pageToken")
        size = min(max(size, 1), 1000) if size > 0 else self.page_size
        shown = [j for j in reversed(self.jobs.values()) if not j.deleted]  # newest first
        start = next((i for i, j in enumerate(shown) if j.id == after), None) if after else 0
        if start is None:
            return self.refuse(request, 400, "INVALID_ARGUMENT", "bad pageToken")
        page = shown[start:start + size]
        reply: dict = {"operations": [self.show(j) for j in page]}
        if start + size < len(shown):  # the token names the next job: stable under creates
            reply["nextPageToken"] = base64.urlsafe_b64encode(
                shown[start + size].id.encode()).decode()
        request.send(200, reply)

    def _cancel(self, request: Handler, job: BatchJob) -> None:
        request.body()
        if job.done:  # a guess: the docs do not say what cancelling a finished job answers
            return self.refuse(request, 400, "FAILED_PRECONDITION",
                               f"{job.name} is already {job.state}")
        self.advance(job.name, "CANCELLED")
        request.send(200, {})

    # the test's controls
    def advance(self, name: str, state: str, message: str = "the batch failed") -> BatchJob:
        """Move a job on (RUNNING, or an end state); SUCCEEDED makes and bills its results."""
        job = self.jobs[name.removeprefix("batches/")]
        state = state.removeprefix("BATCH_STATE_")
        assert state in STATES and not job.done, (job.name, job.state, state)
        output, counts = finish(self, job) if state == "SUCCEEDED" else (None, job.answered)
        with self.lock:  # a client polling meanwhile sees the job before or after, never half
            job.output, job.answered, job.state, job.updated = output, counts, state, self.hours
            if state == "FAILED":
                job.error = {"code": 13, "message": message}
            if state in TERMINAL:
                job.ended = self.hours
        return job

    def finish_all(self) -> list[BatchJob]:
        """End every job still pending or running (deleted ones too: DELETE does not cancel):
        each as the next `batch-job` fault says, SUCCEEDED by default."""
        ends = {None: "SUCCEEDED", "fail": "FAILED", "cancel": "CANCELLED", "expire": "EXPIRED"}
        return [self.advance(job.name, ends[self.faults.next("batch-job")])
                for job in self._open()]

    def pass_hours(self, hours: float) -> None:
        """Move the fake clock: jobs open past 48 h expire, uploads past 48 h are gone."""
        self.hours += hours
        for job in self._open():
            if self.hours - job.created > EXPIRY_HOURS:
                self.advance(job.name, "EXPIRED")
        self.files.expire()

    def _polled(self, job: BatchJob) -> None:
        with self.lock:
            self.polls[job.name] = seen = self.polls.get(job.name, 0) + 1
        self.count("polls")
        if self.end_at_poll is not None and seen >= self.end_at_poll and not job.done:
            ends = {None: "SUCCEEDED", "fail": "FAILED", "cancel": "CANCELLED",
                    "expire": "EXPIRED"}
            self.advance(job.name, ends[self.faults.next("batch-job")])

    def _open(self) -> Iterator[BatchJob]:
        return iter([j for j in list(self.jobs.values()) if not j.done])

    def show(self, job: BatchJob) -> dict:
        """The job's Operation, read whole (the test may be moving it on)."""
        with self.lock:
            return job.operation(self.stamp)

    def stamp(self, hours: float) -> str:
        """A fake-clock time as the API writes it (RFC 3339, Z)."""
        return (EPOCH + dt.timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    def refuse(self, request: Handler, status: int, kind: str, message: str) -> None:
        self._error(request, status, kind, message)
