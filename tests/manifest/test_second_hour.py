"""Issue #23's manifest items: what a user hits once the first manifest works (patch typos,
inherited tiers, matrix × variants, edits fanned over a matrix, case-only output collisions)."""

from __future__ import annotations

import json

PATCHES = """\
version: 1
defaults: {backend: preview}
templates:
  packshot:
    subject: {name: shoe}
    environment: {background: white seamless}
targets:
  shoe:
    template: packshot
    variants:
      trail:
        patch:
          environment: {background: forest trail, +weather: mist}
          +lighting: dusk
"""


def _prompt(run, root, frame):
    shown = run("-C", str(root), "show", frame, "--json")
    assert shown.code == 0, shown.err
    return json.loads(json.loads(shown.out)["request"]["prompt"])


def test_a_plus_marks_a_patch_key_as_new_on_purpose_and_is_not_sent(make_project, run):
    root = make_project(PATCHES)
    assert _prompt(run, root, "shoe/trail") == {
        "subject": {"name": "shoe"},
        "environment": {"background": "forest trail", "weather": "mist"},
        "lighting": "dusk"}


def test_a_new_patch_key_without_the_plus_is_an_error(make_project, run):
    root = make_project(PATCHES.replace("+lighting", "lighting"))
    result = run("validate", cwd=root)
    assert result.code == 2
    assert "variant 'trail' patches 'lighting', which template 'packshot' does not have" \
        in result.err
    assert "write '+lighting'" in result.err


TIERS = """\
version: 1
defaults: {backend: hiapi, model: Nano-Banana-Pro, resolution: 2K}
targets:
  hero: {prompt: a hero shot}
  thumb: {prompt: a thumbnail, model: Nano-Banana}
  plain: {prompt: a plain shot, resolution: null}
"""


def test_a_default_resolution_follows_the_model_and_null_unsets_it(make_project, run):
    root = make_project(TIERS)
    shown = {name: json.loads(run("-C", str(root), "show", name, "--json").out)
             for name in ("hero", "thumb", "plain")}
    assert shown["hero"]["params"]["resolution"] == "2K"
    assert "resolution" not in shown["thumb"]["params"]  # Nano-Banana has no tiers
    assert shown["plain"]["params"]["resolution"] == "1K"  # the model's own default tier


def test_an_explicit_resolution_on_a_model_without_tiers_is_still_an_error(make_project, run):
    root = make_project(TIERS.replace("model: Nano-Banana}", "model: Nano-Banana, "
                                      "resolution: 2K}"))
    result = run("validate", cwd=root)
    assert result.code == 2
    assert result.err.startswith("nbpipe.yaml:5:64: error: a resolution is not taken by model "
                                 "'Nano-Banana'"), result.err


CROSS = """\
version: 1
defaults: {backend: preview}
templates:
  packshot:
    subject: {name: shoe, color: "{{ color }}"}
    environment: {background: white seamless}
targets:
  shoe:
    template: packshot
    output: "out/{target}/{variant}-{color}.{ext}"
    matrix: {color: [red, glacier blue]}
    variants:
      studio: {}
      trail:
        patch: {environment: {background: "forest trail, {{ color }} accents"}}
        aspect_ratio: "9:16"
"""


def test_a_matrix_with_variants_makes_their_cross_product(make_project, run):
    root = make_project(CROSS)
    listed = json.loads(run("-C", str(root), "plan", "--json").out)
    assert [(s["frame"], s["output"]) for s in listed["frames"]] == [
        ("shoe/red/studio", "out/shoe/red/studio-red.png"),
        ("shoe/red/trail", "out/shoe/red/trail-red.png"),
        ("shoe/glacier-blue/studio", "out/shoe/glacier-blue/studio-glacier-blue.png"),
        ("shoe/glacier-blue/trail", "out/shoe/glacier-blue/trail-glacier-blue.png")]
    shown = json.loads(run("-C", str(root), "show", "shoe/glacier-blue/trail", "--json").out)
    assert shown["params"]["aspect_ratio"] == "9:16"
    assert json.loads(shown["request"]["prompt"])["environment"] == {
        "background": "forest trail, glacier blue accents"}


def test_max_frames_counts_the_cross_product(make_project, run):
    root = make_project(CROSS + "max_frames: 3\n")
    result = run("validate", cwd=root)
    assert result.code == 2
    assert "the manifest expands to 4 frames, more than max_frames (3)" in result.err


FANNED = """\
version: 1
defaults: {backend: preview}
targets:
  master:
    prompt: "a {{ color }} running shoe on white"
    matrix: {color: [red, glacier blue]}
  retouch:
    inputs: ["master/{{ color }}"]
    prompt: "remove the dust from the {{ color }} shoe"
    model: Nano-Banana-2
    matrix: {color: [red, glacier blue]}
    variants:
      clean: {}
      crop:
        inputs: ["retouch/{{ color }}/clean"]
"""


def test_an_edit_fans_out_over_a_matrix_and_a_variant_sets_its_inputs(make_project, run, build):
    root = make_project(FANNED)
    plan = json.loads(run("-C", str(root), "plan", "--json").out)
    waits = {s["frame"]: s["reason"] for s in plan["frames"] if s["action"] == "blocked"}
    assert waits == {
        "retouch/red/clean": "waits on master/red",
        "retouch/red/crop": "waits on retouch/red/clean",
        "retouch/glacier-blue/clean": "waits on master/glacier-blue",  # the value, slugged
        "retouch/glacier-blue/crop": "waits on retouch/glacier-blue/clean"}
    summary = build(root)
    assert summary["code"] == 0, summary["err"]
    lock = json.loads((root / "nbpipe.lock").read_text())["frames"]
    assert len(lock) == 6
    shown = json.loads(run("-C", str(root), "show", "retouch/glacier-blue/clean", "--json").out)
    assert [i["ref"] for i in shown["inputs"]] == ["master/glacier-blue"]


def test_a_fanned_input_naming_no_frame_says_frame_not_file(make_project, run):
    root = make_project(FANNED.replace('"master/{{ color }}"', '"master/{{ color }}-2"'))
    result = run("validate", cwd=root)
    assert result.code == 2
    assert "target 'master' has no frame 'master/red-2'" in result.err
    assert "hint: did you mean 'master/red'?" in result.err
    assert "file" not in result.err


def test_an_error_in_an_upstream_matrix_target_does_not_cascade(make_project, run):
    root = make_project(FANNED.replace("a {{ color }} running", "a {{ colour }} running"))
    result = run("validate", cwd=root)
    assert result.code == 2
    assert result.err.count("error:") == 1, result.err
    assert "undefined variable 'colour'" in result.err


def test_an_output_pattern_may_name_the_request_settings_as_sent(make_project, run):
    root = make_project("""\
version: 1
defaults: {backend: preview, model: Nano-Banana-2, output: "out/{aspect_ratio}/{resolution}/{frame}.{ext}"}
targets:
  banner:
    prompt: a banner
    matrix: {aspect_ratio: ["1:1", "9:16"]}
""")
    listed = json.loads(run("-C", str(root), "plan", "--json").out)
    assert [s["output"] for s in listed["frames"]] == [
        "out/1-1/1K/banner/1-1.png", "out/9-16/1K/banner/9-16.png"]


def test_bible_references_a_model_cannot_take_are_a_warning_said_once(make_project, run):
    root = make_project("""\
version: 1
defaults: {backend: hiapi, model: Nano-Banana}
bibles:
  mira:
    text: Mira, a field engineer
    references: [https://example.com/mira.png]
targets:
  hero: {prompt: "{{ bible }} at work", bible: mira}
  side: {prompt: "{{ bible }} at rest", bible: mira}
""")
    result = run("validate", cwd=root)
    assert result.code == 0, result.err
    assert result.err == """\
nbpipe.yaml:6:17: warning: the references of bible 'mira' are not sent to Nano-Banana, which \
takes no input images
    6 |     references: [https://example.com/mira.png]
      |                 ^
hint: identity rests on the text alone there; Nano-Banana-2 or Nano-Banana-Pro would send them
"""


def test_null_unsets_what_a_parent_set(make_project, run):
    root = make_project("""\
version: 1
defaults: {backend: preview}
templates:
  scene: "Scene: {{ scene }}"
targets:
  base: {template: scene, vars: {scene: a workshop}, matrix: {light: [dawn, dusk]}}
  one: {extends: base, template: null, matrix: null, prompt: "one shot"}
""")
    listed = json.loads(run("-C", str(root), "plan", "--json").out)
    assert [s["frame"] for s in listed["frames"]] == ["base/dawn", "base/dusk", "one"]
