"""Each backend takes its part of the one Settings object (read once at the edge), never the
environment: addresses, times, caps and keys, with each backend's own defaults."""

from __future__ import annotations

import pytest

from nbpipe.backends import gemini, hiapi, open_backend
from nbpipe.backends.http import RetryPolicy
from nbpipe.errors import UsageError
from nbpipe.settings import Settings, using


def test_hiapi_takes_its_part_of_the_settings():
    got = hiapi.HiApiSettings.of(Settings.from_env({
        "HIAPI_TOKEN": "sk-1", "HIAPI_BASE_URL": "http://127.0.0.1:9/v1/",
        "NBPIPE_HIAPI_POLL_DELAY": "0.1", "NBPIPE_HIAPI_POLL_INTERVAL": "0.2",
        "NBPIPE_HIAPI_TIMEOUT": "3", "NBPIPE_MAX_IMAGE_BYTES": "1024",
        "NBPIPE_DOWNLOAD_TIMEOUT": "4", "NBPIPE_RETRY_BASE": "0.5",
        "NBPIPE_RETRY_DEADLINE": "7"}))
    assert got == hiapi.HiApiSettings(
        api_key="sk-1", base_url="http://127.0.0.1:9", poll_delay=0.1, poll_interval=0.2,
        task_timeout=3.0, max_bytes=1024, download_timeout=4.0, call_timeout=60.0,
        retry=RetryPolicy(base=0.5, deadline=7.0))


def test_hiapi_defaults():
    got = hiapi.HiApiSettings.of(Settings(hiapi_key=Settings.from_env(
        {"HIAPI_API_KEY": "sk-2"}).hiapi_key))
    assert got == hiapi.HiApiSettings(api_key="sk-2")
    assert got.base_url == hiapi.DEFAULT_BASE_URL and got.call_timeout == 60.0


def test_gemini_takes_its_part_of_the_settings():
    env = {"GOOGLE_API_KEY": "AIza-1", "GOOGLE_GEMINI_BASE_URL": "http://127.0.0.1:9/v1"}
    got = gemini.GeminiSettings.of(Settings.from_env(env))
    assert (got.api_key, got.base_url, got.api_version, got.call_timeout) == (
        "AIza-1", "http://127.0.0.1:9", "v1", 300.0)
    got = gemini.GeminiSettings.of(Settings.from_env({
        **env, "NBPIPE_GEMINI_API_VERSION": "v1beta", "NBPIPE_CALL_TIMEOUT": "2",
        "NBPIPE_MAX_IMAGE_BYTES": "99"}))
    assert (got.api_version, got.call_timeout, got.max_bytes) == ("v1beta", 2.0, 99)
    assert gemini.GeminiSettings.of(Settings.from_env({"GEMINI_API_KEY": "k"})).base_url == \
        gemini.DEFAULT_BASE_URL


@pytest.mark.parametrize(("name", "first", "second"), [
    ("hiapi", "HIAPI_API_KEY", "HIAPI_TOKEN"), ("gemini", "GEMINI_API_KEY", "GOOGLE_API_KEY")])
def test_a_missing_key_names_the_variables_of_the_spec(name, first, second, monkeypatch):
    monkeypatch.setenv(first, "set-in-the-environment-but-not-in-the-settings")
    with pytest.raises(UsageError) as caught:
        open_backend(name, 1, None, Settings())  # the settings handed down, not os.environ
    assert str(caught.value) == f"{first} is not set, so nothing can be rendered on {name}"
    assert f"set {first} (or {second})" in caught.value.hint


def test_without_settings_handed_down_the_commands_ones_are_used(monkeypatch):
    monkeypatch.delenv("HIAPI_API_KEY", raising=False)
    monkeypatch.delenv("HIAPI_TOKEN", raising=False)
    with using(Settings.from_env({"HIAPI_API_KEY": "sk-installed"})):
        backend = open_backend("hiapi", 1, None)
    try:
        assert backend.settings.api_key == "sk-installed"
    finally:
        import asyncio

        asyncio.run(backend.aclose())
