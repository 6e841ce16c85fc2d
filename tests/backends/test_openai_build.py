"""nbpipe against the fake OpenAI Images API, end to end through the CLI: generations and
multipart edits, prices per quality and size, the server's bytes kept, a lost reply announced,
counted and never resent, errors translated once."""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal

import pytest
from PIL import Image

from tests.conftest import tiny_png
from tests.fakes.openai import C2PA
from tests.samples import failures, journal

PROJECT = """\
version: 1
defaults: {backend: openai, model: gpt-image-1.5, quality: low}
targets:
  hero: {prompt: a red shoe on white, aspect_ratio: "3:2"}
  hero-edit: {prompt: make it blue, inputs: [hero]}
  poster: {prompt: a poster, model: gpt-image-2, aspect_ratio: "16:9", resolution: 2K,
           quality: high, output_format: webp}
  cutout: {prompt: a logo, inputs: [refs/logo.png], background: transparent}
"""
ONE = """\
version: 1
targets:
  a: {prompt: a red kite, backend: openai, model: gpt-image-1-mini, quality: low}
"""


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def spent(*summaries: dict) -> Decimal:
    return sum((Decimal(str(s.get("spent_usd", 0))) + Decimal(str(s.get("spent_earlier_usd", 0)))
                for s in summaries), Decimal(0))


def billed(fake) -> Decimal:
    return sum((b.usd for b in fake.billed), Decimal(0))


def test_a_project_with_generations_and_edits_pays_each_frame_once(fake_openai, build,
                                                                    make_project):
    root = make_project(PROJECT, {"refs/logo.png": tiny_png()})
    first = build(root)
    assert (first["rendered"], len(fake_openai.billed)) == (4, 4)  # calls = frames
    assert spent(first) == billed(fake_openai) == Decimal("0.875")  # 0.013 + 0.009 × 2 + 0.844
    by_prompt = {b.prompt: b for b in fake_openai.billed}
    assert {b.endpoint for b in fake_openai.billed if b.inputs} == {"edits"}
    assert by_prompt["make it blue"].inputs == [(root / "out/hero.png").read_bytes()]
    assert by_prompt["a logo"].inputs == [tiny_png()]
    assert Image.open(root / "out/poster.webp").format == "WEBP"
    again = build(root)
    assert (again["rendered"], again["fresh"], len(fake_openai.billed)) == (0, 4, 4)


def test_the_bodies_sent_are_exactly_the_documented_fields(fake_openai, build, make_project):
    root = make_project(PROJECT, {"refs/logo.png": tiny_png()})
    build(root)
    bodies = {b["prompt"]: b for b in fake_openai.bodies}
    assert bodies["a red shoe on white"] == {
        "model": "gpt-image-1.5", "prompt": "a red shoe on white", "size": "1536x1024",
        "quality": "low", "output_format": "png"}
    assert bodies["a poster"] == {"model": "gpt-image-2", "prompt": "a poster",
                                  "size": "2048x1152", "quality": "high", "output_format": "webp"}
    assert bodies["a logo"] == {  # multipart: every field a string, each input a file
        "model": "gpt-image-1.5", "prompt": "a logo", "size": "1024x1024", "quality": "low",
        "output_format": "png", "background": "transparent", "image[]": [sha(tiny_png())]}


def test_the_servers_bytes_reach_the_output_untouched_c2pa_and_all(fake_openai, build,
                                                                   make_project):
    """Provider provenance survives: the output is the reply's image, byte for byte, with the
    C2PA manifest OpenAI embeds in a PNG's caBX chunk."""
    root = make_project(ONE)
    build(root)
    (made,) = fake_openai.billed
    written = (root / "out/a.png").read_bytes()
    assert C2PA in made.image and written == made.image


def test_a_lost_reply_is_announced_counted_and_never_resent(fake_openai, build, make_project):
    """The body left and no reply came: the image may have been made and billed. The build
    says so, counts it as spent, and does not send it again; the next build does."""
    root = make_project(ONE)
    fake_openai.faults.add("images", "drop")
    first = build(root)
    assert first["failed"] == 1 and len(fake_openai.billed) == 1  # not resent within the build
    assert "after the request was sent; not retried" in failures(first)["a"]
    assert (first["maybe_billed"], Decimal(str(first["maybe_billed_usd"]))) == \
        (1, Decimal("0.005"))
    assert spent(first) == billed(fake_openai) == Decimal("0.005")
    assert journal(root).open == {}  # closed: no later build announces it again
    second = build(root)
    assert second["rendered"] == 1 and len(fake_openai.billed) == 2
    assert spent(first, second) == billed(fake_openai)  # Σ reported = Σ billed
    assert build(root)["fresh"] == 1 and len(fake_openai.billed) == 2


def test_a_reply_not_back_within_the_call_timeout_is_counted_as_billed(
        fake_openai, build, make_project, monkeypatch):
    root = make_project(ONE)
    monkeypatch.setenv("NBPIPE_CALL_TIMEOUT", "0.5")
    fake_openai.holds.hold("reply")  # billed; its reply waits until the build gave up
    first = build(root)
    fake_openai.holds.release()
    assert first["failed"] == 1 and "may have been billed" in failures(first)["a"]
    assert spent(first) == Decimal("0.005") and len(fake_openai.billed) == 1


@pytest.mark.parametrize("faults", [("429",), ("503",), ("429", "503", "429")])
def test_refusals_are_retried_and_billed_once(faults, fake_openai, build, make_project):
    fake_openai.faults.add("images", *faults)
    summary = build(make_project(ONE))
    assert summary["rendered"] == 1 and len(fake_openai.billed) == 1
    assert fake_openai.counts["requests"] == len(faults) + 1
    assert spent(summary) == billed(fake_openai)


def test_a_500_is_not_resent_and_counted_as_maybe_billed(fake_openai, build, make_project):
    # OpenAI's 500 says a run failed, not that none started: the image may have been made
    fake_openai.faults.add("images", "500")
    summary = build(make_project(ONE))
    assert fake_openai.counts["requests"] == 1 and summary["failed"] == 1
    assert "not retried" in failures(summary)["a"] and spent(summary) == Decimal("0.005")


@pytest.mark.parametrize("fault, words", [
    ("moderation", "OpenAI's moderation blocked the request (HTTP 400 moderation_blocked): "
                   "Your request was rejected by the safety system.; change the prompt or the "
                   "input images"),
])
def test_a_moderation_block_fails_the_frame_in_words_and_bills_nothing(
        fault, words, fake_openai, build, make_project):
    fake_openai.faults.add("images", fault)
    summary = build(make_project(ONE))
    assert failures(summary) == {"a": words}
    assert spent(summary) == 0 and fake_openai.billed == []


@pytest.mark.parametrize("fault, says", [
    ("badkey", "OpenAI refused the key (HTTP 401 invalid_api_key: Incorrect API key provided.); "
               "check OPENAI_API_KEY"),
    ("quota", "OpenAI answered HTTP 429 insufficient_quota: the account's quota or credit is "
              "spent"),
])
def test_a_refused_key_or_spent_quota_stops_the_build(fault, says, fake_openai, run,
                                                      make_project):
    fake_openai.faults.add("images", fault)
    result = run("-C", str(make_project(ONE)), "build")
    assert result.code != 0 and says in result.err + result.out
    assert fake_openai.counts["requests"] == 1


def test_a_400_names_the_parameter(fake_openai, build, make_project):
    """What nbpipe did not check (a prompt the catalogue allows, a server with a tighter
    rule) comes back as the server's 400, its `param` named, once."""
    fake_openai.prompt_max = 5
    summary = build(make_project(ONE))
    assert failures(summary) == {"a": "OpenAI rejected the request (HTTP 400 "
                                      "string_above_max_length, parameter 'prompt'): Prompt too "
                                      "long: at most 5 characters"}
    assert fake_openai.counts["requests"] == 1 and spent(summary) == 0


def test_show_prints_the_body_and_the_endpoint(fake_openai, run, make_project):
    root = make_project(PROJECT, {"refs/logo.png": tiny_png()})
    out = run("-C", str(root), "show", "cutout", "--json").out
    shown = json.loads(out)
    body = shown.get("request") or shown.get("body") or shown
    text = json.dumps(body)
    assert '"background": "transparent"' in text and '"image[]"' in text
    assert "file 'refs/logo.png'" in text


def test_models_lists_openai_with_prices_per_quality_and_size(run):
    out = run("models", "--backend", "openai").out
    assert "gpt-image-2" in out and "gpt-image-1.5" in out and "gpt-image-1-mini" in out
    assert "low/1536x1024 0.013" in out and "high/4K" in out
    assert "retired 2026-10-23 → gpt-image-2.5-sunburst / gpt-image-2.5-flare" in out


def test_preview_stands_in_for_openai_free_in_the_size_and_format_asked(build, make_project,
                                                                         run):
    root = make_project(PROJECT, {"refs/logo.png": tiny_png()})
    summary = build(root, "--backend", "preview")
    assert (summary["rendered"], summary["spent_usd"]) == (4, 0)
    with Image.open(root / "out/@preview/poster.webp") as poster:
        assert (poster.format, poster.size) == ("WEBP", (2048, 1152))
    with Image.open(root / "out/@preview/hero.png") as hero:
        assert hero.size == (1536, 1024)


def test_without_its_key_a_build_stops_naming_the_one_variable(run, make_project, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    result = run("-C", str(make_project(ONE)), "build")
    assert result.code == 2 and "OPENAI_API_KEY is not set" in result.err
    assert "set OPENAI_API_KEY, or build offline with --backend preview" in result.err


def test_openai_retry_after_ms_is_read_before_retry_after():
    import httpx

    from nbpipe.backends.http import retry_after

    assert retry_after(httpx.Headers({"retry-after-ms": "1500", "retry-after": "9"})) == 1.5
    assert retry_after(httpx.Headers({"retry-after-ms": "soon", "retry-after": "9"})) == 9.0


SHAPE = "OpenAI answered HTTP 200 with a body that does not match the documented shape"
BILLED = "; not retried, since the request may have been billed"


@pytest.mark.parametrize("fault, reason", [
    ("malformed:data-dict", f"{SHAPE} (data: Input should be a valid list){BILLED}"),
    ("malformed:b64-int", f"{SHAPE} (data.0.b64_json: Input should be a valid string){BILLED}"),
    ("malformed:no-b64", f"OpenAI's reply holds no image (no data[0].b64_json){BILLED}"),
    ("malformed:empty-data", f"OpenAI's reply holds no image (no data[0].b64_json){BILLED}"),
    ("malformed:bad-base64", "OpenAI's image data is not valid base64; not retried, since the "
                             "image was made and may have been billed"),
    ("malformed:not-an-image", "the server's bytes are not an image (they start b'hello'); not "
                               "retried, since the image was made and may have been billed"),
    ("malformed:bignum", f"OpenAI answered HTTP 200 with a body that is not JSON{BILLED}"),
    ("malformed:deep", f"OpenAI answered HTTP 200 with a body that is not JSON{BILLED}"),
])
def test_a_billed_reply_of_the_wrong_shape_fails_the_frame_counted_never_a_crash(
        fault, reason, fake_openai, build, make_project):
    fake_openai.faults.add("images", fault)
    summary = build(make_project(ONE))
    assert summary["code"] == 1 and failures(summary) == {"a": reason}
    assert "Traceback" not in summary["err"] and "internal error" not in summary["err"]
    assert len(fake_openai.billed) == 1 and spent(summary) == billed(fake_openai)


def test_an_error_of_the_wrong_shape_or_echoing_the_key_is_read_safely(fake_openai, build,
                                                                       make_project):
    fake_openai.faults.add("images", "bad-400", "echo-key")
    root = make_project(ONE)
    first = build(root)
    assert failures(first) == {"a": "OpenAI rejected the request (HTTP 400): Bad Request"}
    second = build(root)
    said = failures(second)["a"]
    assert fake_openai.key not in second["out"] + second["err"] and "[redacted]" in said
    assert spent(first, second) == 0 and fake_openai.billed == []


def test_calls_in_flight_are_counted_by_provider_in_words():
    from nbpipe.backends.registry import counted

    assert counted(["openai", "gemini", "openai"]) == "1 Gemini and 2 OpenAI"
    assert counted(["gemini"] * 4) == "4 Gemini"  # as the Gemini-only messages always said
