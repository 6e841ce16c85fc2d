"""Graph output (exact text) and ordering."""

from __future__ import annotations

from nbpipe.plan.graph import build_order, closure, dependants, find_cycle
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
defaults: {backend: gemini, model: gemini-3.1-flash-image}
targets:
  shot: {prompt: 'a "quoted" shot', inputs: [refs/face.png]}
""", {"refs/face.png": tiny_png()})
    assert run("-C", str(root), "graph", "--format", "dot").out == """\
digraph nbpipe {
  rankdir=LR;
  n0 [label="shot\\ngemini-3.1-flash-image", shape=box];
  n1 [label="refs/face.png", shape=note];
  n1 -> n0;
}
"""


def test_build_order_is_stable_and_respects_dependencies():
    deps = {"c": ("a",), "a": (), "b": (), "d": ("c", "b")}
    assert build_order(deps) == ["a", "c", "b", "d"]
    assert closure(deps, ["d"]) == {"a", "b", "c", "d"}
    assert dependants(deps, ["a"]) == {"c", "d"} and dependants(deps, ["d", "x"]) == set()
    assert find_cycle([("a", "b"), ("b", "a")]) == ["a", "b", "a"]
    assert find_cycle([("a", "b")]) is None


URLS = """\
version: 1
defaults: {backend: hiapi, model: Nano-Banana-2}
bibles:
  mira: {text: Mira, references: ["https://example.com/mira.png"]}
targets:
  a: {prompt: "{{ bible }} walks", bible: mira, inputs: ["https://example.com/street.png"]}
"""


def test_url_inputs_are_drawn_as_their_own_nodes(make_project, run):
    result = run("-C", str(make_project(URLS)), "graph")
    assert result.out == """\
flowchart LR
  n0["a<br/>Nano-Banana-2"]
  n1[("https://example.com/street.png")]
  n1 --> n0
  n2[("https://example.com/mira.png")]
  n2 --> n0
"""


def test_show_prints_the_url_sent_and_labels_its_hash(make_project, run):
    import json

    root = make_project(URLS)
    lines = run("-C", str(root), "show", "a").out.splitlines()
    assert lines[5:7] == [
        "input    url https://example.com/street.png  (contents not tracked; the key hashes "
        "the URL: sha256:ab5658359b5c)",
        "reference url https://example.com/mira.png  (contents not tracked; the key hashes "
        "the URL: sha256:d70224bd3f48)"]
    doc = json.loads(run("-C", str(root), "show", "a", "--json").out)
    assert doc["request"]["input"]["image_input"] == ["https://example.com/street.png",
                                                      "https://example.com/mira.png"]
    assert [i["sha256_of"] for i in doc["inputs"]] == ["url", "url"]


def test_a_graph_without_edges_is_answered_without_networkx():
    """Most projects have no edit chain: their builds must not pay networkx's import (0.15 s)."""
    import subprocess
    import sys

    probe = ("import sys; from nbpipe.plan import graph; deps = {'b': (), 'a': (), 'c': ()}; "
             "print(graph.build_order(deps), sorted(graph.closure(deps, ['a'])), "
             "graph.dependants(deps, ['a']), graph.find_cycle([]), "
             "graph.components(deps, []), 'networkx' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=60, check=True)
    assert done.stdout.strip() == "['b', 'a', 'c'] ['a'] set() None [{'b'}, {'a'}, {'c'}] False"


def test_edge_free_answers_match_networkx_s():
    from nbpipe.plan import graph

    deps = {"b": (), "a": (), "c": ()}
    nx = graph._nx()
    g = nx.Graph()
    g.add_nodes_from(deps)
    assert graph.components(deps, []) == [set(c) for c in nx.connected_components(g)]
    assert graph.build_order(deps) == list(nx.lexicographical_topological_sort(
        g.to_directed(), key=list(deps).index))
