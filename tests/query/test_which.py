"""`nbpipe which FILE`: what made an image, found by its bytes, the file only read."""

from __future__ import annotations

import json
import os
import re
import shutil

import pytest

MANIFEST = """\
version: 1
defaults: {backend: hiapi, model: Nano-Banana, aspect_ratio: "1:1", output: "out/{frame}.{ext}"}
targets:
  hero: {prompt: a red kite over a beach}
  other: {prompt: a blue kite over a field}
"""


@pytest.fixture
def built(make_project, fake_hiapi, run):
    root = make_project(MANIFEST)
    assert run("-C", str(root), "build").code == 0
    assert run("-C", str(root), "build", "--force", "hero").code == 0  # a second take of hero
    return root


def test_a_copy_anywhere_says_frame_take_key_model_prompt_date_and_cost(built, run, tmp_path):
    copy = tmp_path / "elsewhere" / "kite.png"
    copy.parent.mkdir()
    shutil.copyfile(built / "out" / "hero.png", copy)
    before = (copy.read_bytes(), os.stat(copy).st_mtime_ns)
    lock = json.loads((built / "nbpipe.lock").read_text())["frames"]["hero"]
    result = run("-C", str(built), "which", str(copy))
    assert result.code == 0, result.err
    text = re.sub(r"built    \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", "built    <when> UTC",
                  result.out)
    text = re.sub(r"task     \S+", "task     <id>", text)
    assert text == f"""\
{copy} (sha256:{lock['digest'][:12]})
  frame    hero
  take     2
  key      {lock['key']}
  backend  hiapi
  model    Nano-Banana
  lane     standard
  built    <when> UTC
  cost     USD 0.05
  task     <id>
  prompt   a red kite over a beach
"""
    doc = json.loads(run("-C", str(built), "which", str(copy), "--json").out)
    assert doc["sha256"] == lock["digest"]
    (found,) = doc["takes"]
    assert {k: found[k] for k in ("frame", "take", "key", "backend", "model", "lane", "prompt",
                                  "cost_usd")} == {
        "frame": "hero", "take": 2, "key": lock["key"], "backend": "hiapi",
        "model": "Nano-Banana", "lane": "standard", "prompt": "a red kite over a beach",
        "cost_usd": 0.05}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", found["built"])
    assert (copy.read_bytes(), os.stat(copy).st_mtime_ns) == before  # never written


def test_an_unknown_file_says_so_and_exits_1(built, run, tmp_path):
    stranger = tmp_path / "stranger.png"
    stranger.write_bytes(b"\x89PNG\r\n\x1a\nnot ours")
    result = run("-C", str(built), "which", str(stranger))
    assert result.code == 1
    assert result.out.startswith(f"{stranger} (sha256:")
    assert "not an image this cache holds" in result.out
    doc = json.loads(run("-C", str(built), "which", str(stranger), "--json").out)
    assert doc["takes"] == []
