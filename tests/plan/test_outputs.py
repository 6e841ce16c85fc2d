"""Output paths at scale: what each frame's path costs must not grow with what it repeats."""

from __future__ import annotations

from nbpipe.plan import outputs
from nbpipe.plan.planner import open_project

MATRIX = """\
version: 1
defaults: {backend: preview, aspect_ratio: "9:16", resolution: "1K"}
targets:
  tile:
    prompt: "tile {{ a }} {{ b }}"
    output: "out/{aspect_ratio}/{resolution}/{model}/{a}-{b}.{ext}"
    matrix: {a: [a0, a1, a2, a3, a4], b: [b0, b1, b2, b3, b4, b5, b6, b7]}
"""


def test_a_setting_is_made_a_path_part_once_per_value(make_project, monkeypatch):
    calls: list[str] = []
    original = outputs.name_part
    monkeypatch.setattr(outputs, "name_part", lambda value: calls.append(value) or
                        original(value))
    project = open_project(make_project(MATRIX))
    assert project.frames["tile/a1-b2"].output.startswith("out/9-16/1K/")
    assert len(project.frames) == 40 and len(calls) == len(set(calls)) <= 4
