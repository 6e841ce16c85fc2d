"""Warnings on manifests that are valid but almost surely not what was meant."""

from __future__ import annotations

import json


def _nulls(node) -> list:
    if isinstance(node, dict):
        return [n for v in node.values() for n in _nulls(v)]
    if isinstance(node, list):
        return [n for v in node for n in _nulls(v)]
    return [node] if node is None else []


def test_the_starter_sends_no_null_and_validates_without_warnings(tmp_path, run):
    root = tmp_path / "new"
    assert run("-C", str(root), "init").code == 0
    result = run("-C", str(root), "validate")
    assert (result.code, result.err) == (0, "")
    for frame in json.loads(run("-C", str(root), "plan", "--json").out)["frames"]:
        shown = json.loads(run("-C", str(root), "show", frame["frame"], "--json").out)
        assert _nulls(shown["request"]) == [], frame["frame"]


def test_a_null_leaf_in_a_json_prompt_is_a_located_warning(make_project, run):
    root = make_project("""\
version: 1
templates:
  product:
    environment: {background: light oak table, soft window light}
targets:
  mug: {template: product}
  cup:
    prompt: {subject: cup, camera: }
""")
    result = run("validate", cwd=root)
    assert result.code == 0
    assert result.err == """\
nbpipe.yaml:4:48: warning: 'environment.soft window light' is null in the JSON prompt of \
template 'product': it will be sent as null
    4 |     environment: {background: light oak table, soft window light}
      |                                                ^
hint: a comma inside {...} starts a new key: quote a value that holds a comma, or write \
`soft window light: VALUE`
nbpipe.yaml:8:28: warning: 'camera' is null in the JSON prompt of target 'cup': it will be \
sent as null
    8 |     prompt: {subject: cup, camera: }
      |                            ^
hint: a comma inside {...} starts a new key: quote a value that holds a comma, or write \
`camera: VALUE`
"""


def test_jinja_in_a_var_or_matrix_value_is_a_located_warning(make_project, run):
    """Only templates are rendered: `{{ weather }}` in a var reaches the paid API as written."""
    root = make_project("""\
version: 1
templates:
  scene: "Scene: {{ scene }}"
targets:
  a:
    template: scene
    vars: {scene: "{{ weather }} street", weather: rain}
  b:
    template: scene
    matrix: {scene: [dawn, "{% if x %}dusk{% endif %}"]}
  c:
    template: scene
    variants: {wet: {vars: {scene: "{{ weather }}"}}}
""")
    result = run("validate", cwd=root)
    assert result.code == 0
    warnings = [line for line in result.err.splitlines() if ": warning: " in line]
    said = "holds Jinja, which is sent as written: values are not rendered"
    matrix = "the matrix value of 'scene' in target 'b'"
    assert warnings == [f"nbpipe.yaml:7:19: warning: the var 'scene' in target 'a' {said}",
                        f"nbpipe.yaml:10:28: warning: {matrix} {said}",
                        f"nbpipe.yaml:13:36: warning: the var 'scene' in target 'c' {said}"]
    assert result.err.count("hint: put the expression in the template, where it is rendered") == 3
