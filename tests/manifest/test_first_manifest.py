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
      wet: {patch: {environment: {weather: "{{ weather }}", note: "{{ color | upper }}"}}}
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
   12 |       wet: {patch: {environment: {weather: "{{ wether }}", note: "{{ color | upper }}"}}}
      |                                            ^
hint: did you mean 'weather'?
1 error
"""
