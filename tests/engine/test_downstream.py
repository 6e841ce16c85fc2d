"""A build of some frames re-renders an upstream whose edits it did not select: it says, once,
which frames it left stale behind it (issue #23: `build --force 'catalog/*'` left the edit
chain stale without a word). The real CLI, on the preview backend."""

from __future__ import annotations

import json

MANIFEST = """\
version: 1
name: shop
defaults: {backend: preview, model: Nano-Banana-2, aspect_ratio: "1:1", output: "out/{frame}.{ext}"}
targets:
  catalog:
    prompt: "A {{ color }} stoneware mug on a white table"
    matrix: {color: [red, blue]}
  catalog-edit:
    inputs: ["catalog/{{ color }}"]
    prompt: "Same mug, on a rustic breakfast table"
    matrix: {color: [red, blue]}
  banner:
    inputs: [catalog-edit/red]
    prompt: "Widen to a 3:1 web banner"
  studio:
    prompt: "An empty pottery studio"
"""


def said(result) -> tuple[list[str], list[str]]:
    """The frames' lines (in the order their renders ended: sorted) and the last two lines."""
    lines = result.out.splitlines()
    return sorted(lines[:-2]), lines[-2:]


def build_json(run, root, *args) -> dict:
    result = run("-C", str(root), "build", "--json", *args)
    assert result.code == 0, result.err
    return json.loads(result.out.splitlines()[-1])


def test_a_forced_build_of_the_catalog_names_the_edits_it_left_stale(make_project, run):
    root = make_project(MANIFEST)
    assert run("-C", str(root), "build").code == 0

    forced = run("-C", str(root), "build", "--force", "catalog/*")
    assert forced.code == 0, forced.err
    assert said(forced) == ([
        "rendered catalog/blue  forced (a new take) · preview Nano-Banana-2",
        "rendered catalog/red  forced (a new take) · preview Nano-Banana-2",
    ], [
        "3 frames downstream of what this build changed are now stale: catalog-edit/red, "
        "catalog-edit/blue, banner (not selected; run `nbpipe build` to bring them up to date)",
        "2 rendered · 0 restored · 0 fresh · spent USD 0.00 · saved USD 0.00",
    ])
    summary = build_json(run, root, "--force", "catalog/*")
    assert summary["stale_downstream"] == ["catalog-edit/red", "catalog-edit/blue", "banner"]

    caught_up = run("-C", str(root), "build")  # what the note says to run: nothing else to say
    assert caught_up.out.splitlines()[-1] == \
        "3 rendered · 0 restored · 3 fresh · spent USD 0.00 · saved USD 0.00"
    assert "stale" not in caught_up.out
    assert run("-C", str(root), "build", "--check").code == 0


def test_any_build_of_some_frames_says_it_and_only_when_it_changed_an_image(make_project, run):
    root = make_project(MANIFEST)
    assert run("-C", str(root), "build").code == 0
    (root / "nbpipe.yaml").write_text(MANIFEST.replace("stoneware", "porcelain"))

    red = run("-C", str(root), "build", "catalog/red")  # not forced: its prompt changed
    assert red.code == 0, red.err
    assert said(red)[1] == [
        "2 frames downstream of what this build changed are now stale: catalog-edit/red, banner "
        "(not selected; run `nbpipe build` to bring them up to date)",
        "1 rendered · 0 restored · 0 fresh · spent USD 0.00 · saved USD 0.00"]

    blue = build_json(run, root, "catalog/blue")
    assert blue["rendered"] == 1 and blue["stale_downstream"] == ["catalog-edit/blue"]
    one = run("-C", str(root), "build", "--force", "catalog/blue")
    assert one.out.splitlines()[-2] == (
        "1 frame downstream of what this build changed is now stale: catalog-edit/blue "
        "(not selected; run `nbpipe build` to bring it up to date)")

    # an image restored as it was pinned changes nothing downstream; nor does a frame with none
    (root / "out" / "catalog" / "red.png").unlink()
    restored = build_json(run, root, "catalog/red")
    assert restored["restored"] == 1 and "stale_downstream" not in restored
    forced = build_json(run, root, "--force", "studio")
    assert forced["rendered"] == 1 and "stale_downstream" not in forced
