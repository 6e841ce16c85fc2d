"""Acceptance of incremental builds, end to end through the CLI on the preview backend.

Renders are counted from the build's own JSON summary; file writes from mtimes.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES_DIR, copy_example, on_preview

EXAMPLES = ["mira-storyboard", "aria-lookbook", "sneaker-colorways", "golden-hour-edit"]


@pytest.fixture
def project(tmp_path):
    def _copy(name: str) -> Path:
        root = tmp_path / name
        return on_preview(copy_example(name, root))
    return _copy


@pytest.fixture
def build(run, monkeypatch, tmp_path):
    monkeypatch.delenv("NBPIPE_CACHE_DIR", raising=False)

    def _build(root: Path, *args: str) -> dict:
        result = run("-C", str(root), "build", "--backend", "preview", "--json", *args)
        assert result.code in (0, 1), result.err
        events = [json.loads(line) for line in result.out.splitlines()]
        summary = events[-1]
        assert summary["event"] == "summary"
        summary["events"] = events[:-1]
        summary["code"] = result.code
        return summary
    return _build


def mtimes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")
            if p.is_file() and ".nbpipe" not in p.parts}


def edit(root: Path, old: str, new: str) -> None:
    text = (root / "nbpipe.yaml").read_text()
    assert old in text, old
    (root / "nbpipe.yaml").write_text(text.replace(old, new, 1))


@pytest.mark.parametrize("name", EXAMPLES)
def test_first_build_renders_all_second_renders_nothing_and_writes_nothing(name, project, build,
                                                                           run):
    root = project(name)
    frames = json.loads(run("-C", str(root), "plan", "--json").out)["summary"]["frames"]
    first = build(root)
    assert (first["rendered"], first["restored"], first["failed"]) == (frames, 0, 0)
    before = mtimes(root)
    second = build(root)
    assert (second["rendered"], second["restored"], second["fresh"]) == (0, 0, frames)
    assert mtimes(root) == before
    text = run("-C", str(root), "build", "--backend", "preview")
    assert text.out == f"nothing to do: {frames} frames fresh\n"


def test_full_path_noop_also_writes_nothing(project, build, run):
    root = project("aria-lookbook")
    build(root)
    edit(root, "# An e-commerce lookbook", "# An e-commerce look book")  # bytes change, keys don't
    before = mtimes(root)
    result = run("-C", str(root), "build", "--backend", "preview")
    assert result.out == "nothing to do: 3 frames fresh\n"
    after = mtimes(root)
    assert {k: v for k, v in after.items() if k != "nbpipe.yaml"} == \
        {k: v for k, v in before.items() if k != "nbpipe.yaml"}


@pytest.mark.parametrize("cleaned", [False, True])
def test_one_matrix_value_renders_one_frame_and_revert_renders_none(cleaned, project, build, run):
    root = project("sneaker-colorways")
    build(root)
    edit(root, "color: [red, blue, green, yellow]", "color: [red, blue, teal, yellow]")
    changed = build(root)
    assert (changed["rendered"], changed["fresh"]) == (1, 5)
    if cleaned:
        assert run("-C", str(root), "clean", "--orphans").out == "removed  out/shoe/green.png\n"
    edit(root, "color: [red, blue, teal, yellow]", "color: [red, blue, green, yellow]")
    reverted = build(root)
    # The orphaned file still holds a take of the key (adopted as it is), or it is restored.
    assert (reverted["rendered"], reverted["restored"]) == (0, 1 if cleaned else 0)
    assert (root / "out" / "shoe" / "green.png").is_file()


TWO_BIBLES = """\
version: 1
defaults: {backend: hiapi, model: Nano-Banana}
bibles:
  mira: "Mira, a field engineer."
  aria: "Aria, a catalogue model."
templates:
  scene: "{{ bible }} | Scene: {{ scene }}"
  product: {subject: "{{ name }}", color: "{{ color }}"}
targets:
  workshop: {template: scene, bible: mira, vars: {scene: a workshop}}
  rooftop: {template: scene, bible: mira, vars: {scene: a rooftop}}
  studio: {template: scene, bible: aria, vars: {scene: a studio}}
  mug: {template: product, vars: {name: mug}, matrix: {color: [red, blue]}}
"""


@pytest.mark.parametrize("old, new, expected", [
    ("Mira, a field engineer.", "Mira, a field engineer with a beanie.", {"workshop", "rooftop"}),
    ("subject: \"{{ name }}\"", "subject: \"a {{ name }}\"", {"mug/red", "mug/blue"}),
    ("scene: a studio", "scene: a sunny studio", {"studio"}),
])
def test_changes_render_exactly_the_frames_they_reach(old, new, expected, make_project, build):
    root = make_project(TWO_BIBLES)
    build(root)
    edit(root, old, new)
    changed = build(root)
    rendered = {e["frame"] for e in changed["events"] if e.get("status") == "rendered"}
    assert rendered == expected
    edit(root, new, old)
    reverted = build(root)
    assert reverted["rendered"] == 0
    assert reverted["restored"] == len(expected)


def test_edit_chain_upstream_change_renders_it_and_its_dependants_only(project, build, make_project):
    root = make_project("""\
version: 1
defaults: {backend: hiapi, model: Nano-Banana-2}
targets:
  base: {prompt: a cabin by a lake}
  golden: {prompt: golden hour, inputs: [base]}
  mist: {prompt: add mist, inputs: [golden]}
  other: {prompt: a lighthouse}
""")
    assert build(root)["rendered"] == 4
    edit(root, "a cabin by a lake", "a cabin by a river")
    changed = build(root)
    rendered = [e["frame"] for e in changed["events"] if e.get("status") == "rendered"]
    assert rendered == ["base", "golden", "mist"]
    assert changed["fresh"] == 1


def test_deleted_output_is_restored_and_renamed_target_renders_nothing(project, build):
    root = project("mira-storyboard")
    build(root)
    (root / "out" / "workshop.png").unlink()
    restored = build(root)
    assert (restored["rendered"], restored["restored"]) == (0, 1)
    edit(root, "  workshop:\n", "  garage:\n")
    renamed = build(root)
    assert (renamed["rendered"], renamed["restored"]) == (0, 1)
    notes = [e["message"] for e in renamed["events"] if e["event"] == "note"]
    assert notes == ["orphan    out/workshop.png  (frame workshop is no longer declared; "
                     "`nbpipe clean --orphans` removes it)"]


def test_fresh_clone_with_lock_and_outputs_checks_clean(project, build, run, tmp_path):
    root = project("golden-hour-edit")
    build(root)
    clone = tmp_path / "clone"
    shutil.copytree(root, clone, ignore=shutil.ignore_patterns(".nbpipe"))
    check = run("-C", str(clone), "build", "--backend", "preview", "--check")
    assert (check.code, check.out) == (0, "all 3 frames fresh\n")
    again = build(clone)
    assert (again["rendered"], again["restored"], again["fresh"]) == (0, 0, 3)


def test_check_lists_stale_frames_and_exits_1(project, build, run):
    root = project("sneaker-colorways")
    build(root)
    edit(root, "name: running shoe}\n    matrix", "name: trail shoe}\n    matrix")
    (root / "out" / "shoe-finish" / "matte.png").unlink()
    check = run("-C", str(root), "build", "--backend", "preview", "--check")
    assert check.code == 1
    assert check.out == """\
5 of 6 frames not fresh (a build would spend USD 0.00):
  render   shoe/red           var 'name' changed
  render   shoe/blue          var 'name' changed
  render   shoe/green         var 'name' changed
  render   shoe/yellow        var 'name' changed
  restore  shoe-finish/matte  output missing
"""
    assert build(root)["rendered"] == 4


def test_corrupt_blob_truncated_index_and_deleted_cache_recover(project, build):
    root = project("aria-lookbook")
    build(root)
    cache = root / ".nbpipe"
    blob = next((cache / "blobs").glob("*/*"))
    blob.write_bytes(b"not the image")
    victim = next(p for p in (root / "out").iterdir() if p.name.startswith("frontal"))
    lock = json.loads((root / "nbpipe.lock").read_text())
    if lock["frames"]["frontal"]["digest"] != blob.name:
        victim = next(root / f["output"] for f in lock["frames"].values() if f["digest"] == blob.name)
    victim.unlink()
    recovered = build(root)
    assert (recovered["rendered"], recovered["fresh"]) == (1, 2)  # only what is really gone
    index = next((cache / "index").glob("*.db"))
    index.write_bytes(index.read_bytes()[:100])
    assert build(root)["rendered"] == 0
    shutil.rmtree(cache)
    assert build(root)["rendered"] == 0


def test_output_modified_outside_nbpipe_is_left_unless_forced(project, build, run):
    root = project("mira-storyboard")
    build(root)
    (root / "out" / "cover.png").write_bytes(b"my retouched cover")
    left = build(root)
    assert (left["kept"], left["rendered"], left["code"]) == (1, 0, 0)
    assert (root / "out" / "cover.png").read_bytes() == b"my retouched cover"
    assert run("-C", str(root), "build", "--backend", "preview", "--check").code == 1
    forced = build(root, "--force", "cover")
    assert forced["rendered"] == 1
    assert (root / "out" / "cover.png").read_bytes() != b"my retouched cover"


def test_a_frame_declared_again_replaces_its_own_orphaned_output(make_project, build, run):
    """Found by the money model: a frame removed (its output an orphan nbpipe wrote), its image
    collected by gc, then declared again with a new prompt: every build left that output alone
    as "a file not made by nbpipe" (exit 0, the frame never built)."""
    both = "version: 1\ndefaults: {backend: preview}\ntargets:\n  a: {prompt: a lighthouse}\n"
    root = make_project(both + "  c: {prompt: a harbour}\n")
    build(root)
    (root / "nbpipe.yaml").write_text(both)
    build(root)
    run("-C", str(root), "gc", "--older-than", "0s")
    (root / "nbpipe.yaml").write_text(both + "  c: {prompt: a storm}\n")
    build(root, "a")  # c is not built yet: its output is still the orphan nbpipe left
    again = build(root)
    assert (again["rendered"], again["kept"]) == (1, 0)
    (root / "out" / "c.png").write_bytes(b"my retouched c")  # the user's bytes: left alone
    assert build(root)["kept"] == 1


def test_frame_selection_builds_upstreams_too(project, build):
    root = project("golden-hour-edit")
    partial = build(root, "golden-hour")
    assert [e["frame"] for e in partial["events"] if e["event"] == "frame"] == \
        ["base", "golden-hour"]
    assert build(root)["rendered"] == 1


def test_json_summary_shape(project, build):
    summary = build(project("aria-lookbook"))
    assert set(summary) - {"events", "code"} == {
        "event", "rendered", "restored", "fresh", "failed", "skipped", "kept", "left", "pending",
        "spent_usd", "spent_earlier_usd", "saved_usd"}


def test_lock_is_sorted_stable_and_matches_its_schema(project, build):
    import jsonschema

    root = project("sneaker-colorways")
    build(root)
    text = (root / "nbpipe.lock").read_text()
    doc = json.loads(text)
    assert list(doc["frames"]) == sorted(doc["frames"])
    lines = text.splitlines()
    assert lines[:2] == ["{", '  "frames": {'] and lines[-3:] == ["  },", '  "version": 1', "}"]
    for name, line in zip(sorted(doc["frames"]), lines[2:-3]):  # one line per frame
        assert line.rstrip(",") == f"    {json.dumps(name)}: " + \
            json.dumps(doc["frames"][name], sort_keys=True)
    schema = json.loads((Path(__file__).parents[2] / "schemas" / "nbpipe.lock.schema.json")
                        .read_text())
    jsonschema.validate(doc, schema)


def test_preview_images_have_the_right_shape_and_format(project, build):
    from PIL import Image

    root = project("mira-storyboard")
    build(root)
    assert Image.open(root / "out" / "cover.png").size == (1024, 576)  # 16:9 at 1K
    assert Image.open(root / "out" / "workshop.png").size == (1024, 683)  # 3:2
    assert Image.open(root / "out" / "workshop.png").format == "PNG"


def test_shared_cache_dir(project, build, monkeypatch, tmp_path):
    monkeypatch.setenv("NBPIPE_CACHE_DIR", str(tmp_path / "shared"))
    one, two = project("aria-lookbook"), tmp_path / "second"
    shutil.copytree(one, two)
    assert build(one)["rendered"] == 3
    second = build(two)
    assert (second["rendered"], second["restored"]) == (0, 3)
    assert not (one / ".nbpipe" / "index").exists()


def test_missing_key_stops_before_anything_and_suggests_preview(project, run, monkeypatch):
    for var in ("HIAPI_API_KEY", "HIAPI_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    root = project("aria-lookbook")
    shutil.copy(EXAMPLES_DIR / "aria-lookbook" / "nbpipe.yaml", root)  # on hiapi, as committed
    result = run("-C", str(root), "build")
    assert (result.code, result.out) == (2, "")
    assert result.err == ("error: HIAPI_API_KEY is not set, so nothing can be rendered on hiapi\n"
                          "hint: set HIAPI_API_KEY (or HIAPI_TOKEN), or build offline with "
                          "--backend preview\n")
    assert not (root / "out").exists() and not (root / "nbpipe.lock").exists()
