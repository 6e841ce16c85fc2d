"""Where a warm server listens (nbpipe/warm/place.py): a key that changes with everything the
server fixed at its start, and a folder no other user can reach."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nbpipe.warm import place


@pytest.mark.parametrize("argv, options", [
    (["python3", "-m", "nbpipe", "build"], []),
    (["/usr/bin/python3", "/venv/bin/nbpipe", "build", "-X"], []),
    (["python3", "-X", "importtime", "-m", "nbpipe"], ["-X", "importtime"]),
    (["python3", "-O", "-W", "error", "-c", "pass"], ["-O", "-W", "error"]),
    (["python3", "-I", "-", "x"], ["-I"]),
])
def test_interpreter_options_are_those_before_the_program(argv, options):
    assert place.interpreter_options(argv) == options


def package(tmp_path: Path) -> Path:
    root = tmp_path / "pkg"
    (root / "sub").mkdir(parents=True)
    (root / "a.py").write_text("A = 1\n")
    (root / "sub" / "b.py").write_text("B = 1\n")
    return root


def test_the_key_changes_with_the_code_and_the_interpreters_variables(tmp_path, monkeypatch):
    monkeypatch.setattr(place, "_PACKAGE", package(tmp_path))
    env = {"HOME": "/home/x", "LANG": "C.UTF-8"}
    first = place.key(env)
    assert place.key({**env, "NBPIPE_BACKEND": "preview", "HOME": "/else"}) == first
    assert place.key({**env, "LANG": "de_DE.UTF-8"}) != first
    assert place.key({**env, "PYTHONHASHSEED": "0"}) != first
    (tmp_path / "pkg" / "sub" / "b.py").write_text("B = 22\n")  # an edit of the code
    assert place.key(env) != first
    edited = place.key(env)
    (tmp_path / "pkg" / "sub" / "__pycache__").mkdir()
    (tmp_path / "pkg" / "sub" / "__pycache__" / "b.cpython-311.pyc").write_bytes(b"x")
    assert place.key(env) == edited  # bytecode written by a run is no change of code


def test_the_key_changes_when_a_package_is_installed(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.setattr(place, "_PACKAGE", package(tmp_path))
    monkeypatch.setattr("sys.path", [str(site)])
    before = place.key({})
    (site / "pydantic-9.0.dist-info").mkdir()
    assert place.key({}) != before


def test_the_folder_is_made_private_and_refused_when_open_to_others(tmp_path, short_dir):
    runtime = short_dir
    made = place.folder({"XDG_RUNTIME_DIR": str(runtime)})
    assert made == runtime / "nbpipe"
    assert made is not None and os.stat(made).st_mode & 0o777 == 0o700
    os.chmod(made, 0o755)
    assert place.folder({"XDG_RUNTIME_DIR": str(runtime)}) is None
    os.chmod(made, 0o700)
    (runtime / "nbpipe").rmdir()
    (runtime / "nbpipe").symlink_to(tmp_path)  # a link planted in its place
    assert place.folder({"XDG_RUNTIME_DIR": str(runtime)}) is None


def test_a_folder_too_long_for_a_socket_is_refused(tmp_path):
    deep = tmp_path / ("x" * 90)
    deep.mkdir()
    assert place.folder({"XDG_RUNTIME_DIR": str(deep)}) is None
