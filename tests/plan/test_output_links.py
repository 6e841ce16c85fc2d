"""An output that is a symbolic link out of the project is refused, however many outputs share
its folder: past a few, the folder is listed once instead of each output asked with lstat."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nbpipe.plan import paths
from nbpipe.plan.paths import LIST_AFTER, PathRefused, ProjectDir


@pytest.fixture
def counted(monkeypatch):
    calls: list[str] = []
    original = os.path.islink
    monkeypatch.setattr(paths.os.path, "islink", lambda p: calls.append(p) or original(p))
    return calls


def _outputs(root: Path, count: int) -> list[str]:
    (root / "out").mkdir()
    for i in range(count):
        (root / "out" / f"{i}.png").write_bytes(b"x")
    return [f"out/{i}.png" for i in range(count)]


@pytest.mark.parametrize("at", [0, LIST_AFTER + 5])  # asked with lstat; read from the listing
def test_a_link_out_is_refused_in_a_folder_of_many_outputs(tmp_path, counted, at):
    root = tmp_path / "p"
    root.mkdir()
    names = _outputs(root, 3 * LIST_AFTER)
    (tmp_path / "secret.png").write_bytes(b"s")
    (root / names[at]).unlink()
    os.symlink(tmp_path / "secret.png", root / names[at])
    project = ProjectDir(root)
    for i, name in enumerate(names):
        if i == at:
            with pytest.raises(PathRefused, match="symbolic link out of the project"):
                project.check_output(name)
        else:
            assert project.check_output(name) == name
    assert len(counted) == LIST_AFTER  # past those, one listing answered for the folder


def test_a_name_the_listing_lacks_is_asked_of_the_file_system(tmp_path, counted):
    root = tmp_path / "p"
    root.mkdir()
    names = _outputs(root, LIST_AFTER + 1)
    project = ProjectDir(root)
    for name in names:
        project.check_output(name)
    os.symlink(tmp_path, root / "out" / "late.png")  # made after the folder was listed
    with pytest.raises(PathRefused, match="symbolic link out of the project"):
        project.check_output("out/late.png")
    assert counted[-1].endswith("out/late.png")
