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


# Golden keys: literal values, so an accidental change to canonical JSON, to how params or
# inputs enter the key, or to how a JSON prompt is serialised shows up as a failing test (and a
# deliberate one comes with a KEY_SCHEMA bump). They equal the keys nbpipe 0.1.0 computed.
JSON_PROMPT = '{"subject": {"type": "product", "color": "rot"}, "camera": {"lens": "85mm f/2.0"}}'
TINY_PNG_SHA = "c414cd0e204de974f73753c7e28d7638e7b3691bb8b1a2bab6b25bb7fed7ce77"
GOLDEN = [
    (Request("hiapi", "Nano-Banana", "a red shoe on a white table — café",
             {"aspect_ratio": "1:1", "output_format": "png"}),
     "889d9602d544a03105792318dc221a4dd4731f06e36ff824ffd26de452b467ca"),
    (Request("preview", "Nano-Banana", JSON_PROMPT, {"aspect_ratio": "3:2", "output_format": "png"}),
     "81bdc627ddbd457cb50c3d2425bb071f66892e7d0528f8e37d71fcd9e0b1de72"),
    (Request("gemini", "gemini-3-pro-image-preview", "a lake at dawn",
             {"aspect_ratio": "16:9", "resolution": "2K"}),
     "d963eccf1739eae441633107e3ebaa0597be0670e04680614aa7663ba88c95af"),
    (Request("gemini", "gemini-3.1-flash-image-preview", "golden hour", {"resolution": "1K"},
             (TINY_PNG_SHA, "0" * 64)),
     "0298efd5a2d4fdf710cb1115dbb49cccfe98cf14939cdf74bb4ba7a19586d431"),
    (Request("hiapi", "Nano-Banana-Pro", "same face", {"resolution": "4K", "output_format": "jpg"},
             ("bceefe6f1a4a442a2e1a9a39d13de32924a5bde18fad1e631f4b266c8af31c7a",)),
     "f308a6e48980dd1653a5fe53d2cba39a708afaf9bc9f5224d2d2d0e8803fbd16"),
]


@pytest.mark.parametrize("request_, key", GOLDEN, ids=["text", "json", "params", "inputs", "url"])
def test_golden_keys(request_, key):
    assert frame_key(request_) == key
    assert request_.key == key


def test_golden_key_inputs_json_prompt_and_url_digest():
    from nbpipe.manifest.templates import Template, prompt_text
    from nbpipe.plan.frame import url_digest

    assert hashlib.sha256(tiny_png()).hexdigest() == TINY_PNG_SHA
    assert url_digest("https://example.com/face.png") == GOLDEN[4][0].inputs[0]
    template = Template({"subject": {"type": "product", "color": "{{ c }}"},
                         "camera": {"lens": "85mm f/2.0"}})
    assert prompt_text(template.render({"c": "rot"})) == JSON_PROMPT


def test_an_unknown_input_digest_means_no_key_yet():
    assert frame_key(Request("preview", "Nano-Banana-2", "edit", {}, (None,))) is None


KEYS_OF_EXAMPLES = """\
import json, sys
from pathlib import Path
from nbpipe.plan.planner import open_project
keys = {}
for root in sorted(Path(sys.argv[1]).iterdir()):
    if (root / "nbpipe.yaml").is_file():
        project = open_project(root)
        keys[root.name] = {name: frame.key for name, frame in project.frames.items()}
print(json.dumps(keys, sort_keys=True))
"""


def test_keys_of_every_example_project_do_not_depend_on_the_hash_seed():
    import os
    import subprocess
    import sys

    from tests.conftest import EXAMPLES_DIR as PROJECTS
    from tests.conftest import REPO

    outputs = []
    for seed in ("1", "2024"):
        env = {**os.environ, "PYTHONHASHSEED": seed,
               "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
        done = subprocess.run([sys.executable, "-c", KEYS_OF_EXAMPLES, str(PROJECTS)], env=env,
                              capture_output=True, text=True, timeout=120, check=True)
        outputs.append(json.loads(done.stdout))
    assert outputs[0] == outputs[1]
    assert len(outputs[0]) == 4 and all(outputs[0].values())
