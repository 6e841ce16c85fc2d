"""Property: whatever JSON a server answers, with whatever status, reading it ends in a result or
in one of nbpipe's own errors (failed frame, retry, stopped build), and never shows the key."""

from __future__ import annotations

import asyncio
import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nbpipe.backends import gemini, hiapi
from nbpipe.backends.base import Job
from nbpipe.backends.http import Answer, Retryable, output_url
from nbpipe.backends.replies import ReplyProblem, parse_json, validate
from nbpipe.errors import NbpipeError, TaskFailed
from nbpipe.plan.frame import Request

KEY = "sk-sentinel-key-123"
# The fields both APIs use, so generated bodies reach deep into the documented shapes.
NAMES = ["data", "status", "output", "url", "expireAt", "error", "code", "message", "error_code",
         "taskId", "created", "completed", "candidates", "content", "parts", "text", "thought",
         "inlineData", "inline_data", "mimeType", "finishReason", "promptFeedback",
         "blockReason", "details", "@type", "retryDelay"]
LEAVES = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
          | st.sampled_from(["success", "fail", "queued", "STOP", "SAFETY", "http://[::1",
                             "https://cdn.example/a.png", "file:///etc/passwd", "iVBORw0KGgo=",
                             "type.googleapis.com/google.rpc.RetryInfo", "3s", "nans",
                             "tk-hiapi-0123456789ABCDEFGHIJKLMNOP", KEY, f"x{KEY}y"])
          | st.text(max_size=8))
BODIES = st.recursive(LEAVES, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.sampled_from(NAMES) | st.text(max_size=4), inner,
                                        max_size=5), max_leaves=25)
HIAPI_TASK = {"code": 200, "message": "success", "data": {
    "taskId": "tk-hiapi-0123456789ABCDEFGHIJKLMNOP", "status": "success", "created": 1,
    "completed": 30, "output": [{"url": "https://cdn.example/a.png", "expireAt": 2}],
    "error": {"code": "CONTENT_POLICY", "message": "flagged"}}}
GEMINI_REPLY = {"candidates": [{"content": {"parts": [
    {"text": "thinking", "thought": True}, {"text": "here"},
    {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}}]}, "finishReason": "STOP"}],
    "promptFeedback": {"blockReason": "SAFETY"},
    "error": {"message": "m", "status": "UNAVAILABLE",
              "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo",
                           "retryDelay": "3s"}]}}


def mutated(template: object) -> st.SearchStrategy:
    """The documented shape with any of its parts, at any depth, replaced by something else."""
    if isinstance(template, dict):
        shape = st.fixed_dictionaries({k: mutated(v) for k, v in template.items()})
    elif isinstance(template, list):
        shape = st.tuples(*map(mutated, template)).map(list)
    else:
        shape = st.just(template)
    return st.one_of(shape, shape, BODIES)


STATUSES = st.sampled_from([200, 200, 200, 400, 401, 402, 403, 404, 409, 422, 429, 500, 503])
EXAMPLES = int(os.environ.get("NBPIPE_FUZZ_EXAMPLES", "500"))
SETTINGS = settings(max_examples=EXAMPLES, derandomize="NBPIPE_FUZZ_EXAMPLES" not in os.environ,
                    deadline=None, suppress_health_check=list(HealthCheck))


def answer(status: int, body: object) -> Answer:
    try:
        return Answer(status, "Reason", None, parse_json(json.dumps(body).encode(), KEY))
    except ReplyProblem as exc:
        return Answer(status, "Reason", None, None, str(exc))


def read_hiapi(reply: Answer) -> str:
    backend = hiapi.HiApiBackend(hiapi.HiApiSettings(api_key=KEY), client=None)
    task = backend._data(reply, hiapi.HiTask)
    if task is not None:
        backend._learn("m", task)
        url, _ = hiapi._output(task, "tk")
        output_url(url)
        return url
    return ""


def read_gemini(reply: Answer) -> str:
    backend = gemini.GeminiBackend(gemini.GeminiSettings(api_key=KEY), client=None)
    if reply.status != 200:
        raise backend.error(reply, "gemini-3.1-flash-image", "https://g.test/v1beta/models/m")
    if reply.problem:
        raise ReplyProblem(reply.problem)
    return repr(gemini.reply_image(validate(gemini.GeminiReply, reply.body)))


@SETTINGS
@given(status=STATUSES, body=BODIES | mutated(HIAPI_TASK) | mutated(GEMINI_REPLY))
def test_any_reply_ends_in_a_result_or_an_nbpipe_error(status, body):
    for read in (read_hiapi, read_gemini):
        try:
            said = read(answer(status, body))
        except (NbpipeError, Retryable, ReplyProblem) as exc:
            said = str(exc)
        assert KEY not in said


@pytest.mark.parametrize("task_id", ["../../v1/tasks", "tk?x=1", "tk/..", "tk\n", "", "tk#a",
                                     "x" * 200])
def test_a_task_id_from_disk_must_look_like_one_before_it_goes_into_a_url(task_id):
    """The journal on disk is untrusted too: its task id is checked before it is polled."""
    backend = hiapi.HiApiBackend(hiapi.HiApiSettings(api_key=KEY), client=None)
    request = Request(backend="hiapi", model="Nano-Banana", prompt="p", params={})
    with pytest.raises(TaskFailed, match="is not a HiAPI task id"):
        asyncio.run(backend.render(request, [], None, Job(resume_task=task_id)))
