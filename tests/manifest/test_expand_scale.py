"""Expanding a matrix: what a frame costs must not grow with what frames repeat."""

from __future__ import annotations

from nbpipe.manifest import expand
from nbpipe.plan.planner import open_project

MATRIX = """\
version: 1
defaults: {backend: preview}
targets:
  tile:
    prompt: "tile {{ a }} {{ b }}"
    matrix: {a: [a 0, a1, a2, a3, a4], b: [b0, b1, "b:2", b3, b4, b5, b6, b7]}
"""


def test_a_matrix_value_is_made_a_name_part_once(make_project, monkeypatch):
    calls: list[object] = []
    original = expand.name_part
    monkeypatch.setattr(expand, "name_part", lambda value: calls.append(value) or
                        original(value))
    frames = open_project(make_project(MATRIX)).frames
    assert len(frames) == 40 and "tile/a-0-b-2" in frames
    assert frames["tile/a-0-b-2"].vars == {"a": "a 0", "b": "b:2"}
    assert sorted(map(str, calls)) == sorted(["a 0", "a1", "a2", "a3", "a4", "b0", "b1", "b:2",
                                              "b3", "b4", "b5", "b6", "b7"])
