"""The frame key changes exactly when the image could: never for names, paths or credentials."""

from __future__ import annotations

import hashlib
import json

import pytest

from nbpipe.plan.frame import KEY_SCHEMA, Request, frame_key
from nbpipe.plan.planner import open_project
from tests.conftest import tiny_png

BASE = """\
version: 1
defaults: {backend: gemini, model: gemini-3-pro-image, aspect_ratio: "3:2"}
bibles:
  mira: "Mira, a field engineer."
templates:
  scene: "{{ bible }} | Scene: {{ scene }}"
targets:
  workshop:
    template: scene
    bible: mira
    vars: {scene: "a workshop"}
    inputs: [refs/face.png]
  rooftop:
    template: scene
    bible: mira
    vars: {scene: "a rooftop"}
"""


def keys(make_project, manifest: str, face: bytes | None = None, env: dict | None = None,
         monkeypatch=None) -> dict[str, str]:
    root = make_project(manifest, {"refs/face.png": face or tiny_png()})
    return {f.name: f.key for f in open_project(root).frames.values()}


def test_key_is_sha256_of_canonical_json():
    expected = hashlib.sha256(json.dumps(
        {"v": KEY_SCHEMA, "backend": "hiapi", "model": "Nano-Banana", "prompt": "a cat",
         "params": {"aspect_ratio": "1:1"}, "inputs": []},
        sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()).hexdigest()
    assert frame_key(Request("hiapi", "Nano-Banana", "a cat", {"aspect_ratio": "1:1"})) == expected


@pytest.mark.parametrize("edit", [
    ("workshop:", "workshop-renamed:"),                         # rename a target
    ("defaults: {", "defaults: {output: \"renders/{frame}.{ext}\", "),  # change output
])
def test_renames_and_outputs_do_not_change_keys(make_project, edit):
    before = keys(make_project, BASE)
    after = keys(make_project, BASE.replace(*edit))
    assert sorted(before.values()) == sorted(after.values())


def test_reordering_targets_does_not_change_keys(make_project):
    head, _, rest = BASE.partition("  workshop:\n")
    workshop, _, rooftop = rest.partition("  rooftop:\n")
    reordered = head + "  rooftop:\n" + rooftop + "  workshop:\n" + workshop
    assert keys(make_project, BASE) == keys(make_project, reordered)


def test_credentials_and_base_urls_do_not_change_keys(make_project, monkeypatch):
    before = keys(make_project, BASE)
    monkeypatch.setenv("GEMINI_API_KEY", "sk-other")
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", "http://127.0.0.1:9")
    assert keys(make_project, BASE) == before


@pytest.mark.parametrize("edit", [
    ('"a workshop"', '"a  workshop"'),                    # one byte of the prompt
    ("Mira, a field", "Mira, the field"),                 # the bible
    ('aspect_ratio: "3:2"', 'aspect_ratio: "16:9"'),      # a parameter
    ("model: gemini-3-pro-image", "model: gemini-3.1-flash-image"),
    ("backend: gemini", "backend: preview"),
    ("aspect_ratio: \"3:2\"}", "aspect_ratio: \"3:2\", resolution: 2K}"),
])
def test_request_changes_change_the_workshop_key(make_project, edit):
    assert BASE.count(edit[0]) >= 1
    before = keys(make_project, BASE)
    after = keys(make_project, BASE.replace(*edit))
    assert before["workshop"] != after["workshop"]


def test_input_file_bytes_change_the_key(make_project):
    before = keys(make_project, BASE)
    after = keys(make_project, BASE, face=tiny_png() + b"\0")
    assert before["workshop"] != after["workshop"]
    assert before["rooftop"] == after["rooftop"]


def test_edits_wait_for_their_upstream_and_are_keyed_on_its_bytes(make_project):
    root = make_project("""\
version: 1
defaults: {backend: hiapi, model: Nano-Banana-2}
targets:
  base: {prompt: a cabin}
  edit: {prompt: golden hour, inputs: [base]}
""")
    frames = open_project(root).frames
    assert frames["edit"].key is None
    one = frames["edit"].keyed({"base": "a" * 64}).key
    two = frames["edit"].keyed({"base": "b" * 64}).key
    assert one and two and one != two
    assert frames["edit"].keyed({"base": "a" * 64}).key == one
