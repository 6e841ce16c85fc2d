"""The openai backend's request settings at plan time: quality, the size an aspect ratio and
tier map to, background and format, each checked per model from the catalogue (located errors
with hints), and each part of the request, so of the frame key."""

from __future__ import annotations

import json

import pytest

MIXED = """\
version: 1
defaults: {backend: openai, model: gpt-image-1.5, quality: high}
targets:
  a: {prompt: a kite, aspect_ratio: "16:9", background: transparent, output_format: jpeg}
  b: {prompt: a kite, backend: gemini, model: gemini-3.1-flash-image, quality: low}
  c: {prompt: a kite, model: gpt-image-1}
  d: {prompt: a kite, backend: hiapi, model: Nano-Banana-2, output_format: webp}
  e: {prompt: a kite, model: gpt-image-2, quality: max, aspect_ratio: "4:1"}
  f: {prompt: a kite, backend: gemini, model: gemini-3.1-flash-image}
  g: {prompt: a kite, model: gpt-image-2, background: transparent}
"""


def test_every_setting_a_model_does_not_take_is_a_located_error(run, make_project):
    result = run("-C", str(make_project(MIXED)), "plan")
    said = result.err + result.out
    assert result.code == 2
    expected = [
        ("4:37", "aspect ratio '16:9' is not taken by model 'gpt-image-1.5'",
         "gpt-image-1.5 takes 1:1, 3:2, 2:3"),
        ("4:57", "a transparent background needs png or webp output, and this target's is jpg",
         "set `output_format: png` (or webp)"),
        ("5:80", "a quality is not taken by model 'gemini-3.1-flash-image'",
         "remove `quality`, or pick a model with quality levels"),
        ("6:30", "model 'gpt-image-1' was shut down on 2026-10-23",
         "use 'gpt-image-2.5-sunburst' (its replacement) or 'gpt-image-2.5-flare'"),
        ("7:", "output format 'webp' is not taken by model 'Nano-Banana-2'",
         "Nano-Banana-2 takes png, jpeg"),
        ("8:52", "quality 'max' is not taken by model 'gpt-image-2'",
         "gpt-image-2 takes low, medium, high"),
        ("8:71", "aspect ratio '4:1' is not taken by model 'gpt-image-2'",
         "gpt-image-2 takes 1:1, 3:2, 2:3, 3:4, 4:3, 4:5, 5:4, 9:16, 16:9, 21:9"),
        ("10:", "background 'transparent' is not taken by model 'gpt-image-2'",
         "gpt-image-2 takes auto, opaque"),
    ]
    for where, message, hint in expected:
        assert f"nbpipe.yaml:{where}" in said and message in said and hint in said, message
    assert said.count("error:") == len(expected)  # `defaults: quality` follows the model: f


def plan_frames(run, root) -> dict[str, dict]:
    result = run("-C", str(root), "plan", "--json")
    assert result.code == 0, result.err
    frames = {}
    for line in result.out.splitlines():
        doc = json.loads(line)
        for step in doc.get("steps", [doc]):
            if isinstance(step, dict) and "frame" in step:
                frames[step["frame"]] = step
    return frames


@pytest.mark.parametrize("model, ratio, resolution, size", [
    ("gpt-image-1.5", None, None, "1024x1024"),
    ("gpt-image-1.5", "2:3", None, "1024x1536"),
    ("gpt-image-1-mini", "3:2", None, "1536x1024"),
    ("gpt-image-2", None, None, "1024x1024"),
    ("gpt-image-2", "16:9", "4K", "3840x2160"),
    ("gpt-image-2", "1:1", "4K", "2880x2880"),  # 8,294,400 px at most
    ("gpt-image-2", "9:16", "2K", "1152x2048"),
    ("gpt-image-2.5-flare", "21:9", "1K", "1024x432"),
])
def test_the_size_sent_follows_the_ratio_and_the_tier(model, ratio, resolution, size, run,
                                                      make_project):
    extra = "".join(f", {k}: {json.dumps(v)}" for k, v in
                    (("aspect_ratio", ratio), ("resolution", resolution)) if v)
    root = make_project("version: 1\ntargets:\n"
                        f"  a: {{prompt: x, backend: openai, model: {model}{extra}}}\n")
    shown = json.loads(run("-C", str(root), "show", "a", "--json").out)
    assert f'"size": "{size}"' in json.dumps(shown)
    assert '"quality": "medium"' in json.dumps(shown)  # the default, sent: the key says it


def test_quality_is_part_of_the_key_and_the_price(run, make_project):
    keys, costs = {}, {}
    for quality in ("low", "high"):
        root = make_project("version: 1\ntargets:\n  a: {prompt: x, backend: openai, "
                            f"model: gpt-image-1.5, quality: {quality}}}\n")
        shown = json.loads(run("-C", str(root), "show", "a", "--json").out)
        keys[quality], costs[quality] = shown["key"], shown["cost_usd"]
    assert keys["low"] != keys["high"]
    assert (costs["low"], costs["high"]) == (0.009, 0.133)


def test_the_built_in_draft_profile_renders_at_the_lowest_quality_of_the_cheapest_model(
        run, make_project):
    root = make_project("version: 1\ntargets:\n  a: {prompt: x, backend: openai, "
                        "model: gpt-image-2, quality: high}\n")
    shown = json.loads(run("-C", str(root), "show", "a", "--json", "--profile", "draft").out)
    assert (shown["model"], shown["params"]["quality"], shown["cost_usd"]) == \
        ("gpt-image-1-mini", "low", 0.005)


QUALITIES = """\
version: 1
defaults: {backend: openai, model: gpt-image-1.5}
profiles:
  hero: {quality: high}
targets:
  a: {prompt: x, matrix: {quality: [low, high]}}
  b: {prompt: y, variants: {rough: {quality: low}, final: {quality: high}}}
  c: {prompt: w}
  g: {prompt: z, backend: gemini, model: gemini-3.1-flash-image}
"""


def test_a_matrix_axis_a_variant_or_a_profile_sets_the_quality(run, make_project):
    root = make_project(QUALITIES)
    costs = {}
    for profile in (None, "hero"):
        args = ["-C", str(root), "plan", "--json", *(["--profile", profile] if profile else [])]
        result = run(*args)
        assert result.code == 0, result.err
        frames = json.loads(result.out)["frames"]
        costs[profile] = {f["frame"]: f["cost_usd"] for f in frames}
    assert costs[None] == {"a/low": 0.009, "a/high": 0.133, "b/rough": 0.009,
                           "b/final": 0.133, "c": 0.034, "g": 0.067}
    # the profile fills in what targets leave unset; the Gemini target takes no quality
    assert (costs["hero"]["c"], costs["hero"]["a/low"], costs["hero"]["g"]) == \
        (0.133, 0.009, 0.067)


def test_the_catalogue_refuses_a_size_rule_that_leaves_a_ratio_without_a_size():
    from pydantic import ValidationError

    from nbpipe.catalog import ModelEntry, data_text

    entry = json.loads(data_text())["backends"]["openai"]["models"]["gpt-image-2"]
    ModelEntry.model_validate(entry)
    with pytest.raises(ValidationError, match="free_size must make a size of every"):
        ModelEntry.model_validate({**entry, "aspect_ratios": [*entry["aspect_ratios"], "4:1"]})
    with pytest.raises(ValidationError, match="prices must name exactly each quality/size"):
        ModelEntry.model_validate({**entry, "prices": {"low/1K": 0.006}})
