"""Graph output (exact text) and ordering."""

from __future__ import annotations

from nbpipe.plan.graph import build_order, closure, find_cycle
from tests.conftest import tiny_png


def test_mermaid_of_an_edit_chain_is_exact(run, example):
    result = run("-C", str(example("golden-hour-edit")), "graph")
    assert result.out == """\
flowchart LR
  n0["base<br/>Nano-Banana-2"]
  n1["golden-hour<br/>Nano-Banana-2"]
  n0 --> n1
  n2["evening-mist<br/>Nano-Banana-2"]
  n1 --> n2
"""


def test_dot_with_a_file_input(make_project, run):
    root = make_project("""\
version: 1
defaults: {backend: gemini, model: gemini-2.5-flash-image}
targets:
  shot: {prompt: 'a "quoted" shot', inputs: [refs/face.png]}
""", {"refs/face.png": tiny_png()})
    assert run("-C", str(root), "graph", "--format", "dot").out == """\
digraph nbpipe {
  rankdir=LR;
  n0 [label="shot\\ngemini-2.5-flash-image", shape=box];
  n1 [label="refs/face.png", shape=note];
  n1 -> n0;
}
"""


def test_build_order_is_stable_and_respects_dependencies():
    deps = {"c": ("a",), "a": (), "b": (), "d": ("c", "b")}
    assert build_order(deps) == ["a", "c", "b", "d"]
    assert closure(deps, ["d"]) == {"a", "b", "c", "d"}
    assert find_cycle([("a", "b"), ("b", "a")]) == ["a", "b", "a"]
    assert find_cycle([("a", "b")]) is None
