"""A pull request's manifest cannot crash or stall the loader, the templates or the planner:
each attempt ends in a located error, exit 2, in bounded time (SECURITY.md, "What a manifest
can do")."""

from __future__ import annotations

import time

import pytest

from nbpipe.manifest.load import parse_manifest


def located(text: str, tmp_path, run) -> str:
    (tmp_path / "nbpipe.yaml").write_text(text)
    start = time.perf_counter()
    result = run("-C", str(tmp_path), "validate")
    assert time.perf_counter() - start < 10
    assert result.code == 2, result.err
    return result.err


def test_merge_keys_are_supported_with_positions(tmp_path, run):
    text = ("version: 1\ndefaults: {backend: preview}\ntemplates: {t: 'x {{ v }}'}\n"
            "targets:\n  a: &base\n    template: t\n    vars: {v: one}\n"
            "  b:\n    <<: *base\n    colour: red\n")
    assert "nbpipe.yaml:10:5: error: unknown key 'colour'" in located(text, tmp_path, run)
    (tmp_path / "nbpipe.yaml").write_text(text.replace("    colour: red\n", ""))
    assert run("-C", str(tmp_path), "validate").code == 0


@pytest.mark.parametrize("value, tag", [("!!omap [{a: {prompt: x}}]", "!!omap"),
                                        ("!!python/object/apply:os.system [touch pwned]",
                                         "!!python/object/apply:os.system"),
                                        ("!!set {a}", "YAML"), ("!!python/name:os.system {}", "!!")])
def test_foreign_yaml_tags_are_located_errors(tmp_path, run, value, tag):
    err = located(f"version: 1\ntargets: {value}\n", tmp_path, run)
    assert "nbpipe.yaml:2:10: error: " in err and tag in err
    assert not (tmp_path / "pwned").exists()


def test_a_five_thousand_digit_number_is_a_located_error(tmp_path, run):
    err = located("version: 1\nmax_frames: " + "9" * 5000 + "\n", tmp_path, run)
    assert "nbpipe.yaml:2:13: error: a number of 5,000 digits" in err


def test_a_megabyte_string_aliased_a_million_times_is_refused(tmp_path, run):
    level = "  l{0}: &l{0} [" + ", ".join(["*l{1}"] * 10) + "]\n"
    text = "version: 1\nx:\n  s: &l0 '" + "a" * (1 << 20) + "'\n" + "".join(
        level.format(i, i - 1) for i in range(1, 7))
    err = located(text, tmp_path, run)
    assert "expands to more than" in err and "characters of text" in err


def test_unconfirmed_prompt_limits_still_have_a_ceiling(tmp_path, run):
    text = ("version: 1\ndefaults: {backend: gemini, model: gemini-3.1-flash-image}\n"
            "targets:\n  a: {prompt: '" + "x" * 200_000 + "'}\n")
    assert "takes at most 131,072" in located(text, tmp_path, run)


def test_overlong_target_name_is_refused_at_load(tmp_path, run):
    err = located("version: 1\ntargets:\n  " + "n" * 300 + ": {prompt: x}\n", tmp_path, run)
    assert "nbpipe.yaml:3:3: error: target name" in err and "longer than" in err


def test_integer_and_string_target_names_do_not_merge(tmp_path, run):
    err = located("version: 1\ntargets:\n  1: {prompt: a}\n  '1': {prompt: b}\n", tmp_path, run)
    assert "nbpipe.yaml:4:3: error: duplicate key '1'" in err


@pytest.mark.parametrize("axis", ["frame", "target", "bible", "ext", "variant", "profile"])
def test_reserved_matrix_axis_names(tmp_path, run, axis):
    err = located(f"version: 1\ntargets:\n  a:\n    prompt: x\n    matrix: {{{axis}: [1, 2]}}\n",
                  tmp_path, run)
    assert f"nbpipe.yaml:5:14: error: matrix axis '{axis}' is reserved" in err


@pytest.mark.parametrize("output", ["nbpipe.lock", "nbpipe.yaml", ".nbpipe/state.json",
                                    ".git/hooks/post-checkout", ".GIT/hooks/x", "./nbpipe.lock"])
def test_outputs_may_not_replace_nbpipe_or_git_files(tmp_path, run, output):
    err = located(f"version: 1\ndefaults: {{output: '{output}'}}\ntargets:\n  a: {{prompt: x}}\n",
                  tmp_path, run)
    assert "is nbpipe's or git's own file" in err


def test_extends_chains_are_bounded_and_linear(tmp_path):
    from nbpipe.manifest.expand import expand

    chain = "".join(f"  t{i}: {{extends: t{i - 1}}}\n" for i in range(1, 1000))
    loaded = parse_manifest("version: 1\ntargets:\n  t0: {prompt: x}\n" + chain, tmp_path)
    start = time.perf_counter()
    diags = expand(loaded).diags  # unbounded, this took 20 s (quadratic in the depth)
    assert time.perf_counter() - start < 3
    assert "target 't33' has an extends chain longer than 32" in diags[0].message


def test_a_manifest_cannot_raise_max_frames_past_the_runners_ceiling(tmp_path, run, monkeypatch):
    err = located("version: 1\nmax_frames: 10000000\ntargets: {}\n", tmp_path, run)
    assert "nbpipe.yaml:2:13: error: max_frames may be at most 100,000" in err
    assert "NBPIPE_MAX_FRAMES" in err
    monkeypatch.setenv("NBPIPE_MAX_FRAMES", "10000000")
    assert run("-C", str(tmp_path), "validate").code == 0


@pytest.mark.parametrize("template, refused", [
    ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}x",
     "loops more than 100,000 times for one frame"),
    ("{% for i in range(99999) %}{% for j in range(99999) %}{% for k in range(99999) %}"
     "{% endfor %}{% endfor %}{% endfor %}", "loops more than 100,000 times"),
    ("{% set s = 'ab' * 90000 %}{% set s = s ~ s %}{% set s = s ~ s %}{{ s|length }}",
     "too large for a prompt"),
    ("{% set s = 'ab' * 90000 %}{{ (s + s)|length }}", "too large for a prompt"),
    ("{{ 'x'|center(1000000000) }}", "too large for a prompt"),
    ("{{ 'x'.ljust(1000000000) }}", "too large for a prompt"),
    ("{{ ('ab' * 90000).replace('a', 'aaaaaaaaaa')|length }}", "too large for a prompt"),
    ("{% for i in range(1000) %}{{ 'x' * 1000 }}{% endfor %}", "renders more than 200,000"),
])
def test_template_rendering_has_a_budget(tmp_path, run, template, refused):
    text = ("version: 1\ndefaults: {backend: preview}\ntargets:\n  a:\n    prompt: |-\n      ok\n"
            f"      {template}\n")
    err = located(text, tmp_path, run)
    assert "nbpipe.yaml:5:13: error: prompt of frame 'a': the sandbox refused" in err
    assert refused in err
    assert "(line 2 of the template)" in err or refused.startswith("renders")


@pytest.mark.parametrize("remote", ["file:///tmp/elsewhere", "/tmp/elsewhere", "../shared",
                                    "memory://x", "ssh://host/dir"])
def test_a_manifest_remote_may_only_be_an_object_store(tmp_path, run, remote):
    err = located(f"version: 1\ncache: {{remote: '{remote}'}}\ntargets: {{}}\n", tmp_path, run)
    assert "nbpipe.yaml:2:17: error: cache.remote may name an object store" in err
    assert "NBPIPE_REMOTE=DIR" in err


def test_a_local_remote_named_by_the_runner_works(tmp_path, run, monkeypatch, make_project):
    root = make_project("version: 1\ndefaults: {backend: preview}\ntargets:\n  a: {prompt: x}\n")
    shared = tmp_path / "shared" / "deep"
    monkeypatch.setenv("NBPIPE_REMOTE", shared.as_uri())
    assert run("-C", str(root), "build").code == 0
    result = run("-C", str(root), "push")
    assert result.code == 0, result.err
    assert len(list((shared / "blobs").iterdir())) == 1
    assert len(list((shared / "takes").rglob("*.json"))) == 1


# --- symbolic links, special files, oversized files in every position (issue #22) ----------

def _plant(path, kind: str, outside) -> None:
    import os

    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "link-out":
        outside.write_text("machine github.com password hunter2\n")
        path.symlink_to(outside)
    elif kind == "dev-zero":
        path.symlink_to("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
    else:
        with open(path, "wb") as handle:
            handle.truncate(40 << 20)


@pytest.mark.parametrize("kind", ["link-out", "dev-zero", "fifo", "folder", "huge"])
@pytest.mark.parametrize("where", ["nbpipe.yaml", "input", "reference", "output folder"])
def test_a_link_special_or_huge_file_in_any_position_is_a_clean_refusal(tmp_path, run, where,
                                                                         kind):
    """0 exit 3, no stall, nothing quoted from outside: every position the manifest names."""
    root = tmp_path / "p"
    root.mkdir()
    (root / "nbpipe.yaml").write_text(
        "version: 1\ndefaults: {backend: preview}\n"
        "bibles:\n  mira: {text: tall, references: [refs/face.png]}\n"
        "targets:\n  hero: {prompt: a kite, bible: mira, model: Nano-Banana-2, "
        "output: out/hero.png}\n"
        "  edit: {prompt: brighter, inputs: [in.png], model: Nano-Banana-2, "
        "output: out/edit.png}\n")
    from tests.conftest import tiny_png

    for name in ("refs/face.png", "in.png"):
        (root / name).parent.mkdir(exist_ok=True)
        (root / name).write_bytes(tiny_png())
    path = {"nbpipe.yaml": root / "nbpipe.yaml", "input": root / "in.png",
            "reference": root / "refs" / "face.png", "output folder": root / "out"}[where]
    if path.is_dir():
        path.rmdir()
    elif path.exists():
        path.unlink()
    _plant(path, kind, tmp_path / "secret")
    for command in (("validate",), ("plan",), ("build",)):
        start = time.perf_counter()
        result = run("-C", str(root), *command)
        assert time.perf_counter() - start < 20
        assert result.code in (0, 1, 2), (command, result.err)
        assert "hunter2" not in result.out + result.err
        if where != "output folder":
            assert result.code == 2, (command, result.err)
        elif kind in ("link-out", "dev-zero"):
            assert result.code == 2 and "symbolic link" in result.err, (command, result.err)
        else:  # a FIFO, a folder or a file where the folder must be: a write fails, or works
            assert result.err.count("error:") <= 1, result.err
    if kind == "link-out":
        assert (tmp_path / "secret").read_text() == "machine github.com password hunter2\n"
