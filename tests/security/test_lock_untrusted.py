"""A pull request's nbpipe.lock is data: nothing in it becomes a path, and a pin restores only
an image the cache knows was rendered for that frame's key (SECURITY.md, "What a lock can do")."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nbpipe.store.lock import Lock

MANIFEST = """version: 1
defaults: {backend: preview}
targets:
  a: {prompt: "a red fox"}
  b: {prompt: "a blue whale"}
"""


@pytest.fixture
def project(tmp_path, build, make_project):
    """A built preview project, and a sentinel directory beside it that nothing may touch."""
    root = make_project(MANIFEST)
    assert build(root)["code"] == 0
    outside = tmp_path / "sentinel"
    outside.mkdir()
    (outside / "private.png").write_bytes((root / "out" / "b.png").read_bytes())
    return root


def edit_lock(root: Path, frame: str, **fields) -> None:
    doc = json.loads((root / "nbpipe.lock").read_text())
    doc["frames"][frame] = {**doc["frames"].get(frame, doc["frames"]["a"]), **fields}
    (root / "nbpipe.lock").write_text(json.dumps(doc, indent=2))


def sentinel(root: Path) -> Path:
    return root.parent / "sentinel" / "private.png"


def test_absolute_digest_is_never_a_path(project, build, run):
    edit_lock(project, "a", digest=str(sentinel(project)))
    (project / "out" / "a.png").unlink()
    result = build(project)
    assert result["code"] == 0 and sentinel(project).exists()
    assert "entry of frame 'a' ignored: 'digest' must be 64 lowercase hex digits" in result["err"]
    assert run("-C", str(project), "pull").code == 0 and sentinel(project).exists()


def test_climbing_digest_makes_no_report_file_outside(project, run):
    edit_lock(project, "a", digest="../../../sentinel/x" + "0" * 40)
    assert run("-C", str(project), "report").code == 0
    assert sorted(p.name for p in sentinel(project).parent.iterdir()) == ["private.png"]


@pytest.mark.parametrize("output", ["/abs", "../sentinel/private.png", "nbpipe.yaml",
                                    ".git/hooks/post-checkout"])
def test_outside_or_reserved_output_is_refused(project, run, output):
    if output == "/abs":
        output = str(sentinel(project))
    before = sentinel(project).read_bytes()
    manifest = (project / "nbpipe.yaml").read_bytes()
    edit_lock(project, "a", output=output, digest=json.loads(
        (project / "nbpipe.lock").read_text())["frames"]["b"]["digest"])
    result = run("-C", str(project), "pull")
    assert result.code == 0 and "entry of frame 'a' ignored" in result.err
    assert sentinel(project).read_bytes() == before
    assert (project / "nbpipe.yaml").read_bytes() == manifest
    assert not (project / ".git").exists()


def test_clean_orphans_removes_only_what_this_machine_saw_nbpipe_write(project, build, run):
    """An entry for an undeclared frame naming a project file with that file's digest."""
    victim = project / "refs" / "face.png"
    victim.parent.mkdir()
    victim.write_bytes(b"not nbpipe's")
    import hashlib

    edit_lock(project, "gone", output="refs/face.png",
              digest=hashlib.sha256(victim.read_bytes()).hexdigest())
    assert build(project)["code"] == 0
    assert run("-C", str(project), "clean", "--orphans").code == 0
    assert victim.exists()


def test_outside_pin_puts_no_thumbnail_of_an_outside_image_in_the_report(project, run):
    edit_lock(project, "a", output=str(sentinel(project)))
    (project / "out" / "a.png").unlink()
    assert run("-C", str(project), "report").code == 0
    html = (project / "out" / "index.html").read_text()
    assert "private.png" not in html and "sentinel" not in html  # never shown nor linked


def test_a_pin_restores_only_a_take_of_its_own_key(project, build):
    lock = json.loads((project / "nbpipe.lock").read_text())["frames"]
    edit_lock(project, "a", digest=lock["b"]["digest"])
    (project / "out" / "a.png").unlink()
    result = build(project)
    assert result["code"] == 0
    assert (project / "out" / "a.png").read_bytes() != (project / "out" / "b.png").read_bytes()
    assert json.loads((project / "nbpipe.lock").read_text())["frames"]["a"]["digest"] == \
        lock["a"]["digest"]


@pytest.mark.parametrize("field, value", [("digest", 12345), ("digest", None), ("output", 7),
                                          ("key", "A" * 64), ("cost_usd", "free"),
                                          ("cost_usd", float("nan")), ("backend", "ftp"),
                                          ("model", "../../x")])
def test_a_bad_entry_is_a_located_warning_and_a_stale_frame(project, run, field, value):
    edit_lock(project, "a", **{field: value})
    line = next(i for i, text in enumerate((project / "nbpipe.lock").read_text().splitlines(), 1)
                if text.strip().startswith('"a":'))
    result = run("-C", str(project), "build")
    assert result.code == 0, result.err
    assert f"warning: nbpipe.lock:{line}: entry of frame 'a' ignored: " in result.err
    assert f"'{field}'" in result.err or "unknown backend/model" in result.err
    assert set(Lock.load(project).entries) == {"a", "b"}  # the build pinned it afresh, for free
    assert run("-C", str(project), "build", "--check").err == ""
