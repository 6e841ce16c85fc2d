"""A fake Gemini batch job: its input lines, its state, the Operation it shows, and how it
succeeds (each line answered, billed at the batch price, the results shuffled)."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tests.fakes.gemini import Billed, _prompt, image_price

if TYPE_CHECKING:
    from tests.fakes.gemini_batch import FakeGeminiBatch

TERMINAL = frozenset({"SUCCEEDED", "FAILED", "CANCELLED", "EXPIRED"})
BATCH_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch"
OUTPUT_TYPE = ("type.googleapis.com/google.ai.generativelanguage.v1main."
               "BatchGenerateContentResponse")
LINE_ERRORS = {"error": {"code": 13, "message": "Internal error encountered."},  # google.rpc
               "invalid": {"code": 3, "message": "Request contains an invalid argument."}}


@dataclass
class Line:
    """One request of a batch: its GenerateContentRequest and how the client named it."""

    request: dict
    key: str | None = None  # file input: the line's "key"
    metadata: dict | None = None  # inline input: the request's "metadata" ({"key": ...})


@dataclass
class BatchJob:
    """One batch as the fake keeps it; times are hours of the fake clock."""

    id: str
    display_name: str
    model: str
    spec: dict  # what the model accepts (gemini.models)
    lines: list[Line]
    source: str  # inline | file
    created: float
    state: str = "PENDING"
    updated: float = 0.0
    ended: float | None = None
    deleted: bool = False  # DELETE forgets a job; it still runs
    error: dict | None = None  # a FAILED job's google.rpc.Status
    output: dict | None = None  # GenerateContentBatchOutput, once SUCCEEDED
    answered: dict[str, int] = field(default_factory=lambda: {"ok": 0, "failed": 0})

    def __post_init__(self) -> None:
        self.updated = self.created

    @property
    def name(self) -> str:
        return f"batches/{self.id}"

    @property
    def done(self) -> bool:
        return self.state in TERMINAL

    def stats(self) -> dict[str, str]:
        """batchStats: int64 counts as strings, zero counts left out (proto3 JSON)."""
        ok, failed, total = self.answered["ok"], self.answered["failed"], len(self.lines)
        counts = {"requestCount": total, "successfulRequestCount": ok,
                  "failedRequestCount": failed, "pendingRequestCount": total - ok - failed}
        return {k: str(v) for k, v in counts.items() if v}

    def operation(self, stamp: Callable[[float], str]) -> dict:
        """The job as the API shows it: an Operation whose metadata is the batch."""
        meta: dict = {"@type": BATCH_TYPE, "name": self.name, "model": f"models/{self.model}",
                      "displayName": self.display_name, "createTime": stamp(self.created),
                      "updateTime": stamp(self.updated), "batchStats": self.stats(),
                      "state": f"BATCH_STATE_{self.state}"}
        if self.ended is not None:
            meta["endTime"] = stamp(self.ended)
        if self.output is not None:
            meta["output"] = self.output
        operation: dict = {"name": self.name, "metadata": meta}
        if self.done:
            operation["done"] = True
        if self.output is not None:
            operation["response"] = {"@type": OUTPUT_TYPE, "output": self.output}
        if self.error is not None:
            operation["error"] = self.error
        return operation


def inline_lines(config: dict) -> list[Line] | str:
    """inputConfig.requests.requests[] → lines, or what is wrong with them."""
    items = (config.get("requests") or {}).get("requests") \
        if isinstance(config.get("requests"), dict) else None
    if not isinstance(items, list) or not items:
        return "inputConfig needs requests.requests[] or fileName"
    lines = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("request"), dict):
            return f"requests[{i}].request is required"
        metadata = item.get("metadata")
        if metadata is not None and not isinstance(metadata, dict):
            return f"requests[{i}].metadata must be an object"
        lines.append(Line(item["request"], metadata=metadata))
    return lines


def jsonl_lines(data: bytes) -> list[Line] | str:
    """An input file's JSONL (`{"key", "request"}` a line) → lines, or what is wrong."""
    lines = []
    for number, text in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
        if not text.strip():
            continue
        try:
            item = json.loads(text)
        except ValueError:
            return f"input file line {number} is not JSON"
        if not isinstance(item, dict) or not isinstance(item.get("request"), dict):
            return f"input file line {number} has no request"
        key = item.get("key")
        lines.append(Line(item["request"], key=key if isinstance(key, str) else None))
    return lines or "the input file holds no requests"


def finish(fake: FakeGeminiBatch, job: BatchJob) -> tuple[dict, dict[str, int]]:
    """Answer every line (the next `batch-line` fault each) and bill each image made: the
    job's output (the results shuffled, inline or as a generated JSONL file) and its counts."""
    answers = [_answer(fake, job, line, fake.faults.next("batch-line")) for line in job.lines]
    results = [result for result, _ in answers]
    counts = {"ok": sum(ok for _, ok in answers), "failed": sum(not ok for _, ok in answers)}
    random.Random(job.id).shuffle(results)
    if job.source == "inline":
        return {"inlinedResponses": {"inlinedResponses": results}}, counts
    text = "".join(json.dumps(r) + "\n" for r in results)
    stored = fake.files.generated(text.encode(), "application/jsonl",
                                  f"{job.display_name} responses")
    return {"responsesFile": stored.name}, counts


def _answer(fake: FakeGeminiBatch, job: BatchJob, line: Line,
            fault: str | None) -> tuple[dict, bool]:
    label = {"key": line.key} if job.source == "file" else \
        {"metadata": line.metadata} if line.metadata is not None and fault != "no-metadata" \
        else {}
    if fault in LINE_ERRORS:
        return {**label, "error": LINE_ERRORS[fault]}, False
    billed = Billed(_prompt(line.request), fault, model=job.model, lane="batch",
                    usd=image_price(job.model, line.request, "batch"), batch=job.name,
                    key=line.key or (line.metadata or {}).get("key", ""))
    with fake.lock:
        fake.bodies.append(line.request)
        fake.billed.append(billed)
        billed.number = len(fake.bodies)
    fake.count("generates")
    return {**label, "response": fake._reply(line.request, job.spec, billed)}, True
