"""The one settings object (nbpipe/settings.py): every variable parsed once, a bad value is a
usage error naming it on every path, keys never shown, and the no-op fingerprint follows the
settings that change what a build plans."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import pytest

from nbpipe.errors import UsageError
from nbpipe.settings import Secret, Settings, current, using

CABIN = """\
version: 1
defaults: {backend: preview, model: Nano-Banana-2}
targets:
  a: {prompt: "a cabin"}
  b: {prompt: "a lake"}
"""

# variable → (a bad value, what the message says it takes)
NUMBERS = ["NBPIPE_GC_GRACE", "NBPIPE_BATCH_POLL_INTERVAL", "NBPIPE_BATCH_SETTLE",
           "NBPIPE_RECOVER_TIMEOUT", "NBPIPE_INTERRUPT_GRACE",
           "NBPIPE_HIAPI_POLL_DELAY", "NBPIPE_HIAPI_POLL_INTERVAL", "NBPIPE_HIAPI_TIMEOUT",
           "NBPIPE_CALL_TIMEOUT", "NBPIPE_DOWNLOAD_TIMEOUT", "NBPIPE_RETRY_BASE",
           "NBPIPE_RETRY_DEADLINE", "NBPIPE_CLAIM_LEASE"]
BAD = {
    **dict.fromkeys(NUMBERS, ("soon", "must be a number of 0 or more, not 'soon'")),
    "NBPIPE_MAX_FRAMES": ("0", "must be a whole number of 1 or more, not '0'"),
    "NBPIPE_MAX_IMAGE_BYTES": ("1.5", "must be a whole number of 1 or more, not '1.5'"),
    "NBPIPE_TODAY": ("June", "='June' is not a date"),
    "NBPIPE_EXPLAIN": ("maybe", "must be 1 or 0, not 'maybe'"),
    "NBPIPE_BACKEND": ("dalle", "must be one of hiapi, gemini, fal, preview, openai, not 'dalle'"),
    "NBPIPE_SHARD": ("0/3", "must be K/N, whole numbers with 1 <= K <= N (like 2/3), not '0/3'"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_a_bad_value_is_a_usage_error_that_names_the_variable(name):
    value, says = BAD[name]
    with pytest.raises(UsageError) as caught:
        Settings.from_env({name: value})
    assert str(caught.value) == f"{name}{' ' * (not says.startswith('='))}{says}"
    assert caught.value.exit_code == 2


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "1e999", "ten"])
def test_a_number_must_be_finite_and_not_negative(value):
    with pytest.raises(UsageError, match="NBPIPE_HIAPI_TIMEOUT must be a number of 0 or more"):
        Settings.from_env({"NBPIPE_HIAPI_TIMEOUT": value})


@pytest.mark.parametrize("name", sorted(BAD))
def test_every_command_exits_2_on_a_bad_value_with_the_message(name, run, make_project,
                                                               monkeypatch):
    root = make_project(CABIN)
    value, says = BAD[name]
    monkeypatch.setenv(name, value)
    for command in (["plan"], ["gc", "--dry-run"], ["build", "--check"]):
        result = run("-C", str(root), *command)
        assert result.code == 2, (command, result)
        assert name in result.err and says in result.err and "Traceback" not in result.err


def test_the_entry_point_says_it_as_the_cli_does(make_project, tmp_path):
    root = make_project(CABIN)
    done = subprocess.run([sys.executable, "-m", "nbpipe", "-C", str(root), "build"],
                          env={"PATH": "/usr/bin:/bin", "NBPIPE_RETRY_DEADLINE": "later",
                               "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
                          capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr) == (
        2, "error: NBPIPE_RETRY_DEADLINE must be a number of 0 or more, not 'later'\n"
           "hint: unset NBPIPE_RETRY_DEADLINE for the default\n")


def test_defaults_when_unset_or_empty():
    assert Settings.from_env({}) == Settings()
    assert Settings.from_env(dict.fromkeys(BAD, "")) == Settings()
    got = Settings()
    assert (got.gc_grace, got.recover_timeout, got.interrupt_grace) == (3600.0, 300.0, 10.0)
    assert (got.hiapi_poll_delay, got.hiapi_poll_interval, got.hiapi_timeout) == (5.0, 3.0, 600.0)
    assert (got.download_timeout, got.retry_base, got.retry_deadline) == (300.0, 1.0, 300.0)
    assert got.max_image_bytes == 64 << 20 and got.call_timeout is None
    assert got.max_frames is None and got.today is None and got.explain is False


def test_values_are_parsed():
    got = Settings.from_env({
        "NBPIPE_CACHE_DIR": "/tmp/c", "NBPIPE_BACKEND": "gemini", "NBPIPE_PROFILE": "draft",
        "NBPIPE_MAX_FRAMES": "12", "NBPIPE_TODAY": "2026-06-01", "NBPIPE_EXPLAIN": "yes",
        "NBPIPE_GC_GRACE": "0", "NBPIPE_CALL_TIMEOUT": "2.5", "NBPIPE_MAX_IMAGE_BYTES": "1024",
        "HIAPI_TOKEN": "t", "GOOGLE_API_KEY": "g", "GEMINI_API_KEY": "k", "NBPIPE_SHARD": " 2/3 "})
    assert got.cache_dir == Path("/tmp/c") and (got.backend, got.profile) == ("gemini", "draft")
    assert (got.max_frames, got.today, got.explain) == (12, dt.date(2026, 6, 1), True)
    assert (got.gc_grace, got.call_timeout, got.max_image_bytes) == (0.0, 2.5, 1024)
    assert got.hiapi_key == Secret("t") and got.gemini_key is not None
    assert got.gemini_key.reveal() == "k"  # GEMINI_API_KEY before GOOGLE_API_KEY
    assert got.shard == (2, 3) and str(got.shard) == "2/3"


@pytest.mark.parametrize("value", ["0/3", "4/3", "1/0", "0/0", "-1/2", "1.5/2", "2", "/3",
                                   "1/", "a/b", "1/2/3", "\u0663/\u0663", "1/1234567", "+1/2"])
def test_a_shard_is_k_of_n_from_1(value):
    with pytest.raises(UsageError, match="NBPIPE_SHARD must be K/N"):
        Settings.from_env({"NBPIPE_SHARD": value})


def test_keys_are_never_shown():
    got = Settings.from_env({"HIAPI_API_KEY": "sk-live-123", "GEMINI_API_KEY": "AIza-456"})
    for shown in (repr(got), str(got), f"{got.hiapi_key}", str(got._asdict())):
        assert "sk-live-123" not in shown and "AIza-456" not in shown
    assert "sk-live" not in str(got.planned())


def test_current_is_what_the_edge_installed(monkeypatch):
    monkeypatch.setenv("NBPIPE_GC_GRACE", "5")
    assert current().gc_grace == 5.0  # outside a command: the environment as it is now
    with using(Settings(gc_grace=7.0)):
        monkeypatch.setenv("NBPIPE_GC_GRACE", "garbage")
        assert current().gc_grace == 7.0  # read once, at the edge
    with pytest.raises(UsageError):
        current()


def _state(root: Path) -> str:
    return (root / ".nbpipe" / "state.json").read_text()


@pytest.mark.parametrize("name, value", [("NBPIPE_MAX_FRAMES", "200000"),
                                         ("NBPIPE_REMOTE_ENDPOINT", "http://127.0.0.1:9")])
def test_a_build_relevant_setting_changes_the_fingerprint(name, value, run, make_project,
                                                          monkeypatch):
    from nbpipe.engine.noop import fingerprint_options, still_fresh

    root = make_project(CABIN)
    assert run("-C", str(root), "build").code == 0
    journal, options = root / ".nbpipe" / "journal.jsonl", fingerprint_options(None, None)
    assert still_fresh(root, options, journal) == 2
    monkeypatch.setenv(name, value)
    assert still_fresh(root, options, journal) is None
    assert run("-C", str(root), "build").out == "nothing to do: 2 frames fresh\n"  # planned again
    assert still_fresh(root, options, journal) == 2  # the new fingerprint holds the new value
    assert name in _state(root)
    monkeypatch.delenv(name)
    assert still_fresh(root, options, journal) is None


def test_a_setting_the_planner_does_not_read_keeps_the_fast_path(run, make_project,
                                                                 monkeypatch):
    from nbpipe.engine.noop import fingerprint_options, still_fresh

    root = make_project(CABIN)
    assert run("-C", str(root), "build").code == 0
    monkeypatch.setenv("NBPIPE_HIAPI_POLL_DELAY", "0")
    monkeypatch.setenv("HIAPI_API_KEY", "sk-secret")
    assert still_fresh(root, fingerprint_options(None, None),
                       root / ".nbpipe" / "journal.jsonl") == 2
    assert "sk-secret" not in _state(root)
