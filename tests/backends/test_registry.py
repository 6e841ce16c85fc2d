"""One registry of backend specs: the built-in ones, and third-party ones from the entry-point
group `nbpipe.backends`."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import EntryPoint

import pytest

from nbpipe.backends import registry
from nbpipe.backends.registry import BackendSpec, Inputs, Lane

SPEC = BackendSpec(name="acme", lanes=(Lane.TASK,), inputs=Inputs.INLINE, key_env=("ACME_KEY",),
                   base_url_env="ACME_BASE_URL", payload_style="bytes",
                   open=lambda jobs, rpm, settings: None,  # type: ignore[arg-type,return-value]
                   describe=lambda request, images: {"prompt": request.prompt},
                   endpoint=lambda model: f"POST /acme/{model}")
WRONG = SPEC._replace(name="other")


@pytest.fixture
def plugins(monkeypatch):
    found = {"acme": EntryPoint("acme", f"{__name__}:SPEC", registry.GROUP),
             "wrong": EntryPoint("wrong", f"{__name__}:WRONG", registry.GROUP)}
    monkeypatch.setattr(registry, "_plugins", lambda: found)
    registry.spec.cache_clear()
    yield
    registry.spec.cache_clear()


def test_the_built_in_backends_and_their_lanes():
    assert registry.names()[:3] == ("hiapi", "gemini", "preview")
    assert (registry.spec("hiapi").lane, registry.spec("hiapi").inputs) == (Lane.TASK, Inputs.URL)
    assert registry.spec("gemini").unrepeatable and not registry.spec("gemini").resumable
    preview = registry.spec("preview")
    assert not (preview.paid or preview.resumable or preview.unrepeatable)
    assert registry.spec("gemini").endpoint("m") == "POST /v1beta/models/m:generateContent"


def test_a_third_party_backend_registers_through_the_entry_point_group(plugins):
    assert registry.names() == ("hiapi", "gemini", "preview", "acme", "wrong")
    acme = registry.spec("acme")
    assert acme is SPEC and acme.resumable and acme.endpoint("x") == "POST /acme/x"


def test_an_entry_point_that_names_another_backend_is_refused(plugins):
    with pytest.raises(KeyError):
        registry.spec("wrong")
    with pytest.raises(KeyError):
        registry.spec("nowhere")


def test_the_built_in_names_cost_no_import():
    code = ("import sys, nbpipe.launch as l; "
            "print(l.BACKENDS, [m for m in ('httpx', 'pydantic', 'nbpipe.backends.registry', "
            "'dataclasses') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "('hiapi', 'gemini', 'preview') []"


@pytest.fixture
def installed(monkeypatch):
    """A package that registers `acme` through the real entry-point lookup."""
    import importlib.metadata

    found = [EntryPoint("acme", f"{__name__}:SPEC", registry.GROUP)]
    monkeypatch.setattr(importlib.metadata, "entry_points",
                        lambda group=None: found if group == registry.GROUP else [])
    registry._plugins.cache_clear()
    registry.spec.cache_clear()
    yield
    registry._plugins.cache_clear()
    registry.spec.cache_clear()


CABIN = """\
version: 1
defaults: {backend: preview, model: Nano-Banana-2}
targets:
  a: {prompt: "a cabin"}
"""


def test_backend_accepts_an_installed_backend_on_the_full_cli(installed, run, make_project,
                                                             monkeypatch):
    root = make_project(CABIN)
    refused = "Invalid value for '--backend'"
    assert refused in run("-C", str(root), "plan", "--backend", "nowhere").err
    result = run("-C", str(root), "plan", "--backend", "acme")
    # the option takes it; what it may render is the catalogue's to say (acme ships no models
    # in the built-in catalogue, so the planner, not click, refuses this plan)
    assert refused not in result.err and "unknown backend 'acme'" in result.err, result
    assert "acme" in run("plan", "--help").out  # the choices shown include it
    monkeypatch.setenv("NBPIPE_BACKEND", "acme")  # the variable takes it too
    assert "NBPIPE_BACKEND" not in run("-C", str(root), "plan").err


def test_an_unknown_backend_is_still_refused_with_the_installed_ones_named(installed):
    from nbpipe.errors import UsageError
    from nbpipe.settings import Settings

    with pytest.raises(UsageError, match="must be one of hiapi, gemini, preview, acme, not"):
        Settings.from_env({"NBPIPE_BACKEND": "nowhere"})
    assert Settings.from_env({"NBPIPE_BACKEND": "acme"}).backend == "acme"
