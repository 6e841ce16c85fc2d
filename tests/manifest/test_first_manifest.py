"""What a new user's first manifest does: variant patches, matrix names, per-axis params."""

from __future__ import annotations

import json

PATCHED = """\
version: 1
defaults: {backend: preview}
templates:
  product:
    subject: {name: mug, color: "{{ color }}"}
    environment: {weather: clear}
targets:
  mug:
    template: product
    vars: {color: red, weather: rain}
    variants:
      wet: {patch: {environment: {weather: "{{ weather }}", +note: "{{ color | upper }}"}}}
      plain: {patch: {environment: null}}
"""


def test_jinja_in_a_variant_patch_is_rendered_like_any_leaf(make_project, run):
    root = make_project(PATCHED)
    shown = json.loads(run("-C", str(root), "show", "mug/wet", "--json").out)
    prompt = json.loads(shown["request"]["prompt"])
    assert prompt == {"subject": {"name": "mug", "color": "red"},
                      "environment": {"weather": "rain", "note": "RED"}}
    plain = json.loads(run("-C", str(root), "show", "mug/plain", "--json").out)
    assert json.loads(plain["request"]["prompt"]) == {"subject": {"name": "mug", "color": "red"}}


def test_an_undefined_variable_in_a_patch_is_located_in_the_patch(make_project, run):
    root = make_project(PATCHED.replace("{{ weather }}", "{{ wether }}"))
    result = run("validate", cwd=root)
    assert result.code == 2
    assert result.err == """\
nbpipe.yaml:12:44: error: undefined variable 'wether' in the patch of variant 'wet' (frame \
'mug/wet')
   12 |       wet: {patch: {environment: {weather: "{{ wether }}", +note: "{{ color | upper }}"}}}
      |                                            ^
hint: did you mean 'weather'?
1 error
"""


def test_matrix_values_with_spaces_are_slugged_in_names_and_paths(make_project, build):
    root = make_project("""\
version: 1
defaults: {backend: preview, output: "out/{time}/{frame}.{ext}"}
targets:
  stairs:
    prompt: "Mira on the stairs at {{ time }}, {{ n }}"
    matrix: {time: [golden hour, "dawn/dusk", "9:16 crop"], n: [1]}
""")
    summary = build(root)
    assert summary["code"] == 0, summary["err"]
    lock = json.loads((root / "nbpipe.lock").read_text())["frames"]
    assert {name: entry["output"] for name, entry in lock.items()} == {
        "stairs/golden-hour-1": "out/golden-hour/stairs/golden-hour-1.png",
        "stairs/dawn-dusk-1": "out/dawn-dusk/stairs/dawn-dusk-1.png",
        "stairs/9-16-crop-1": "out/9-16-crop/stairs/9-16-crop-1.png"}
    assert all((root / e["output"]).is_file() for e in lock.values())


def test_the_prompt_keeps_the_matrix_value_itself(make_project, run):
    root = make_project("""\
version: 1
defaults: {backend: preview}
targets:
  stairs: {prompt: "at {{ time }}", matrix: {time: [golden hour]}}
""")
    shown = json.loads(run("-C", str(root), "show", "stairs/golden-hour", "--json").out)
    assert shown["request"]["prompt"] == "at golden hour"


CHANNELS = """\
version: 1
defaults: {backend: hiapi, model: Nano-Banana-2, resolution: 2K}
targets:
  banner:
    prompt: "a red running shoe, {{ aspect_ratio }} crop"
    matrix: {aspect_ratio: ["1:1", "9:16", "21:9"]}
  hero:
    prompt: "a red running shoe on a plinth"
    aspect_ratio: "1:1"
    variants:
      page: {}
      story: {aspect_ratio: "9:16", resolution: 1K}
      pro: {model: Nano-Banana-Pro, resolution: 4K}
"""


def test_a_matrix_axis_or_a_variant_sets_aspect_ratio_resolution_and_model(make_project, run):
    root = make_project(CHANNELS)
    doc = json.loads(run("-C", str(root), "plan", "--json").out)
    got = {}
    for frame in doc["frames"]:
        body = json.loads(run("-C", str(root), "show", frame["frame"], "--json").out)["request"]
        got[frame["frame"]] = (body["model"], body["input"]["aspect_ratio"],
                               body["input"]["resolution"], frame["cost_usd"])
    assert got == {
        "banner/1-1": ("Nano-Banana-2", "1:1", "2K", 0.076),
        "banner/9-16": ("Nano-Banana-2", "9:16", "2K", 0.076),
        "banner/21-9": ("Nano-Banana-2", "21:9", "2K", 0.076),
        "hero/page": ("Nano-Banana-2", "1:1", "2K", 0.076),
        "hero/story": ("Nano-Banana-2", "9:16", "1K", 0.085),
        "hero/pro": ("Nano-Banana-Pro", "1:1", "4K", 0.3)}
    prompt = json.loads(run("-C", str(root), "show", "banner/9-16", "--json").out)
    assert prompt["request"]["input"]["prompt"] == "a red running shoe, 9:16 crop"


def test_per_frame_settings_are_checked_against_each_model(make_project, run):
    root = make_project(CHANNELS.replace('"21:9"]', '"5:1"]').replace(
        'story: {aspect_ratio: "9:16", resolution: 1K}',
        'story: {aspect_ratio: "9:16", model: Nano-Banana, resolution: 1K}'))
    result = run("validate", cwd=root)
    assert result.code == 2
    assert result.err == """\
nbpipe.yaml:6:44: error: aspect ratio '5:1' is not taken by model 'Nano-Banana-2'
    6 |     matrix: {aspect_ratio: ["1:1", "9:16", "5:1"]}
      |                                            ^
hint: Nano-Banana-2 takes auto, 1:1, 16:9, 9:16, 3:4, 4:3, 3:2, 2:3, 5:4, 4:5, 21:9, 1:4, 4:1, \
1:8, 8:1
nbpipe.yaml:12:69: error: a resolution is not taken by model 'Nano-Banana' (sending one is a 400)
   12 |       story: {aspect_ratio: "9:16", model: Nano-Banana, resolution: 1K}
      |                                                                     ^
hint: remove `resolution`, or pick a model with resolution tiers
2 errors
"""


def test_an_empty_var_is_an_error_not_the_word_none_in_a_paid_prompt(make_project, run):
    """`scene:` with nothing after it is YAML's null; str(None) would send "Scene: None"."""
    root = make_project("""\
version: 1
defaults: {backend: preview}
templates:
  scene: "Scene: {{ scene }}"
  product:
    subject: {name: "{{ name }}"}
targets:
  a:
    template: scene
    vars:
      scene:
  b:
    template: product
    vars: {name: }
  c:
    prompt: "{{ 'x' if nothing else 'y' }} {{ nothing or 'z' }}"
    vars: {nothing: }
""")
    result = run("validate", cwd=root)
    assert result.code == 2, result.out
    assert "Traceback" not in result.err
    assert result.err.count("error:") == 2, result.err
    assert "nbpipe.yaml:4:10: error: template 'scene' of frame 'a': variable 'scene' is null" \
        in result.err
    assert "nbpipe.yaml:6:21: error: template 'product' of frame 'b': variable 'name' is null" \
        in result.err
    assert 'hint: give `scene` a value (YAML reads an empty value as null; "" is empty text)' \
        in result.err
