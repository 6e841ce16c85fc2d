"""End-to-end: the real CLI on the example projects and on temp projects."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import EXAMPLES_DIR, REPO

EXAMPLES = ["mira-storyboard", "aria-lookbook", "sneaker-colorways", "golden-hour-edit"]
EXPECTED_COST = {"mira-storyboard": 0.37, "aria-lookbook": 0.15, "sneaker-colorways": 0.536,
                 "golden-hour-edit": 0.228}


def test_mira_plan_table_is_exact(run, example):
    result = run("-C", str(example("mira-storyboard")), "plan")
    assert result.code == 0, result.err
    assert result.out == """\
FRAME         ACTION  REASON     BACKEND  MODEL               COST
cover         render  new frame  hiapi    Nano-Banana         0.05
model-sheet   render  new frame  hiapi    Nano-Banana         0.05
workshop      render  new frame  hiapi    Nano-Banana         0.05
rooftop       render  new frame  hiapi    Nano-Banana         0.05
rooftop-hero  render  new frame  hiapi    Nano-Banana-Pro 1K  0.17
5 frames: 5 render · USD 0.37 to spend
prices: built-in table (the vendors' list prices, 2026)
"""


@pytest.mark.parametrize("project", EXAMPLES)
def test_example_plan_json(project, run, example):
    result = run("-C", str(example(project)), "plan", "--json")
    assert result.code == 0, result.err
    doc = json.loads(result.out)
    assert doc["summary"]["cost_usd"] == EXPECTED_COST[project]
    assert doc["summary"]["frames"] == len(doc["frames"])
    for frame in doc["frames"]:
        assert set(frame) == {"frame", "target", "action", "reason", "backend", "model",
                              "lane", "cost_usd", "key", "output"}
        assert frame["action"] in ("render", "blocked")
        assert (frame["key"] is None) == (frame["action"] == "blocked")


@pytest.mark.parametrize("project", EXAMPLES)
def test_example_show_every_frame(project, run, example):
    doc = json.loads(run("-C", str(example(project)), "plan", "--json").out)
    for frame in doc["frames"]:
        shown = json.loads(run("-C", str(example(project)), "show", frame["frame"],
                               "--json").out)
        assert shown["key"] == frame["key"]
        assert shown["request"]


def test_show_hiapi_body_is_exact(run, example):
    result = run("-C", str(example("golden-hour-edit")), "show", "golden-hour", "--json")
    doc = json.loads(result.out)
    assert doc["request"] == {"model": "Nano-Banana-2", "input": {
        "prompt": "Same scene; adjust the lighting to golden hour.", "aspect_ratio": "3:2",
        "resolution": "2K", "output_format": "png",
        "image_input": ["<https URL of frame 'base' (not rendered yet)>"]}}
    assert doc["key"] is None


def test_nano_banana_never_gets_resolution(run, example):
    doc = json.loads(run("-C", str(example("mira-storyboard")), "show", "cover", "--json").out)
    body = doc["request"]["input"]
    assert set(body) == {"prompt", "aspect_ratio", "output_format"}
    assert (body["aspect_ratio"], body["output_format"]) == ("16:9", "png")
    assert body["prompt"].startswith("Mira, a 28-year-old")
    assert " | Scene: Mira walking" in body["prompt"]


def test_matrix_and_variants_frames(run, example):
    doc = json.loads(run("-C", str(example("sneaker-colorways")), "plan", "--json").out)
    names = [f["frame"] for f in doc["frames"]]
    assert names == ["shoe/red", "shoe/blue", "shoe/green", "shoe/yellow",
                     "shoe-finish/matte", "shoe-finish/night"]
    shown = json.loads(run("-C", str(example("sneaker-colorways")), "show",
                           "shoe-finish/night", "--json").out)
    prompt = json.loads(shown["request"]["contents"][0]["parts"][0]["text"])
    assert prompt["subject"]["color"] == "black"
    assert prompt["environment"] == {"background": "dark studio"}
    assert list(prompt) == ["task", "subject", "style", "environment", "camera", "negative_prompt"]


def test_plan_globs_select_frames_and_their_upstreams(run, example):
    doc = json.loads(run("-C", str(example("sneaker-colorways")), "plan", "shoe/*",
                         "--json").out)
    assert [f["frame"] for f in doc["frames"]] == ["shoe/red", "shoe/blue", "shoe/green",
                                                   "shoe/yellow"]
    doc = json.loads(run("-C", str(example("golden-hour-edit")), "plan", "evening-mist",
                         "--json").out)
    assert [f["frame"] for f in doc["frames"]] == ["base", "golden-hour", "evening-mist"]


def test_unknown_frame_is_a_usage_error(run, example):
    result = run("-C", str(example("sneaker-colorways")), "plan", "shoe/purpel")
    assert result.code == 2
    assert result.err == (
        "error: no frame matches 'shoe/purpel'\n"
        "hint: frames of 'shoe': shoe/red, shoe/blue, shoe/green, shoe/yellow\n")
    result = run("-C", str(example("mira-storyboard")), "show", "workshp")
    assert result.code == 2
    assert result.err == "error: no frame named 'workshp'\nhint: did you mean 'workshop'?\n"


def test_backend_override_prices_at_zero(run, example):
    doc = json.loads(run("-C", str(example("mira-storyboard")), "plan", "--backend",
                         "preview", "--json").out)
    assert doc["summary"]["cost_usd"] == 0
    assert {f["backend"] for f in doc["frames"]} == {"preview"}


def test_pricing_override(make_project, run):
    root = make_project("""\
version: 1
defaults: {backend: hiapi}
pricing:
  hiapi:
    Nano-Banana: 0.04
    Nano-Banana-2: {2K: 0.07}
targets:
  a: {prompt: x}
  b: {prompt: y, model: Nano-Banana-2, resolution: 2K}
""")
    doc = json.loads(run("-C", str(root), "plan", "--json").out)
    assert [f["cost_usd"] for f in doc["frames"]] == [0.04, 0.07]


def test_validate_ok_and_manifest_path_label(make_project, run):
    root = make_project("version: 1\ntargets:\n  a: {prompt: x}\n")
    result = run("-C", str(root), "validate")
    assert (result.code, result.out) == (0, f"{root}/nbpipe.yaml: ok · 1 target, 1 frame\n")
    (root / "nbpipe.yaml").write_text("version: 1\ntargets:\n  a: {prompt: x, modle: y}\n")
    result = run("-C", str(root), "validate")
    assert result.code == 2
    assert result.err.startswith(f"{root}/nbpipe.yaml:3:18: error: unknown key 'modle'")


def test_init_creates_a_working_project(tmp_path, run):
    result = run("-C", str(tmp_path / "new"), "init")
    assert result.code == 0
    assert (tmp_path / "new" / ".gitignore").read_text() == ".nbpipe/\n"
    assert run("-C", str(tmp_path / "new"), "validate").code == 0
    again = run("-C", str(tmp_path / "new"), "init")
    assert again.code == 2 and "already exists" in again.err


def test_schema_file_is_current(run):
    result = run("schema")
    assert result.code == 0
    committed = (REPO / "schemas" / "nbpipe.schema.json").read_text("utf-8")
    assert result.out == committed, "run: nbpipe schema > schemas/nbpipe.schema.json"


@pytest.mark.parametrize("project", EXAMPLES)
def test_examples_match_the_schema_and_point_at_it(project):
    import jsonschema
    from ruamel.yaml import YAML

    text = (EXAMPLES_DIR / project / "nbpipe.yaml").read_text("utf-8")
    assert text.startswith("# yaml-language-server: $schema=../../schemas/nbpipe.schema.json\n")
    schema = json.loads((REPO / "schemas" / "nbpipe.schema.json").read_text("utf-8"))
    data = json.loads(json.dumps(YAML(typ="safe").load(text)))
    jsonschema.validate(data, schema)


def test_python_dash_m_and_exit_codes(tmp_path, example):
    ok = subprocess.run([sys.executable, "-m", "nbpipe", "-C", str(example("aria-lookbook")),
                         "validate"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run([sys.executable, "-m", "nbpipe", "-C", str(tmp_path), "plan"],
                         capture_output=True, text=True)
    assert bad.returncode == 2
    assert "Traceback" not in bad.stderr
    usage = subprocess.run([sys.executable, "-m", "nbpipe", "plan", "--nope"],
                           capture_output=True, text=True)
    assert usage.returncode == 2


def test_no_manifest_says_it_once(tmp_path, run):
    (tmp_path / "emptydir").mkdir()
    result = run("-C", "emptydir", "plan", cwd=tmp_path)
    assert (result.code, result.err) == (2, (
        "emptydir/nbpipe.yaml: error: no such file\n"
        "hint: run `nbpipe -C emptydir init` to start a project there\n1 error\n"))
    # The hint's command works as given: the project lands in emptydir, not in the cwd.
    made = run("-C", "emptydir", "init", cwd=tmp_path)
    assert made.out.endswith("; next: nbpipe -C emptydir plan\n")
    assert (tmp_path / "emptydir" / "nbpipe.yaml").is_file()
    assert not (tmp_path / "nbpipe.yaml").exists()
    here = run("plan", cwd=tmp_path)
    (tmp_path / "fresh").mkdir()
    assert run("init", cwd=tmp_path / "fresh").out.endswith("; next: nbpipe plan\n")
    assert here.err == ("nbpipe.yaml: error: no such file\nhint: run `nbpipe init` to start a "
                        "project here, or `nbpipe -C DIR` to use one elsewhere\n1 error\n")


def test_backend_flag_on_another_backends_model_blames_the_flag(make_project, run):
    root = make_project("version: 1\ndefaults: {backend: hiapi, model: Nano-Banana}\n"
                        "targets:\n  a: {prompt: x}\n")
    result = run("build", "--backend", "gemini", cwd=root)
    assert result.code == 2
    assert result.err.splitlines()[0] == (
        "nbpipe.yaml:2:35: error: --backend gemini: 'Nano-Banana' is a hiapi model, not a "
        "gemini one")
    assert result.err.splitlines()[-2].endswith(
        "drop --backend, or give a profile a gemini model and use --profile")


@pytest.mark.parametrize("amount", ["nan", "NaN", "inf", "-Infinity", "-1", "-0.01", "abc",
                                    "", "1,50", "0x10"])
def test_max_cost_must_be_a_finite_amount(amount, make_project, run):
    root = make_project("version: 1\ntargets: {a: {prompt: a lighthouse}}\n")
    result = run("-C", str(root), "build", "--backend", "preview", "--max-cost", amount)
    assert result.code == 2
    assert result.err.splitlines()[-1] == (
        f"Error: Invalid value for '--max-cost': {amount!r} is not an amount of US dollars; "
        "give 0 or more, like 2.50")
    assert not (root / "nbpipe.lock").exists()  # refused before anything ran


def test_max_cost_takes_decimals_and_a_dollar_sign(make_project, run):
    root = make_project("version: 1\ntargets: {a: {prompt: a lighthouse}}\n")
    for amount in ("2.50", "$0.10", "0", "1e3"):
        result = run("-C", str(root), "build", "--backend", "preview", "--force",
                     "--max-cost", amount)
        assert result.code == 0, (amount, result.err)


@pytest.mark.parametrize("command", [["build"], ["build", "--check"], ["plan"], ["gc"]])
def test_a_cache_dir_that_is_a_file_is_a_usage_error(command, make_project, run, monkeypatch,
                                                     tmp_path):
    root = make_project("version: 1\ndefaults: {backend: preview}\ntargets: {a: {prompt: x}}\n")
    assert run("-C", str(root), "build").code == 0  # a fresh project: the fast path is asked
    not_a_dir = tmp_path / "cache"
    not_a_dir.write_text("")
    monkeypatch.setenv("NBPIPE_CACHE_DIR", str(not_a_dir))
    result = run("-C", str(root), *command)
    assert (result.code, result.err) == (2, f"error: NBPIPE_CACHE_DIR is not a directory: "
                                            f"{not_a_dir}\nhint: point it at a directory "
                                            "(nbpipe creates it if missing)\n")


def test_show_edit_gives_key_and_body_once_its_upstream_is_pinned(run, example, fake_hiapi):
    """The upstream built (pinned and fresh), the edit not yet: the plan knows the edit's key
    and the exact body, and `show` says them as `plan` and `explain` do."""
    root = example("golden-hour-edit")
    assert run("-C", str(root), "build", "base").code == 0
    planned = {f["frame"]: f for f in json.loads(run("-C", str(root), "plan", "--json").out)
               ["frames"]}
    assert planned["golden-hour"]["key"] is not None
    base = json.loads((root / "nbpipe.lock").read_text())["frames"]["base"]["digest"]
    doc = json.loads(run("-C", str(root), "show", "golden-hour", "--json").out)
    assert doc["key"] == planned["golden-hour"]["key"]
    assert doc["request"]["input"]["image_input"] == [
        f"<https URL of frame 'base' (sha256:{base[:12]})>"]
    text = run("-C", str(root), "show", "golden-hour").out.splitlines()
    assert text[1] == f"key      {doc['key']}"
    assert text[5] == f"input    frame base  image sha256:{base}"
    assert f"key: {doc['key'][:12]}" in run("-C", str(root), "explain", "golden-hour").out
    later = json.loads(run("-C", str(root), "show", "evening-mist", "--json").out)
    assert later["key"] is None  # its upstream is still to render: not yet known


BROKEN = """\
version: 1
defaults: {backend: hiapi, model: Nano-Banana, aspect_ratio: "1:1", output: "out/{frame}.{ext}"}
targets:
  hero: {prompt: a kite, modle: Nano-Banana}
  other: {prompt: a field, aspect_ratio: "7:5"}
"""


def test_json_manifest_error_is_one_json_object_on_stdout(make_project, run):
    root = make_project(BROKEN)
    human = run("-C", str(root), "plan")
    result = run("-C", str(root), "plan", "--json")
    assert result.code == human.code == 2
    assert result.err == human.err  # people still read the located text
    doc = json.loads(result.out)
    assert len(result.out.splitlines()) == 1  # one line: fits a JSON Lines reader too
    assert len(doc["errors"]) == 2 and doc["error"] == doc["errors"][0]
    for error in doc["errors"]:
        assert set(error) == {"message", "file", "line", "column", "hint"}
        assert error["file"] == str(root / "nbpipe.yaml") and error["line"] in (4, 5)
        assert f"{error['file']}:{error['line']}:{error['column']}: error: {error['message']}" \
            in result.err
    build = run("-C", str(root), "build", "--json")
    assert (build.code, json.loads(build.out)) == (2, doc)


def test_json_usage_error_is_one_json_object_on_stdout(run, example, monkeypatch):
    root = str(example("mira-storyboard"))
    result = run("-C", root, "show", "workshp", "--json")
    assert result.code == 2
    assert json.loads(result.out) == {"error": {
        "message": "no frame named 'workshp'", "file": None, "line": None, "column": None,
        "hint": "did you mean 'workshop'?"}}
    result = run("-C", root, "plan", "--json", "--bogus")
    assert result.code == 2
    assert json.loads(result.out) == {"error": {
        "message": "No such option '--bogus'.", "file": None, "line": None, "column": None,
        "hint": "`nbpipe plan --help` lists its options"}}
    monkeypatch.setenv("NBPIPE_BACKEND", "nope")
    result = run("-C", root, "plan", "--json")
    assert result.code == 2
    assert json.loads(result.out)["error"]["message"].startswith("NBPIPE_BACKEND must be")
    monkeypatch.delenv("NBPIPE_BACKEND")
    assert run("-C", root, "show", "workshp").out == ""  # without --json: stderr only


def test_plan_json_has_a_version(run, example):
    doc = json.loads(run("-C", str(example("mira-storyboard")), "plan", "--json").out)
    assert doc["version"] == 1 and list(doc) == ["version", "frames", "summary"]


def test_show_names_a_jpeg_input_by_its_bytes(make_project, run):
    from io import BytesIO

    from PIL import Image

    jpeg = BytesIO()
    Image.new("RGB", (8, 8), "red").save(jpeg, "JPEG")
    root = make_project("""\
version: 1
defaults: {backend: gemini, model: gemini-3.1-flash-image, aspect_ratio: "1:1",
           output: "out/{frame}.{ext}"}
targets:
  edit: {prompt: make it blue, inputs: [photo.png, sketch.jpg]}
""", {"sketch.jpg": jpeg.getvalue(), "photo.png": (REPO / "docs" / "report.png").read_bytes()})
    doc = json.loads(run("-C", str(root), "show", "edit", "--json").out)
    parts = doc["request"]["contents"][0]["parts"]
    assert [p["inlineData"]["mimeType"] for p in parts[1:]] == ["image/png", "image/jpeg"]


def test_an_upstream_not_rendered_yet_is_said_so_not_none(run, example, fake_hiapi):
    root = example("golden-hour-edit")

    def git(*args):
        subprocess.run(["git", "-C", str(root), "-c", "user.name=n", "-c",
                        "user.email=n@example.com", *args], check=True, capture_output=True)
    git("init", "-q", "-b", "main")
    (root / ".gitignore").write_text(".nbpipe/\n")
    assert run("-C", str(root), "build").code == 0
    git("add", ".")
    git("commit", "-q", "-m", "main")
    base = json.loads((root / "nbpipe.lock").read_text())["frames"]["base"]["digest"]
    manifest = root / "nbpipe.yaml"
    manifest.write_text(manifest.read_text().replace("red canoe", "green canoe"))
    said = run("-C", str(root), "diff", "main").out
    assert f"input upstream frame 'base': sha256 {base[:12]} → not rendered yet" in said
    assert "None" not in said


def test_readmes_plan_compare_is_what_the_command_prints(run, example):
    readme = (REPO / "README.md").read_text("utf-8")
    block = readme[readme.index("$ nbpipe -C projects/mira-storyboard plan --compare"):]
    command, *shown = block[:block.index("```")].splitlines()
    args = command.split()[4:]
    printed = run("-C", str(example("mira-storyboard")), *args).out.splitlines()
    assert [line for line in shown if line != "..."] == \
        [line for line in printed if line in shown or line.startswith(("FRAME", "TOTAL"))]
