"""Outputs that NTFS, HFS+ or APFS resolve to git's or nbpipe's own files, or to another frame's
output, are refused with located errors (issue #22 item 8; SECURITY.md, "Its manifest")."""

from __future__ import annotations

import json

import pytest

from nbpipe.relpath import PathRefused, output_path


def _validate(tmp_path, run, outputs: str) -> str:
    (tmp_path / "nbpipe.yaml").write_text(
        f"version: 1\ndefaults: {{backend: preview}}\ntargets:\n{outputs}")
    result = run("-C", str(tmp_path), "validate")
    assert result.code == 2, result.err
    return result.err


@pytest.mark.parametrize("output", [
    "GIT~1/hooks/post-checkout",  # NTFS 8.3 short name of .git
    ".git::$INDEX_ALLOCATION/hooks/post-checkout",  # NTFS: the directory's index stream
    ".g\u200cit/hooks/post-checkout",  # HFS+ ignores zero-width non-joiners
    "\ufeff.git/hooks/x", ".git\u200d./config",
    "nbpipe.lock.", "nbpipe.yaml ", "nbpipe.lock. . ",  # Windows strips trailing dots, spaces
    "NBPIPE~1.LOC", "nbpipe~2.yam", "NB3A7F~1.LOC",  # short names, plain and hashed
    "NBPIPE~1/state.json",  # .nbpipe's short name
    "nbpipe.yaml:evil", "nbpipe.lock::$DATA",  # NTFS streams write the file itself
    "NBPIPE.YAML", "Nbpipe.Lock",
])
def test_file_system_spellings_of_protected_files_are_refused(tmp_path, run, output):
    with pytest.raises(PathRefused, match="nbpipe's or git's own file"):
        output_path(output)
    err = _validate(tmp_path, run, f"  a: {{prompt: x, output: {json.dumps(output)}}}\n")
    assert "nbpipe.yaml:4:" in err and "is nbpipe's or git's own file" in err


@pytest.mark.parametrize("output", ["out/a.png", "out/git~1.png", "GIT~1.png", "img~1/a.png",
                                    "out/nbpipe.lock", "nbpipe.lock.d/a.png", "out/a:b.png"])
def test_ordinary_names_are_still_outputs(output):
    assert output_path(output) == output


@pytest.mark.parametrize("output", [". /x.png", "out/.. /x.png", "out/... /x.png"])
def test_names_windows_reads_as_dot_or_dotdot_are_refused(output):
    with pytest.raises(PathRefused, match="Windows reads as"):
        output_path(output)


@pytest.mark.parametrize("first, second", [("out/A.png", "out/a.png"),
                                           ("out/caf\u00e9.png", "out/cafe\u0301.png"),
                                           ("Out/x.png", "out./x.png")])
def test_outputs_one_file_on_macos_or_windows_collide(tmp_path, run, first, second):
    err = _validate(tmp_path, run, f"  a: {{prompt: x, output: '{first}'}}\n"
                                   f"  b: {{prompt: y, output: '{second}'}}\n")
    assert "frames 'a' and 'b' write" in err and "one file on macOS and Windows" in err


def test_a_path_is_checked_once_however_often_it_is_named(monkeypatch):
    """The lock and the plan name every output: 20,000 checks of a 10,000-frame build."""
    from nbpipe import relpath

    calls: list[str] = []
    original = relpath.relative_path
    monkeypatch.setattr(relpath, "relative_path", lambda text: calls.append(text) or
                        original(text))
    relpath._output_path.cache_clear()
    assert [output_path("out/x.png") for _ in range(3)] == ["out/x.png"] * 3
    for _ in range(2):
        with pytest.raises(PathRefused, match="own file"):
            output_path("nbpipe.lock")
    with pytest.raises(PathRefused, match="an empty path"):
        output_path(None)  # type: ignore[arg-type]  # an untrusted value is refused, not hashed
    assert calls == ["out/x.png", "nbpipe.lock", "nbpipe.lock", None]
