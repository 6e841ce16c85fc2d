"""The CI gate never lies: `build` says nothing to do, and `build --check` exits 0, exactly when
`plan` says every frame is fresh. One test per way it lied (issue 13), and the backend override
that must not touch paid work."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from nbpipe.engine import noop
from tests.conftest import tiny_png

CABIN = """\
version: 1
defaults: {model: Nano-Banana-2}
targets:
  a: {prompt: "a cabin"}
"""


def stale(run, root: Path, *flags: str) -> list[str]:
    """The frames `plan` says are not fresh."""
    result = run("-C", str(root), "plan", "--json", *flags)
    assert result.code == 0, result.err
    return [f["frame"] for f in json.loads(result.out)["frames"] if f["action"] != "fresh"]


def assert_gate_agrees(run, root: Path, *flags: str) -> list[str]:
    """`build --check` (fast path or not) agrees with `plan`; returns the stale frames."""
    not_fresh = stale(run, root, *flags)
    check = run("-C", str(root), "build", "--check", *flags)
    assert check.code == (1 if not_fresh else 0), (not_fresh, check.out)
    return not_fresh


def has_fingerprint(root: Path) -> bool:
    state = json.loads((root / ".nbpipe" / "state.json").read_text())
    return bool(state.get("fingerprint"))


def test_1_an_output_used_as_a_file_input_is_an_edge(make_project, build, run):
    root = make_project(CABIN)
    build(root)
    with_b = CABIN + "  b: {prompt: golden hour, inputs: [out/a.png]}\n"
    (root / "nbpipe.yaml").write_text(with_b)
    assert build(root)["rendered"] == 1
    (root / "nbpipe.yaml").write_text(with_b.replace("a cabin", "a barn"))
    second = build(root)
    assert (second["rendered"], second["code"]) == (2, 0)  # b follows a's new bytes
    assert assert_gate_agrees(run, root) == []
    assert run("-C", str(root), "build").out == "nothing to do: 2 frames fresh\n"


def test_2_a_manifest_saved_during_the_build_is_not_fingerprinted(make_project, build, run,
                                                                     monkeypatch):
    from nbpipe.backends import preview

    root = make_project(CABIN + "  b: {prompt: a lake}\n")
    real = preview.draw

    def draw_and_save(*args):
        manifest = root / "nbpipe.yaml"
        manifest.write_text(manifest.read_text().replace("a lake", "a river"))
        return real(*args)

    monkeypatch.setattr(preview, "draw", draw_and_save)
    assert build(root)["rendered"] == 2
    monkeypatch.setattr(preview, "draw", real)
    assert assert_gate_agrees(run, root) == ["b"]


def test_3_an_input_rewritten_with_the_same_size_inode_and_mtime_is_seen(make_project, build,
                                                                            run):
    root = make_project(CABIN + "  b: {prompt: restyle it, inputs: [refs/x.png]}\n",
                        {"refs/x.png": tiny_png()})
    time.sleep(0.15)  # older than a clock tick: its stat can prove it unchanged
    build(root)
    assert has_fingerprint(root)
    path = root / "refs" / "x.png"
    before = os.stat(path)
    with open(path, "r+b") as handle:  # what `cp -p` or `tar x` of other bytes leaves behind
        handle.seek(40)
        byte = handle.read(1)
        handle.seek(40)
        handle.write(bytes([byte[0] ^ 0xFF]))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(path)
    assert (after.st_size, after.st_ino, after.st_mtime_ns) == \
        (before.st_size, before.st_ino, before.st_mtime_ns)
    assert assert_gate_agrees(run, root) == ["b"]


def test_4_a_key_schema_change_is_seen(make_project, build, run, monkeypatch):
    root = make_project(CABIN)
    time.sleep(0.01)
    build(root)
    assert run("-C", str(root), "build", "--check").code == 0
    monkeypatch.setattr("nbpipe.plan.KEY_SCHEMA", 99)  # what the no-op check compares
    monkeypatch.setattr("nbpipe.plan.frame.KEY_SCHEMA", 99)  # what frame_key hashes
    assert assert_gate_agrees(run, root) == ["a"]


def test_4_a_change_to_nbpipe_s_own_files_is_seen_and_digested_once(make_project, build,
                                                                      monkeypatch, tmp_path):
    import shutil

    package = tmp_path / "pkg"
    shutil.copytree(noop.PACKAGE, package, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(noop, "PACKAGE", package)
    root = make_project(CABIN)
    build(root)
    options = {"backend": None, "profile": None}

    def no_rehash():
        raise AssertionError("the code digest is computed once per install, not per build")

    with monkeypatch.context() as m:
        m.setattr(noop, "code_digest", no_rehash)
        assert noop.still_fresh(root, options, root / ".nbpipe" / "journal.jsonl") == 1
    catalogue = package / "data" / "catalog.json"  # the next retirement, say
    catalogue.write_text(catalogue.read_text() + "\n")
    assert noop.still_fresh(root, options, root / ".nbpipe" / "journal.jsonl") is None


def test_4_an_upgrade_of_a_key_library_or_of_python_is_seen(make_project, build, run,
                                                            monkeypatch, tmp_path):
    """A new jinja2 (say) may render a prompt differently: its files' stats stand for its
    version. Here a stand-in library joins the list, and is then 'upgraded' in place."""
    import sys
    import types

    library = tmp_path / "stand_in.py"
    library.write_text("VERSION = 1\n")
    module = types.ModuleType("stand_in")
    module.__file__ = str(library)
    monkeypatch.setitem(sys.modules, "stand_in", module)
    monkeypatch.setattr(noop, "KEY_LIBRARIES", (*noop.KEY_LIBRARIES, "stand_in"))
    root = make_project(CABIN)
    time.sleep(0.01)
    build(root)
    options, journal = {"backend": None, "profile": None}, root / ".nbpipe" / "journal.jsonl"
    assert noop.still_fresh(root, options, journal) == 1
    with monkeypatch.context() as m:
        m.setattr(sys, "version", sys.version + " (another build)")
        assert noop.still_fresh(root, options, journal) is None
    library.write_text("VERSION = 2\n")  # pip replaced the file
    assert noop.still_fresh(root, options, journal) is None
    assert assert_gate_agrees(run, root) == []  # the full path: nothing to render after all
    assert noop.still_fresh(root, options, journal) is None  # --check writes no fingerprint
    build(root)
    assert noop.still_fresh(root, options, journal) == 1


@pytest.mark.parametrize("prompt, message", [
    ("a {{ ['red', 'blue']|random }} cabin", "template syntax: No filter named 'random'."),
    ("{{ lipsum(1) }}", "'lipsum' is not available in nbpipe templates (it makes a different "
                        "prompt on every run)"),
    ("a {{ 'cabin'.upper }}", "the template prints a function or object, whose text changes "
                              "on every run"),
])
def test_5_templates_are_deterministic(make_project, run, prompt, message):
    root = make_project(CABIN.replace('"a cabin"', json.dumps(prompt)))
    result = run("validate", cwd=root)
    assert result.code == 2
    first = result.err.splitlines()[0]
    assert first.startswith("nbpipe.yaml:4:") and first.endswith(message), result.err
    assert "hint: " in result.err


def test_6_same_request_same_preview_bytes_whatever_the_name_markers_or_path(make_project,
                                                                             build, tmp_path):
    one = make_project("""\
version: 1
defaults: {model: Nano-Banana-2, output: "renders/{frame}.jpg"}
bibles: {mira: {text: "Mira.", markers: [a rust-orange beanie]}}
templates: {scene: "{{ bible }} | {{ scene }}"}
targets:
  alpha: {template: scene, bible: mira, vars: {scene: a workshop}}
""")
    two = tmp_path / "two"
    two.mkdir()
    (two / "nbpipe.yaml").write_text("""\
version: 1
defaults: {model: Nano-Banana-2}
targets:
  beta: {prompt: "Mira. | a workshop"}
""")
    build(one)
    build(two)
    assert (one / "renders" / "alpha.png").read_bytes() == (two / "out" / "beta.png").read_bytes()


def test_6_output_format_on_a_model_that_takes_none_is_an_error(make_project, run):
    root = make_project("""\
version: 1
defaults: {backend: gemini, model: gemini-3.1-flash-image, output_format: jpeg}
targets:
  a: {prompt: a cabin}
""")
    result = run("validate", cwd=root)
    assert result.code == 2
    assert result.err.splitlines()[0] == (
        "nbpipe.yaml:2:75: error: gemini-3.1-flash-image takes no output format (the model "
        "chooses it, and nbpipe names the file after the bytes it gets)")
    assert "hint: remove `output_format` for this model" in result.err


def test_7_backend_override_never_touches_paid_outputs_or_pins(fake_gemini, make_project,
                                                                build, run):
    root = make_project("""\
version: 1
defaults: {backend: gemini, model: gemini-3.1-flash-image}
targets:
  a: {prompt: a cabin}
""")
    paid = build(root)
    assert (paid["rendered"], fake_gemini.counts["generates"]) == (1, 1)
    image = (root / "out" / "a.png").read_bytes()
    pins = json.loads((root / "nbpipe.lock").read_text())["frames"]
    trial = build(root, "--backend", "preview")
    assert (trial["rendered"], trial["code"]) == (1, 0)
    assert (root / "out" / "a.png").read_bytes() == image
    lock = json.loads((root / "nbpipe.lock").read_text())
    assert lock["frames"] == pins
    assert lock["profiles"]["@preview"]["a"]["output"] == "out/@preview/a.png"
    assert (root / "out" / "@preview" / "a.png").is_file()
    assert assert_gate_agrees(run, root) == []  # the committed frames are still fresh
    assert assert_gate_agrees(run, root, "--backend", "preview") == []
    assert fake_gemini.counts["generates"] == 1


def test_backend_override_that_changes_nothing_is_the_usual_build(make_project, build):
    root = make_project(CABIN)  # on preview already (the default backend)
    build(root, "--backend", "preview")
    assert (root / "out" / "a.png").is_file()
    assert set(json.loads((root / "nbpipe.lock").read_text())) == {"frames", "version"}


def test_nbpipe_backend_is_honoured_by_every_command_and_hints_keep_it(make_project, build,
                                                                        run, monkeypatch):
    root = make_project(CABIN.replace("defaults: {", "defaults: {backend: hiapi, "))
    monkeypatch.setenv("NBPIPE_BACKEND", "preview")
    assert build(root)["rendered"] == 1
    assert stale(run, root) == []
    assert run("-C", str(root), "report").code == 0
    (root / "out" / "@preview" / "a.png").write_bytes(tiny_png())
    explained = run("-C", str(root), "explain", "a").out
    assert "`nbpipe build --backend preview --force a` overwrites out/@preview/a.png" in explained


def test_a_forced_take_on_preview_differs_and_a_normal_build_stays_deterministic(
        make_project, build, tmp_path):
    import shutil

    root = make_project(CABIN)
    build(root)
    first = (root / "out" / "a.png").read_bytes()
    assert build(root, "--force")["rendered"] == 1
    assert (root / "out" / "a.png").read_bytes() != first  # take 2 says so
    shutil.rmtree(root / ".nbpipe")
    (root / "nbpipe.lock").unlink()
    (root / "out" / "a.png").unlink()
    build(root)
    assert (root / "out" / "a.png").read_bytes() == first


def test_a_planner_setting_from_the_environment_is_part_of_the_fingerprint(make_project, build,
                                                                           run, monkeypatch):
    # NBPIPE_MAX_FRAMES (like NBPIPE_REMOTE) changes what `plan` says: the fast path may not
    # answer for a build planned under other values.
    root = make_project(CABIN + "  b: {prompt: a barn}\n")
    build(root)
    assert run("-C", str(root), "build").out == "nothing to do: 2 frames fresh\n"
    monkeypatch.setenv("NBPIPE_MAX_FRAMES", "1")
    assert run("-C", str(root), "plan").code == 2
    assert run("-C", str(root), "build", "--check").code == 2
    monkeypatch.delenv("NBPIPE_MAX_FRAMES")
    assert run("-C", str(root), "build").out == "nothing to do: 2 frames fresh\n"


def _fingerprint_edited(root: Path, **changes) -> None:
    path = root / ".nbpipe" / "state.json"
    state = json.loads(path.read_text())
    state["fingerprint"].update(changes)
    path.write_text(json.dumps(state))


def test_a_fingerprint_naming_no_possible_file_is_forgotten(make_project, build, run):
    # state.json is a cache of what this machine saw: damaged, it is re-learnt, never a crash
    root = make_project(CABIN)
    build(root)
    _fingerprint_edited(root, inputs={"refs/x\u0000.png": [1, 2, 3, 4]})
    done = run("-C", str(root), "build")
    assert (done.code, done.out, done.err) == (0, "nothing to do: 1 frame fresh\n", "")
    assert has_fingerprint(root)  # the full path wrote a good one back


def test_a_fingerprint_without_the_manifest_digest_proves_nothing(make_project, build, run):
    root = make_project(CABIN)
    build(root)
    _fingerprint_edited(root, manifest=None, lock=None)
    (root / "nbpipe.yaml").unlink()
    (root / "nbpipe.lock").unlink()
    assert run("-C", str(root), "build", "--check").code == 2  # no manifest: as `plan` says
    assert run("-C", str(root), "plan").code == 2


@pytest.mark.parametrize("folder", ["out", "refs"])
def test_a_folder_moved_out_of_the_project_and_linked_back_is_not_fresh(make_project, build, run,
                                                                        tmp_path, folder):
    # Its files keep every stat (only the folder was renamed), but the planner refuses a path
    # that leads out of the project: the gate may not pass what the build refuses.
    root = make_project(CABIN + "  b: {prompt: restyle it, inputs: [refs/x.png]}\n",
                        {"refs/x.png": tiny_png()})
    time.sleep(0.15)  # older than a clock tick: its stat can prove it unchanged
    build(root)
    assert run("-C", str(root), "build", "--check").code == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (root / folder).rename(elsewhere / folder)
    (root / folder).symlink_to(elsewhere / folder)
    plan = run("-C", str(root), "plan")
    assert plan.code == 2 and "out of the project" in plan.err, plan
    check = run("-C", str(root), "build", "--check")
    assert (check.code, check.err) == (2, plan.err)
