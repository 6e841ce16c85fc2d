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
