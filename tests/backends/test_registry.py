"""One registry of backend specs: the built-in ones, and third-party ones from the entry-point
group `nbpipe.backends`."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import EntryPoint

import pytest

from nbpipe.backends import registry
from nbpipe.backends.names import GROUP, NAMES
from nbpipe.backends.registry import BackendSpec, Inputs, Lane

SPEC = BackendSpec(name="acme", lanes=(Lane.TASK,), inputs=Inputs.INLINE, key_env=("ACME_KEY",),
                   base_url_env="ACME_BASE_URL", payload_style="bytes",
                   open=lambda jobs, rpm, settings: None,  # type: ignore[arg-type,return-value]
                   describe=lambda request, images: {"prompt": request.prompt},
                   endpoint=lambda model: f"POST /acme/{model}",
                   would_send=lambda body, request, urls: body == request.prompt)
WRONG = SPEC._replace(name="other")
UNSENDABLE = SPEC._replace(would_send=None)  # a task lane that cannot say what it resends


@pytest.fixture
def plugins(monkeypatch):
    found = {"acme": EntryPoint("acme", f"{__name__}:SPEC", GROUP),
             "wrong": EntryPoint("wrong", f"{__name__}:WRONG", GROUP)}
    monkeypatch.setattr(registry, "_plugins", lambda: found)
    registry.spec.cache_clear()
    yield
    registry.spec.cache_clear()


def test_the_built_in_backends_and_their_lanes():
    assert registry.names()[:4] == ("hiapi", "gemini", "fal", "preview")
    assert (registry.spec("hiapi").lane, registry.spec("hiapi").inputs) == (Lane.TASK, Inputs.URL)
    assert registry.spec("gemini").unrepeatable and not registry.spec("gemini").resumable
    preview = registry.spec("preview")
    assert not (preview.paid or preview.resumable or preview.unrepeatable)
    assert registry.spec("gemini").endpoint("m") == "POST /v1beta/models/m:generateContent"
    openai = registry.spec("openai")  # no idempotency key: a lost reply is never resent
    assert openai.unrepeatable and not openai.resumable and openai.inputs is Inputs.INLINE
    assert openai.key_env == ("OPENAI_API_KEY",) and openai.base_url_env == "OPENAI_BASE_URL"


def test_a_third_party_backend_registers_through_the_entry_point_group(plugins):
    assert registry.names() == (*NAMES, "acme", "wrong")
    acme = registry.spec("acme")
    assert acme is SPEC and acme.resumable and acme.endpoint("x") == "POST /acme/x"


def test_an_entry_point_that_names_another_backend_is_refused(plugins):
    with pytest.raises(KeyError):
        registry.spec("wrong")
    with pytest.raises(KeyError):
        registry.spec("nowhere")


def test_a_task_lane_without_would_send_is_refused_naming_its_package(monkeypatch):
    """Without would_send a journalled create is never resent: after a crash its frame pays
    for a new task. Refused at registration, the package named."""
    from nbpipe.errors import UsageError

    found = {"acme": EntryPoint("acme", f"{__name__}:UNSENDABLE", GROUP)}
    monkeypatch.setattr(registry, "_plugins", lambda: found)
    registry.spec.cache_clear()
    try:
        with pytest.raises(UsageError, match=rf"'acme' of an installed package \({__name__}:"
                                             r"UNSENDABLE\).*no would_send"):
            registry.spec("acme")
        assert not registry.spec("gemini").would_send  # a call lane resends nothing
    finally:
        registry.spec.cache_clear()


def test_the_built_in_names_cost_no_import():
    code = ("import sys, nbpipe.launch as l; "
            "print(l.BACKENDS, [m for m in ('httpx', 'pydantic', 'nbpipe.backends.registry', "
            "'dataclasses') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == f"{NAMES} []" and NAMES[:2] == ('hiapi', 'gemini')


@pytest.fixture
def installed(monkeypatch):
    """A package that registers `acme` through the real entry-point lookup."""
    import importlib.metadata

    found = [EntryPoint("acme", f"{__name__}:SPEC", GROUP)]
    monkeypatch.setattr(importlib.metadata, "entry_points",
                        lambda group=None: found if group == GROUP else [])
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

    with pytest.raises(UsageError, match=f"must be one of {', '.join(NAMES)}, acme, not"):
        Settings.from_env({"NBPIPE_BACKEND": "nowhere"})
    assert Settings.from_env({"NBPIPE_BACKEND": "acme"}).backend == "acme"


class _Acme:
    """A third-party backend as a package would ship it: draws a PNG, bills its price."""

    name = "acme"
    account = "acme-test"
    sent: list[str] = []

    async def render(self, request, inputs, sink, job):
        import io

        from PIL import Image

        from nbpipe.backends.base import Rendered

        _Acme.sent.append(request.prompt)
        data = io.BytesIO()
        Image.new("RGB", (8, 8), (200, 40, 40)).save(data, "PNG")
        sink.write(data.getvalue())
        return Rendered(task_id=None)

    async def aclose(self) -> None:
        pass


ACME_MODELS = {
    "title": "Acme Images", "default_model": "acme-1", "jobs": 2, "input_transport": "inline",
    "models": {"acme-1": {"status": "ga", "prices": "0.02", "aspect_ratios": ["1:1"],
                          "output_formats": {"png": "png"}, "inputs": {"max": 0},
                          "source": "the package's own docs"}}}
RENDERING = BackendSpec(
    name="acme", lanes=(Lane.CALL,), inputs=Inputs.INLINE, key_env=("ACME_KEY",),
    base_url_env=None, payload_style="bytes", open=lambda jobs, rpm, settings: _Acme(),
    describe=lambda request, images, mimes: {"prompt": request.prompt},
    endpoint=lambda model: f"POST /acme/{model}", catalog=ACME_MODELS)


@pytest.fixture
def rendering(monkeypatch):
    """`acme` installed with its catalogue entry: models, prices and limits as data."""
    import importlib.metadata

    from nbpipe import catalog

    found = [EntryPoint("acme", f"{__name__}:RENDERING", GROUP)]
    monkeypatch.setattr(importlib.metadata, "entry_points",
                        lambda group=None: found if group == GROUP else [])
    for cached in (registry._plugins, registry.spec, catalog.builtin):
        cached.cache_clear()
    _Acme.sent.clear()
    yield
    for cached in (registry._plugins, registry.spec, catalog.builtin):
        cached.cache_clear()


ACME = """\
version: 1
defaults: {backend: acme, model: acme-1, aspect_ratio: "1:1"}
targets:
  a: {prompt: "a cabin"}
  b: {prompt: "a lake"}
"""


def test_an_installed_backend_brings_its_models_and_renders_through_the_engine(
        rendering, run, make_project):
    """One module plus catalogue data: plan prices it from the package's entry, build sends
    each request once through the call lane, and a second build sends nothing."""
    root = make_project(ACME)
    plan = json.loads(run("-C", str(root), "plan", "--json").out)
    assert plan["summary"]["cost_usd"] == 0.04
    first = run("-C", str(root), "build", "--json")
    assert first.code == 0, first.err
    assert json.loads(first.out.splitlines()[-1])["spent_usd"] == 0.04
    assert sorted(_Acme.sent) == ["a cabin", "a lake"]
    again = run("-C", str(root), "build", "--json")
    assert json.loads(again.out.splitlines()[-1])["rendered"] == 0 and len(_Acme.sent) == 2
    wrong = make_project(ACME.replace("model: acme-1", "model: acme-2"))
    assert "acme-1" in run("-C", str(wrong), "validate").err  # a located error, a hint


def test_the_cli_names_a_task_lane_package_without_would_send(rendering, monkeypatch, run,
                                                              make_project):
    unsendable = RENDERING._replace(lanes=(Lane.TASK,), would_send=None)
    monkeypatch.setattr(sys.modules[__name__], "RENDERING", unsendable)
    result = run("-C", str(make_project(ACME)), "build")
    assert result.code == 2 and "Traceback" not in result.err, result
    assert "backend 'acme' of an installed package" in result.err + result.out, result
    assert "would_send" in result.err + result.out and not _Acme.sent, result


def test_a_package_whose_catalogue_entry_is_broken_is_named(rendering, monkeypatch, run,
                                                            make_project):
    broken = RENDERING._replace(catalog={"title": "Acme"})
    monkeypatch.setattr(sys.modules[__name__], "RENDERING", broken)
    result = run("-C", str(make_project(ACME)), "plan")
    assert result.code == 2 and "backend 'acme' of an installed package" in result.err
