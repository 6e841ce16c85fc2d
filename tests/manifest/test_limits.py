"""Hostile sizes are refused early: a 10^9-frame matrix, a raised cap past the ceiling."""

from __future__ import annotations

import time

import pytest

from nbpipe.errors import ManifestError
from nbpipe.manifest.expand import expand
from nbpipe.manifest.load import parse_manifest


def test_billion_frame_matrix_is_refused_before_expanding(tmp_path):
    axes = "\n".join(f"      a{i}: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]" for i in range(9))
    text = f"version: 1\ntargets:\n  t:\n    prompt: x\n    matrix:\n{axes}\n"
    start = time.perf_counter()
    with pytest.raises(ManifestError) as info:
        expand(parse_manifest(text, tmp_path))
    assert time.perf_counter() - start < 10  # expanding would take hours; room for load
    assert "expands to 1,000,000,000 frames" in info.value.diagnostics[0].message


def test_max_frames_has_a_ceiling(tmp_path):
    with pytest.raises(ManifestError) as info:
        parse_manifest("version: 1\nmax_frames: 1000000000\n", tmp_path)
    assert info.value.diagnostics[0].message == "max_frames may be at most 10,000,000"


def test_fifo_input_is_refused(tmp_path, run):
    import os

    (tmp_path / "refs").mkdir()
    os.mkfifo(tmp_path / "refs" / "pipe.png")
    (tmp_path / "nbpipe.yaml").write_text(
        "version: 1\ndefaults: {backend: gemini, model: gemini-3.1-flash-image}\n"
        "targets:\n  a: {prompt: x, inputs: [refs/pipe.png]}\n")
    result = run("-C", str(tmp_path), "validate")
    assert result.code == 2 and "'refs/pipe.png' is not a regular file" in result.err


def test_symlinked_input_leading_out_is_refused(tmp_path, run):
    import os

    outside = tmp_path / "outside.png"
    from tests.conftest import tiny_png

    outside.write_bytes(tiny_png())
    project = tmp_path / "p"
    (project / "refs").mkdir(parents=True)
    os.symlink(outside, project / "refs" / "face.png")
    (project / "nbpipe.yaml").write_text(
        "version: 1\ndefaults: {backend: gemini, model: gemini-3.1-flash-image}\n"
        "targets:\n  a: {prompt: x, inputs: [refs/face.png]}\n")
    result = run("-C", str(project), "validate")
    assert result.code == 2 and "is a symbolic link out of the project" in result.err


def test_an_input_over_the_models_size_limit_is_refused_before_sending(tmp_path, run):
    from nbpipe.catalog import builtin
    from tests.conftest import tiny_png

    limit = builtin().get("gemini", "gemini-3-pro-image").input_max_bytes
    (tmp_path / "refs").mkdir()
    (tmp_path / "refs" / "huge.png").write_bytes(tiny_png() + b"\0" * limit)
    (tmp_path / "nbpipe.yaml").write_text(
        "version: 1\ndefaults: {backend: gemini, model: gemini-3-pro-image}\n"
        "targets:\n  a: {prompt: x, inputs: [refs/huge.png]}\n")
    result = run("validate", cwd=tmp_path)
    assert result.code == 2
    assert result.err.splitlines()[0] == (
        f"nbpipe.yaml:4:27: error: input 'refs/huge.png' has {limit + len(tiny_png()):,} bytes; "
        f"gemini-3-pro-image takes at most {limit:,} per image")
    (tmp_path / "refs" / "huge.png").write_bytes(tiny_png() + b"\0" * (limit - 1000))
    assert run("validate", cwd=tmp_path).code == 0
