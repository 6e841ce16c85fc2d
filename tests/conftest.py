"""Shared helpers: temp projects and an in-process runner of the real CLI."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import hypothesis  # noqa: F401  (imported first: see below)
import pytest

from nbpipe.cli import main

# hypothesis is imported up front: its pytest plugin imports it at the session's end otherwise,
# and CPython 3.11.7 can then fail that import ("AST constructor recursion depth mismatch")
# after a test module that never imported it has run.

REPO = Path(__file__).resolve().parent.parent
EXAMPLES_DIR = REPO / "projects"  # read only: tests work on copies (see copy_example)
# What a build leaves in a project: never copied, so no test sees the state a user's run left.
BUILD_STATE = ("out", ".nbpipe", "nbpipe.lock")


# The slow tier (marker `slow`, registered in pyproject.toml): real-process model runs, fuzzers
# and property tests, crash, interrupt and scale runs, whole-workflow runs, and every test that
# drives a real Chromium (the `browser` fixture). `pytest -m "not slow"` leaves them out: the
# edit loop. README's test command runs them all. One list, here,
# so each file says nothing of its tier and a new slow test is one line: a path, or a
# path::test name (every parameter of it).
SLOW = {
    "tests/engine/test_money_model.py": "the money model: hypothesis drives real CLI processes",
    "tests/engine/test_money_remote_model.py": "the money model with a team remote",
    "tests/engine/test_gate_property.py": "the gate property test (hundreds of examples)",
    "tests/manifest/test_fuzz.py": "the manifest fuzzer",
    "tests/manifest/test_templates.py::test_any_template_renders_or_faults": "template fuzzer",
    "tests/security/test_store_fuzz.py": "the store fuzzer",
    "tests/backends/test_replies.py::test_any_reply_ends_in_a_result_or_an_nbpipe_error":
        "the reply fuzzer",
    "tests/engine/test_hostile.py": "kill -9, Ctrl-C and concurrent commands, real processes",
    "tests/engine/test_interrupt.py": "Ctrl-C and kill -9 in real processes",
    "tests/engine/test_openai_interrupt.py": "OpenAI calls: Ctrl-C and kill -9, real processes",
    "tests/backends/test_fal_kill.py": "kill -9 in real builds on fal's queue",
    "tests/engine/test_scale.py::test_kill_9_at_random_moments_never_pays_twice": "crash runs",
    "tests/engine/test_scale.py::test_ctrl_c_collects_what_is_in_flight_and_exits_130":
        "a Ctrl-C in a real process",
    "tests/engine/test_disk_faults.py::test_two_builds_at_once_on_one_project_and_one_cache":
        "three real builds at once",
    "tests/backends/test_delays.py": "real processes run against the server's delays",
    "tests/backends/test_hiapi_faults.py::"
    "test_retries_stop_at_the_retry_deadline_and_honour_retry_after_below_it":
        "waits out real Retry-After pauses",
    "tests/test_newcomer.py": "a fresh clone, used as a newcomer would",
    "tests/engine/test_prloop.py": "the CI workflow script end to end (git, a remote)",
    "tests/engine/test_shards.py::"
    "test_the_sharded_workflow_pays_each_frame_once_and_commits_the_whole_lock":
        "docs/ci.md's sharded workflow end to end (git, a remote)",
}


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        path = Path(str(item.path)).relative_to(REPO).as_posix()
        if path in SLOW or f"{path}::{item.originalname}" in SLOW or \
                "browser" in getattr(item, "fixturenames", ()):  # a real Chromium
            item.add_marker(pytest.mark.slow)


def copy_example(name: str, root: Path) -> Path:
    """A fresh copy of example project `name` at `root`: what is declared, no build state."""
    shutil.copytree(EXAMPLES_DIR / name, root, ignore=shutil.ignore_patterns(*BUILD_STATE))
    return root


@pytest.fixture
def example(tmp_path):
    """`example(name)`: this test's own copy of an example project (the same one each call)."""
    copies: dict[str, Path] = {}

    def _example(name: str) -> Path:
        if name not in copies:
            copies[name] = copy_example(name, tmp_path / "examples" / name)
        return copies[name]
    return _example


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def run(capsys, monkeypatch):
    """Run `nbpipe ARGS` in-process in directory `cwd`; returns exit code, stdout, stderr."""

    def _run(*args: str, cwd: Path | None = None) -> Result:
        if cwd is not None:
            monkeypatch.chdir(cwd)
        capsys.readouterr()
        code = main(list(args))
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return _run


@pytest.fixture
def build(run):
    """`nbpipe build --json`: the summary, with the events, exit code and output beside it."""
    def _build(root: Path, *args: str) -> dict:
        result = run("-C", str(root), "build", "--json", *args)
        assert result.code in (0, 1), result.err
        events = [json.loads(line) for line in result.out.splitlines()]
        return {**events[-1], "events": events[:-1], "code": result.code, "err": result.err,
                "out": result.out}
    return _build


@pytest.fixture
def make_project(tmp_path):
    """Write nbpipe.yaml (and any extra files) into a fresh project directory."""

    def _make(manifest: str, files: dict[str, bytes] | None = None) -> Path:
        root = tmp_path / "project"
        root.mkdir(exist_ok=True)
        (root / "nbpipe.yaml").write_text(manifest, "utf-8")
        for name, data in (files or {}).items():
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        return root

    return _make


def on_preview(root: Path) -> Path:
    """Point a copied project's manifest at the preview backend, so its default build (its
    committed lock section, its out/ folder) is free and needs no key."""
    import re

    manifest = root / "nbpipe.yaml"
    manifest.write_text(re.sub(r"backend: (hiapi|gemini)", "backend: preview",
                               manifest.read_text("utf-8")), "utf-8")
    return root


def tiny_png() -> bytes:
    """A valid 1×1 PNG, for input and reference files."""
    import base64

    return base64.b64decode(
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")


def wait_for(condition, timeout: float = 120) -> None:
    """Return once `condition()` holds (polled). The timeout only fails a test that would
    otherwise hang: no test passes or fails by how long something takes."""
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def read_until(stream, text: str, timeout: float = 120) -> str:
    """Read a command's lines (a text pipe) until one holds `text`: the command has said it, so
    it is at that point. Returns what was read, for the test's own checks. The timeout only
    fails a test that would otherwise hang (a thread reads: a pipe's readline cannot time out)."""
    import queue
    import threading

    lines: queue.Queue[str] = queue.Queue()

    def reader() -> None:
        for line in iter(stream.readline, ""):
            lines.put(line)
            if text in line:
                break
        lines.put("")  # the end, or the line sought

    threading.Thread(target=reader, daemon=True).start()
    said = []
    while True:
        try:
            line = lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"the command never said {text!r}; it said "
                                 f"{''.join(said)!r}") from None
        if not line:
            break
        said.append(line)
    assert said and text in said[-1], f"the command ended without {text!r}: {''.join(said)!r}"
    return "".join(said)


os.environ.pop("NBPIPE_CACHE_DIR", None)
os.environ.pop("NBPIPE_WARM", None)  # a developer's warm server is not the code under test


@pytest.fixture
def fake_hiapi(monkeypatch):
    """A running fake HiAPI, with the environment pointing nbpipe at it and fast polling."""
    from tests.fakes.hiapi import FakeHiApi

    with FakeHiApi() as fake:
        monkeypatch.setenv("HIAPI_API_KEY", fake.key)
        monkeypatch.setenv("HIAPI_BASE_URL", fake.url)
        monkeypatch.setenv("NBPIPE_HIAPI_POLL_DELAY", "0")
        monkeypatch.setenv("NBPIPE_HIAPI_POLL_INTERVAL", "0.01")
        monkeypatch.setenv("NBPIPE_RETRY_BASE", "0.01")
        yield fake


@pytest.fixture
def fake_gemini(monkeypatch):
    from tests.fakes.gemini import FakeGemini

    with FakeGemini() as fake:
        monkeypatch.setenv("GEMINI_API_KEY", fake.key)
        monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
        monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", fake.url)
        monkeypatch.setenv("NBPIPE_RETRY_BASE", "0.01")
        yield fake


@pytest.fixture
def fake_gemini_batch(monkeypatch):
    """A running fake Gemini with the Batch and Files APIs; nbpipe pointed at it, polling fast."""
    from tests.fakes.gemini_batch import FakeGeminiBatch

    with FakeGeminiBatch() as fake:
        monkeypatch.setenv("GEMINI_API_KEY", fake.key)
        monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
        monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", fake.url)
        monkeypatch.setenv("NBPIPE_RETRY_BASE", "0.01")
        monkeypatch.setenv("NBPIPE_BATCH_POLL_INTERVAL", "0.01")
        yield fake


@pytest.fixture
def fake_openai(monkeypatch):
    from tests.fakes.openai import FakeOpenAI

    with FakeOpenAI() as fake:
        monkeypatch.setenv("OPENAI_API_KEY", fake.key)
        monkeypatch.setenv("OPENAI_BASE_URL", fake.base)
        monkeypatch.setenv("NBPIPE_RETRY_BASE", "0.01")
        yield fake


def point_at_fal(monkeypatch, fake):
    """Point nbpipe at a fake fal queue (FakeFal or a subclass), polling fast."""
    monkeypatch.setenv("FAL_KEY", fake.key)
    monkeypatch.setenv("FAL_BASE_URL", fake.url)
    monkeypatch.setenv("NBPIPE_FAL_POLL_INTERVAL", "0.01")
    monkeypatch.setenv("NBPIPE_RETRY_BASE", "0.01")


@pytest.fixture
def fake_fal(monkeypatch):
    from tests.fakes.fal import FakeFal

    with FakeFal() as fake:
        point_at_fal(monkeypatch, fake)
        yield fake

