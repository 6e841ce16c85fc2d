"""nbpipe against the fake Gemini API, end to end through the CLI."""

from __future__ import annotations

import base64
import json

import pytest
from PIL import Image

from tests.conftest import copy_example, tiny_png
from tests.samples import failures

ONE = """\
version: 1
defaults: {backend: gemini, model: gemini-3.1-flash-image, aspect_ratio: "16:9"}
targets:
  a: {prompt: a red shoe}
  b: {prompt: a blue shoe}
"""


def test_sneaker_project_renders_once_with_real_formats(fake_gemini, build, tmp_path, run):
    root = tmp_path / "sneaker"
    copy_example("sneaker-colorways", root)
    first = build(root)
    assert (first["rendered"], fake_gemini.counts["generates"]) == (6, 6)
    assert first["spent_usd"] == 0.536  # 4 × 3.1 Flash 1K (0.067) + 2 × 3 Pro 2K (0.134)
    lock = json.loads((root / "nbpipe.lock").read_text())["frames"]
    assert lock["shoe/red"]["output"] == "out/shoe/red.png"
    assert lock["shoe-finish/matte"]["output"] == "out/shoe-finish/matte.jpg"  # Pro answers JPEG
    assert Image.open(root / "out/shoe-finish/matte.jpg").format == "JPEG"
    from nbpipe.engine.noop import still_fresh

    # The no-op fast path must know the outputs by their real (.jpg) paths.
    assert still_fresh(root, {"backend": None, "profile": None}, root / ".nbpipe" / "journal.jsonl") == 6
    requests = fake_gemini.counts["requests"]
    second = build(root)
    assert (second["rendered"], second["fresh"]) == (0, 6)
    assert fake_gemini.counts["requests"] == requests
    (root / "out/shoe-finish/matte.jpg").unlink()
    assert build(root)["restored"] == 1
    assert run("-C", str(root), "build", "--check").code == 0


def test_request_body_is_exactly_the_documented_shape(fake_gemini, build, make_project):
    root = make_project(ONE.replace("  b: {prompt: a blue shoe}\n", "")
                        .replace("{prompt: a red shoe}", "{prompt: restyle, inputs: [refs/a.png]}"),
                        {"refs/a.png": tiny_png()})
    build(root)
    (body,) = fake_gemini.bodies
    assert body == {
        "contents": [{"role": "user", "parts": [
            {"text": "restyle"},
            {"inlineData": {"mimeType": "image/png",
                            "data": base64.b64encode(tiny_png()).decode()}}]}],
        "generationConfig": {"responseModalities": ["IMAGE"],
                             "imageConfig": {"aspectRatio": "16:9", "imageSize": "1K"}}}


def test_v1_base_path(fake_gemini, build, make_project, monkeypatch):
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", fake_gemini.url + "/v1")
    assert build(make_project(ONE))["rendered"] == 2


@pytest.mark.parametrize("fault", ["429", "503"])
def test_refusals_are_retried(fault, fake_gemini, build, make_project):
    fake_gemini.faults.add("generate", fault)
    summary = build(make_project(ONE))
    assert (summary["rendered"], fake_gemini.counts["generates"]) == (2, 2)


def test_a_500_is_not_resent_and_counted_as_maybe_billed(fake_gemini, build, make_project):
    # Google's 500 INTERNAL says a run failed, not that none started: the image may be made
    fake_gemini.faults.add("generate", "500")
    summary = build(make_project(ONE))
    assert fake_gemini.counts["requests"] == 2 and summary["failed"] == 1
    assert "not retried" in list(failures(summary).values())[0]
    assert summary["maybe_billed"] == 1 and summary["spent_usd"] == 0.134  # 2 × 1K Flash


def test_a_lost_reply_is_not_retried(fake_gemini, build, make_project):
    fake_gemini.faults.add("generate", "drop")
    summary = build(make_project(ONE))
    assert (summary["rendered"], summary["failed"]) == (1, 1)
    assert "not retried" in list(failures(summary).values())[0]
    assert fake_gemini.counts["generates"] == 2


@pytest.mark.parametrize("fault, words", [
    ("safety", "Gemini made no image: the image was blocked by safety filters (IMAGE_SAFETY)"),
    ("prompt-blocked", "Gemini blocked the prompt (SAFETY)"),
    ("no-image", "Gemini's reply holds no image; the model said: Here is the image."),
])
def test_blocks_fail_the_frame_in_words(fault, words, fake_gemini, build, make_project):
    fake_gemini.faults.add("generate", fault)
    summary = build(make_project(ONE))
    assert summary["failed"] == 1
    assert list(failures(summary).values()) == [words]


@pytest.mark.parametrize("fault", ["badkey", "403"])
def test_bad_key_stops_the_build(fault, fake_gemini, build, make_project):
    fake_gemini.faults.add("generate", fault)
    summary = build(make_project(ONE.replace("  b: {prompt: a blue shoe}",
                                             "  b: {prompt: a blue shoe, inputs: [a]}")))
    assert summary["code"] == 1 and summary["rendered"] == 0
    assert "check GEMINI_API_KEY" in list(failures(summary).values())[0]
    assert fake_gemini.key not in summary["out"] + summary["err"]


def test_model_limits_are_checked_before_sending(fake_gemini, run, make_project):
    root = make_project(ONE.replace("gemini-3.1-flash-image,", "gemini-3-pro-image, "
                                    "resolution: '512',"))
    result = run("-C", str(root), "build")
    assert result.code == 2 and "resolution '512'" in result.err
    assert "gemini-3-pro-image takes 1K, 2K, 4K" in result.err
    assert fake_gemini.counts["requests"] == 0


def test_current_models_plan_at_catalogue_prices_and_build(fake_gemini, build, run, make_project):
    from nbpipe.catalog import builtin

    root = make_project("""\
version: 1
defaults: {backend: gemini, aspect_ratio: "1:1"}
targets:
  hero: {prompt: a red shoe, model: gemini-3-pro-image, resolution: 4K}
  thumb: {prompt: a red shoe, model: gemini-3.1-flash-image, resolution: "512", aspect_ratio: "8:1"}
""")
    gemini = builtin().models["gemini"]
    expected = gemini["gemini-3-pro-image"].price("4K") + gemini["gemini-3.1-flash-image"].price("512")
    plan = json.loads(run("-C", str(root), "plan", "--json").out)
    assert plan["summary"]["cost_usd"] == float(expected) == 0.285
    summary = build(root)
    assert (summary["rendered"], summary["spent_usd"]) == (2, 0.285)
    sizes = sorted(b["generationConfig"]["imageConfig"]["imageSize"] for b in fake_gemini.bodies)
    assert sizes == ["4K", "512"]


def test_a_model_the_api_does_not_know_stops_the_build_once(fake_gemini, run, make_project,
                                                           monkeypatch):
    import datetime as dt

    # The catalogue still lists the model (its shutdown is ahead), but Google has shut it down.
    monkeypatch.setenv("NBPIPE_TODAY", "2026-06-20")
    fake_gemini.today = dt.date(2026, 6, 25)
    root = make_project("version: 1\ndefaults: {backend: gemini, model: gemini-3-pro-image-preview}\n"
                        "targets:\n  shot: {prompt: a shoe, matrix: {n: [1, 2, 3, 4, 5, 6]}}\n")
    result = run("-C", str(root), "build", "-j", "2")
    assert result.code == 1 and "Traceback" not in result.err
    message = ("the Gemini API does not know model 'gemini-3-pro-image-preview': it may have been "
               "retired; `nbpipe models` lists the current ones")
    lines = result.out.splitlines()
    assert lines[-2] == f"build stopped: {message}"  # said once at the end,
    assert sum(message in line for line in lines[:-2]) == 1  # and by the frame that met it
    assert fake_gemini.counts["requests"] <= 2  # the frames already in flight, no more
    others = [line for line in lines[:-2] if message not in line]
    assert len(others) == 5 and all(line.endswith("the build stopped (see the end)")
                                    for line in others)


@pytest.mark.parametrize("where", ["fake", "elsewhere"])
def test_a_404_that_does_not_name_the_model_is_a_wrong_base_url(where, fake_gemini, build,
                                                                 make_project, monkeypatch):
    from tests.fakes.server import Elsewhere

    with Elsewhere() as other:  # answers 404 {"error": "nothing here"}: not Google's envelope
        base = f"{fake_gemini.url if where == 'fake' else other.url}/proxy"  # a path too many
        monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", base)
        summary = build(make_project(ONE), "-j", "1")
    message = (f"Gemini endpoint not found at {base}/v1beta/models/gemini-3.1-flash-image:"
               "generateContent (HTTP 404, not Google's NOT_FOUND for model "
               "'gemini-3.1-flash-image'); check GOOGLE_GEMINI_BASE_URL")
    assert failures(summary) == {"a": message}  # b is not sent: the build stopped
    assert summary["events"][-1] == {"event": "note", "message": f"build stopped: {message}"}
    assert (summary["code"], summary["skipped"]) == (1, 1)


def test_json_events_name_the_file_written(fake_gemini, build, make_project):
    """Gemini Pro answers JPEG: the output is out/a.jpg, and `build --json` says so (it said
    out/a.png, the declared path, a file that does not exist) when rendered and restored."""
    root = make_project(ONE.replace("gemini-3.1-flash-image", "gemini-3-pro-image")
                        .replace("  b: {prompt: a blue shoe}\n", ""))
    outputs = {}
    for step in ("rendered", "restored"):
        if step == "restored":
            (root / "out/a.jpg").unlink()
        (event,) = [e for e in build(root)["events"] if e["event"] == "frame"]
        outputs[event["status"]] = event["output"]
    assert outputs == {"rendered": "out/a.jpg", "restored": "out/a.jpg"}
    assert (root / "out/a.jpg").is_file() and not (root / "out/a.png").exists()


def test_a_jpeg_reply_never_replaces_a_file_nbpipe_did_not_make(fake_gemini, build,
                                                               make_project):
    """Gemini Pro answers JPEG: the image goes to out/a.jpg, a path the plan did not check (it
    checked out/a.png). A user's own out/a.jpg stays; the paid image is kept in the cache, and
    the next build says what is in the way instead of paying again."""
    root = make_project(ONE.replace("gemini-3.1-flash-image", "gemini-3-pro-image")
                        .replace("  b: {prompt: a blue shoe}\n", ""))
    (root / "out").mkdir(exist_ok=True)
    (root / "out/a.jpg").write_bytes(b"my own photo")
    first = build(root)
    assert (first["code"], first["rendered"], first["failed"]) == (1, 0, 1)
    assert failures(first) == {"a": "a file not made by nbpipe is in the way: out/a.jpg "
                                     "(--force overwrites; the image is in the cache)"}
    assert first["spent_usd"] > 0 and fake_gemini.counts["generates"] == 1
    assert (root / "out/a.jpg").read_bytes() == b"my own photo"
    again = build(root)
    assert (again["code"], fake_gemini.counts["generates"]) == (0, 1)
    (event,) = [e for e in again["events"] if e["event"] == "frame"]
    assert event["status"] == "kept" and "a file not made by nbpipe is in the way" in event["detail"]
    assert (root / "out/a.jpg").read_bytes() == b"my own photo"
    forced = build(root, "--force")
    assert forced["code"] == 0 and (root / "out/a.jpg").read_bytes()[:2] == b"\xff\xd8"
