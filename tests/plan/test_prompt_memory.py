"""Frames that share a bible share one copy of its text (issue #22 item 9): memory grows with the
frames, not with frames × prompt length, and the prompt sent and the key are unchanged."""

from __future__ import annotations

import json
import sys

from nbpipe.manifest.templates import Template, prompt_text
from nbpipe.plan.frame import Request
from nbpipe.plan.planner import open_project
from nbpipe.plan.prompts import SharedText

BIBLE = " ".join(f"word{i} \"quoted\"\nline" for i in range(2_000))  # ~34,000 characters


def _project(tmp_path, templates: str):
    (tmp_path / "nbpipe.yaml").write_text(
        "version: 1\ndefaults: {backend: gemini, model: gemini-3-pro-image}\n"
        f"bibles:\n  mira: {json.dumps(BIBLE)}\n{templates}"
        "targets:\n  s:\n    template: t\n    bible: mira\n"
        "    matrix: {a: [a0, a1, a2, a3, a4, a5, a6, a7], b: [b0, b1, b2, b3, b4]}\n")
    return open_project(tmp_path)


def _distinct_bytes(frames) -> int:
    """The bytes of every distinct prompt part all frames hold (shared parts counted once)."""
    parts = {id(part): part for frame in frames for part in frame.parts}
    return sum(sys.getsizeof(part) for part in parts.values())


def test_forty_frames_of_one_bible_hold_one_copy_of_it(tmp_path):
    project = _project(tmp_path, "templates:\n  t: '{{ bible }} | Scene: {{ a }} {{ b }}'\n")
    frames = list(project.frames.values())
    assert len(frames) == 40
    held = _distinct_bytes(frames)
    assert held < 1.5 * sys.getsizeof(BIBLE), f"{held:,} bytes for a {len(BIBLE):,}-char bible"
    bibles = {id(part) for frame in frames for part in frame.parts if len(part) > 1000}
    assert len(bibles) == 1
    for frame in frames:  # the text sent and its key are exactly as before
        a, b = frame.name.split("/")[1].split("-")
        text = f"{BIBLE} | Scene: {a} {b}"
        assert frame.prompt == text
        assert frame.key == Request(frame.backend, frame.model, text, frame.params).key


def test_a_json_prompt_shares_its_bible_too(tmp_path):
    source = {"who": "{{ bible }}", "scene": "{{ a }} {{ b }}"}
    project = _project(tmp_path, f"templates:\n  t: {json.dumps(source)}\n")
    frames = list(project.frames.values())
    assert _distinct_bytes(frames) < 1.5 * sys.getsizeof(json.dumps(BIBLE))
    frame = project.frames["s/a3-b4"]
    text = prompt_text(Template(source).render({"bible": BIBLE, "a": "a3", "b": "b4"}))
    assert frame.prompt == text and frame.prompt_json == {"who": BIBLE, "scene": "a3 b4"}
    assert frame.key == Request(frame.backend, frame.model, text, frame.params).key
    assert frame.record()["prompt_json"] == frame.prompt_json


def test_split_joins_back_to_the_prompt_and_finds_every_repeat():
    shared = SharedText(["x" * 300, "inner" * 100, "short"])
    prompt = "head " + "x" * 300 + " mid " + "inner" * 100 + " and " + "x" * 300
    parts = shared.split(prompt)
    assert "".join(parts) == prompt
    assert [len(p) for p in parts] == [5, 300, 5, 500, 5, 300]
    assert parts[1] is parts[5] is shared.pieces[1]
    assert shared.split("") == () and shared.split("short text") == ("short text",)
