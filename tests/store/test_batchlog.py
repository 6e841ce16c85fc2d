"""The batch jobs log: journalled before a create, read back line by line, untrusted lines
skipped, compacted to the jobs an open journal entry still belongs to."""

from __future__ import annotations

import json
import os

from nbpipe.store.batchlog import BatchJob, BatchLog

A, B = ("a" * 64, 1), ("b" * 64, 1)


def job(display: str, *members: tuple[str, int], attempt: int = 1) -> BatchJob:
    return BatchJob(display, "gemini", "gemini-3.1-flash-image", "acct", members, attempt, 1.0)


def test_a_job_its_name_and_its_end_read_back(tmp_path):
    log = BatchLog(tmp_path / "batches.jsonl")
    log.job(job("one", A, B))
    log.created("one", "batches/1")
    again = BatchLog(tmp_path / "batches.jsonl")
    assert again.of(A) is not None and again.of(A).name == "batches/1"
    again.ended("one", "SUCCEEDED")
    assert BatchLog(tmp_path / "batches.jsonl").of(B) is None


def test_a_slot_belongs_to_its_newest_attempt(tmp_path):
    log = BatchLog(tmp_path / "batches.jsonl")
    log.job(job("first", A, attempt=1))
    log.job(job("second", A, attempt=2))
    assert log.of(A).display == "second"  # type: ignore[union-attr]


def test_untrusted_lines_are_skipped_not_crashed_on(tmp_path):
    path = tmp_path / "batches.jsonl"
    path.write_text("\n".join([
        "not json", json.dumps({"op": "job", "display": "x"}),  # no members
        json.dumps({"op": "created", "display": "nobody", "name": "batches/9"}),
        json.dumps({"op": "job", "display": "ok", "backend": "gemini", "model": "m",
                    "members": [list(A)], "attempt": 0}),  # attempt < 1
        json.dumps({"op": "job", "display": "good", "backend": "gemini", "model": "m",
                    "members": [list(B)]})]) + "\n")
    log = BatchLog(path)
    assert list(log.jobs) == ["good"] and log.of(A) is None


def test_compaction_keeps_the_jobs_of_open_entries_only(tmp_path):
    log = BatchLog(tmp_path / "batches.jsonl")
    log.job(job("open", A))
    log.created("open", "batches/1")
    log.job(job("done", B))
    log.close({A})
    kept = BatchLog(tmp_path / "batches.jsonl")
    assert list(kept.jobs) == ["open"] and kept.jobs["open"].name == "batches/1"


def test_a_fifo_planted_in_its_place_reads_as_empty(tmp_path):
    path = tmp_path / "batches.jsonl"
    os.mkfifo(path)
    assert BatchLog(path).jobs == {}


def test_the_line_models_are_built_on_the_first_line_read(tmp_path):
    """Most builds read no batch log: its validators are not built at import (start-up)."""
    import subprocess
    import sys

    probe = ("import sys; from pathlib import Path; from nbpipe.store import batchlog; "
             "before = batchlog._Job.__pydantic_complete__; "
             "log = batchlog.BatchLog(Path(sys.argv[1])); "
             "print(before, sorted(log.jobs))")
    log = BatchLog(tmp_path / "batches.jsonl")
    log.job(job("one", A))
    done = subprocess.run([sys.executable, "-c", probe, str(tmp_path / "batches.jsonl")],
                          capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.split() == ["False", "['one']"]
