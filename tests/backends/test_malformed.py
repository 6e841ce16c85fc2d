"""Plausible replies in the wrong shape (the fakes' `malformed:` and `gzip` faults): each one is
a failed frame with a reason, retried where the policy says, never a crash (exit 3)."""

from __future__ import annotations

import pytest

from tests.samples import GEMINI_ONE, ONE, failures

GAVE_UP = "gave up after 5 attempts: "
NOT_GZIP = "a body that does not decode as its Content-Encoding says"
SHAPE = "a body that does not match the documented shape"
BILLED = "; not retried, since the request may have been billed"

HIAPI = [  # endpoint, fault, the frame's reason
    ("create", "gzip", f"{GAVE_UP}HiAPI answered HTTP 200 with {NOT_GZIP}"),
    ("poll", "gzip", f"{GAVE_UP}HiAPI answered HTTP 200 with {NOT_GZIP}"),
    ("download", "gzip", f"{GAVE_UP}the download does not decode as its Content-Encoding says"),
    ("create", "malformed:error-code-list", "HiAPI rejected the request (HTTP 400): Bad Request"),
    ("create", "malformed:taskid-int",
     f"{GAVE_UP}HiAPI answered HTTP 200 with {SHAPE} (data.taskId: Input should be a valid "
     "string)"),
    ("create", "malformed:bignum", f"{GAVE_UP}HiAPI answered HTTP 200 with a body that is not "
                                   "JSON"),
    ("poll", "malformed:bignum", f"{GAVE_UP}HiAPI answered HTTP 200 with a body that is not JSON"),
    ("poll", "malformed:deep", f"{GAVE_UP}HiAPI answered HTTP 200 with a body that is not JSON"),
    ("poll", "malformed:nan", f"{GAVE_UP}HiAPI answered HTTP 200 with a body that is not JSON"),
    ("poll", "malformed:status-list",
     f"{GAVE_UP}HiAPI answered HTTP 200 with {SHAPE} (data.status: Input should be a valid "
     "string)"),
    ("poll", "malformed:output-dict",
     f"{GAVE_UP}HiAPI answered HTTP 200 with {SHAPE} (data.output: Input should be a valid "
     "list)"),
    ("task", "badurl", "refused to download from an invalid URL (http://[::1)"),
]
GEMINI = [
    ("gzip", f"Gemini answered HTTP 200 with {NOT_GZIP}{BILLED}"),
    ("malformed:finish-list", f"Gemini answered HTTP 200 with {SHAPE} (candidates.0.finishReason: "
                              f"Input should be a valid string){BILLED}"),
    ("malformed:parts-int", f"Gemini answered HTTP 200 with {SHAPE} (candidates.0.content.parts: "
                            f"Input should be a valid list){BILLED}"),
    ("malformed:candidates-dict", f"Gemini answered HTTP 200 with {SHAPE} (candidates: Input "
                                  f"should be a valid list){BILLED}"),
    ("malformed:data-int", f"Gemini answered HTTP 200 with {SHAPE} (candidates.0.content.parts.0."
                           f"inlineData.data: Input should be a valid string){BILLED}"),
    ("malformed:details-int", f"{GAVE_UP}Gemini answered HTTP 429: Too Many Requests"),
    ("malformed:type-int", f"{GAVE_UP}Gemini answered HTTP 429: Too Many Requests"),
    ("malformed:bignum", f"Gemini answered HTTP 200 with a body that is not JSON{BILLED}"),
    ("malformed:deep", f"Gemini answered HTTP 200 with a body that is not JSON{BILLED}"),
]


def check(summary: dict, reason: str) -> None:
    assert summary["code"] == 1  # a failed frame, not an internal error (3)
    assert (summary["failed"], summary["rendered"]) == (1, 0)
    assert failures(summary) == {"a": reason}
    assert "Traceback" not in summary["err"] and "internal error" not in summary["err"]


@pytest.mark.parametrize("endpoint, fault, reason", HIAPI, ids=[f"{e}-{f}" for e, f, _ in HIAPI])
def test_hiapi_malformed_replies_fail_the_frame(endpoint, fault, reason, fake_hiapi, build,
                                                make_project):
    fake_hiapi.faults.add(endpoint, *[fault] * 20)  # every retry meets it again
    check(build(make_project(ONE)), reason)
    assert fake_hiapi.counts["creates"] <= 1  # retries replayed the task, never paid twice


@pytest.mark.parametrize("fault, reason", GEMINI, ids=[f for f, _ in GEMINI])
def test_gemini_malformed_replies_fail_the_frame(fault, reason, fake_gemini, build,
                                                 make_project):
    fake_gemini.faults.add("generate", *[fault] * 20)
    check(build(make_project(GEMINI_ONE)), reason)


@pytest.mark.parametrize("fault", ["malformed:details-int", "malformed:type-int"])
def test_a_refusal_with_malformed_details_is_still_retried(fault, fake_gemini, build,
                                                           make_project):
    fake_gemini.faults.add("generate", fault)
    summary = build(make_project(GEMINI_ONE))
    assert (summary["code"], summary["rendered"], fake_gemini.counts["generates"]) == (0, 1, 1)


def test_stamps_of_another_type_are_hints_lost_not_a_failed_task(fake_hiapi, build,
                                                                  make_project):
    fake_hiapi.faults.add("task", "isostamps", "isostamps", "isostamps")
    summary = build(make_project(ONE))
    assert (summary["code"], summary["rendered"], fake_hiapi.counts["creates"]) == (0, 1, 1)
