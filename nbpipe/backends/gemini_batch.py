"""Gemini's Batch API (api-facts.md, "Gemini Batch API and lanes"): jobs of generateContent
requests at half the price, results matched by `metadata.key` (inline) or a line's `key` (a
results file). A job's requests go inline while the create stays under Google's 20 MB request
limit, else as a JSONL file through the Files API (resumable upload).

Everything the server says is untrusted: a job or file name goes into a URL path only if it
has the documented shape, counts are int64 strings (a zero left out), a result line that does
not parse fails that line alone.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Annotated, Any

import httpx
from pydantic import BeforeValidator, Field

from nbpipe.backends.base import InputData
from nbpipe.backends.batch import (
    CreateLost,
    JobGone,
    JobState,
    JobView,
    LineResult,
    ResultsGone,
)
from nbpipe.backends.gemini import GeminiBackend, inline_body, reply_image
from nbpipe.backends.http import network_error, short
from nbpipe.backends.replies import GeminiReply, Reply, ReplyProblem, parse_json, validate
from nbpipe.errors import FrameFailed
from nbpipe.plan.frame import Request

INLINE_CAP = 19 << 20  # bytes of a create's body: Google refuses over 20 MB
# Requests a job sends inline at most: its answers come back in the job itself, every image in
# one reply (and in every listing of the job): a few fit any reply cap; more go as a file.
INLINE_LINES = 4
RESULTS_CAP = 8 << 30  # a results file holds every image of the job, base64
PAGE = 10  # jobs a list page asks for (each may carry its inline answers, images and all)
JOB_NAME = r"^batches/[A-Za-z0-9_-]{1,128}$"
FILE_NAME = r"^files/[A-Za-z0-9_-]{1,128}$"


def _count(value: Any) -> int:
    try:
        return max(int(value), 0)
    except (TypeError, ValueError):
        return 0


Count = Annotated[int, BeforeValidator(_count)]


class _Stats(Reply):
    requestCount: Count = 0
    successfulRequestCount: Count = 0
    failedRequestCount: Count = 0


class _Status(Reply):
    code: Any = None
    message: Any = None


class _Inlined(Reply):
    metadata: dict[str, Any] | None = None
    response: dict[str, Any] | None = None
    error: _Status | None = None


class _InlinedList(Reply):
    inlinedResponses: list[_Inlined] | None = None


class _Output(Reply):
    inlinedResponses: _InlinedList | None = None
    responsesFile: str | None = Field(None, pattern=FILE_NAME)


class _Batch(Reply):
    displayName: str = ""
    model: str = ""
    state: str = ""
    batchStats: _Stats | None = None
    output: _Output | None = None
    createTime: str | None = None


class _Operation(Reply):
    name: str = Field(pattern=JOB_NAME)
    metadata: _Batch
    error: _Status | None = None


class _Page(Reply):
    operations: list[dict[str, Any]] | None = None
    nextPageToken: str | None = None


class GeminiBatches:
    """One account's batch jobs, through the Gemini backend's client (its key, retries,
    timeouts, redirect refusal, error translation)."""

    backend: GeminiBackend
    _outputs: dict[str, _Output]  # job name → its output, as last read

    def __init__(self, backend: GeminiBackend):
        self.backend = backend
        self._outputs = {}

    @property
    def _root(self) -> str:
        return f"{self.backend.settings.base_url}/{self.backend.settings.api_version}"

    def line(self, request: Request, inputs: list[InputData]) -> dict[str, object]:
        return inline_body(request, inputs)

    async def create(self, model: str, display: str,
                     lines: Sequence[tuple[str, dict[str, object]]]) -> JobView:
        inline = {"requests": {"requests": [{"request": body, "metadata": {"key": key}}
                                            for key, body in lines]}}
        body: dict[str, object] = {"batch": {"displayName": display, "inputConfig": inline}}
        if len(lines) > INLINE_LINES or len(json.dumps(body)) > INLINE_CAP:
            jsonl = "".join(json.dumps({"key": key, "request": request}) + "\n"
                            for key, request in lines)
            name = await self._upload(jsonl.encode(), display)
            body = {"batch": {"displayName": display, "inputConfig": {"fileName": name}}}
        url = f"{self._root}/models/{model}:batchGenerateContent"
        try:
            answer = await self.backend.settings.retry.run(
                lambda: self._ask("POST", url, body, model, create=True))
        except FrameFailed as exc:
            if exc.maybe_billed:  # sent, no reply: the job may exist
                raise CreateLost(str(exc)) from None
            raise
        return self._view(answer)

    async def find(self, display: str, pages: int | None = None) -> JobView | None:
        token: str | None = None
        for _ in range(min(pages or 1000, 1000)):  # a server that pages for ever is not followed
            query = httpx.QueryParams({"pageSize": PAGE, **({"pageToken": token} if token else {})})
            try:
                page = validate(_Page, await self._get(f"{self._root}/batches?{query}"))
            except ReplyProblem as exc:
                raise FrameFailed(f"Gemini's list of batches is {exc}") from None
            for item in page.operations or []:
                try:
                    view = self._view(item)
                except FrameFailed:
                    continue  # one odd job does not hide the others
                if view.display == display:
                    return view
            token = page.nextPageToken
            if not token:
                return None
        return None

    async def get(self, name: str) -> JobView:
        url = f"{self._root}/{_checked(name, JOB_NAME)}"
        return self._view(await self.backend.settings.retry.run(
            lambda: self._ask("GET", url, None, "", gone=name)))

    async def cancel(self, name: str) -> None:
        url = f"{self._root}/{_checked(name, JOB_NAME)}:cancel"
        await self.backend.settings.retry.run(lambda: self._ask("POST", url, {}, ""))

    async def results(self, job: JobView) -> dict[str, LineResult]:
        output = self._outputs.get(job.name)
        if output is None:
            return {}
        found: dict[str, LineResult] = {}
        if output.inlinedResponses is not None:
            for i, item in enumerate(output.inlinedResponses.inlinedResponses or []):
                key = (item.metadata or {}).get("key")  # "#…": an answer that lost its key
                found[key if isinstance(key, str) and not key.startswith("#") else f"#{i}"] = \
                    _result(item.response, item.error)
        if output.responsesFile:
            for i, raw in enumerate((await self._download(output.responsesFile)).splitlines()):
                key, result = _file_line(raw)  # None: a line that lost its key (or is not JSON)
                found[key if key is not None and not key.startswith("#") else f"#file{i}"] = \
                    result
        return found

    def _view(self, data: Any) -> JobView:
        try:
            operation = validate(_Operation, data)
        except ReplyProblem as exc:
            raise FrameFailed(f"Gemini's batch reply is {exc}") from None
        meta = operation.metadata
        try:
            state = JobState(meta.state.removeprefix("BATCH_STATE_").removeprefix("JOB_STATE_"))
        except ValueError:
            state = JobState.PENDING  # a state this nbpipe does not know: not ended, so polled
        if meta.output is not None:
            self._outputs[operation.name] = meta.output
        stats = meta.batchStats or _Stats()
        error = operation.error.message if operation.error else None
        return JobView(operation.name, meta.displayName, meta.model.removeprefix("models/"),
                       state, stats.requestCount, stats.successfulRequestCount,
                       stats.failedRequestCount, short(error, 300) if error else None,
                       meta.createTime)

    async def _get(self, url: str) -> Any:
        return await self.backend.settings.retry.run(lambda: self._ask("GET", url, None, ""))

    async def _ask(self, method: str, url: str, body: dict[str, object] | None,
                   model: str, gone: str | None = None, create: bool = False) -> Any:
        answer = await self.backend.exchange(method, url, self._key(), body)
        if answer.status == 404 and gone is not None:
            raise JobGone(f"the server no longer knows batch job {gone} (deleted, or purged): "
                          "its requests are sent again by a later build")
        if answer.status != 200:  # a create, like a call, has no idempotency key: a gateway
            # 5xx after it left may have made the job (CreateLost: found by its name)
            raise self.backend.error(answer, model, url, call=create)
        if answer.problem:
            raise FrameFailed(f"Gemini's batch reply is {answer.problem}")
        return answer.body

    def _key(self) -> dict[str, str]:
        return {"x-goog-api-key": self.backend.settings.api_key}

    async def _upload(self, data: bytes, display: str) -> str:
        """A resumable upload of the requests file: start, then the bytes in one finalize."""
        base = self.backend.settings.base_url
        version = self.backend.settings.api_version
        start = {**self._key(), "X-Goog-Upload-Protocol": "resumable",
                 "X-Goog-Upload-Command": "start",
                 "X-Goog-Upload-Header-Content-Length": str(len(data)),
                 "X-Goog-Upload-Header-Content-Type": "application/jsonl"}
        meta = json.dumps({"file": {"displayName": display, "mimeType": "application/jsonl"}})
        reply = await self._send_raw(f"{base}/upload/{version}/files", start, meta.encode())
        url = reply.headers.get("X-Goog-Upload-URL", "")
        if not url.startswith(base + "/"):  # the session URL carries the upload: ours only
            raise FrameFailed("Gemini's upload start named no upload URL of its own")
        done = await self._send_raw(url, {"X-Goog-Upload-Command": "upload, finalize",
                                          "X-Goog-Upload-Offset": "0"}, data)
        try:
            found = parse_json(done.content, self.backend.settings.api_key)
            name = found["file"]["name"]
        except (ReplyProblem, KeyError, TypeError):
            raise FrameFailed("Gemini's upload reply names no file") from None
        return _checked(str(name), FILE_NAME)

    async def _send_raw(self, url: str, headers: dict[str, str], data: bytes) -> httpx.Response:
        try:
            reply = await self.backend.client.post(url, headers=headers, content=data,
                                                   follow_redirects=False)
        except httpx.TransportError as exc:  # an upload bills nothing: repeating is safe
            raise FrameFailed(str(network_error(exc, True)), retry_later=True) from None
        if reply.status_code != 200:
            raise FrameFailed(f"Gemini refused the requests file upload (HTTP "
                              f"{reply.status_code}: {short(reply.text, 200)})")
        return reply

    async def _download(self, name: str) -> bytes:
        base = self.backend.settings.base_url
        url = f"{base}/download/{self.backend.settings.api_version}/{name}:download?alt=media"
        chunks, size = [], 0
        try:
            async with self.backend.client.stream("GET", url, headers=self._key(),
                                                  follow_redirects=False) as reply:
                if reply.status_code == 404:  # gone: the job's images were made, and billed
                    raise ResultsGone(f"Gemini no longer has the batch results file {name} "
                                      "(HTTP 404): its images were made and may have been "
                                      "billed; a later build renders them again")
                if reply.status_code != 200:
                    raise FrameFailed(f"Gemini's batch results file {name} could not be read "
                                      f"(HTTP {reply.status_code})", retry_later=True)
                async for chunk in reply.aiter_bytes():
                    size += len(chunk)
                    if size > RESULTS_CAP:
                        raise FrameFailed(f"the batch results file passed {RESULTS_CAP:,} bytes")
                    chunks.append(chunk)
        except httpx.TransportError as exc:
            raise FrameFailed(str(network_error(exc, True)), retry_later=True) from None
        return b"".join(chunks)


def _checked(name: str, pattern: str) -> str:
    if not re.fullmatch(pattern, name):
        raise FrameFailed(f"a batch name not of the documented shape: {short(name, 80)}")
    return name


def _result(response: dict[str, Any] | None, error: _Status | None) -> LineResult:
    if error is not None or response is None:
        message = error.message if error is not None else None
        return LineResult(error=f"Gemini's batch answered this request with an error: "
                          f"{short(message or 'no response', 300)}")
    try:
        return LineResult(image=reply_image(validate(GeminiReply, response)))
    except ReplyProblem as exc:
        return LineResult(error=f"Gemini's batch answer is {exc}", billed=True)
    except FrameFailed as exc:
        return LineResult(error=str(exc), billed=exc.maybe_billed)


def _file_line(raw: bytes) -> tuple[str | None, LineResult]:
    unknown = LineResult(error="a line of the results file that cannot be read", billed=True)
    try:
        item = json.loads(raw)
    except ValueError:
        return None, unknown
    if not isinstance(item, dict):
        return None, unknown
    if not isinstance(item.get("key"), str):
        item = {**item, "key": None}
    error = item.get("error")
    status = _Status.model_validate(error) if isinstance(error, dict) else None
    response = item.get("response")
    return item["key"], _result(response if isinstance(response, dict) else None, status)
