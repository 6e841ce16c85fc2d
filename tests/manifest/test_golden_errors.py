"""Golden cases: each bad manifest in golden/ and the exact message nbpipe prints for it.

A case NAME.yaml may start with `# setup: symlink LINK -> TARGET` to create a symlink first.
Regenerate the expected texts with NBPIPE_UPDATE_GOLDEN=1 and review every diff by eye.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

GOLDEN = Path(__file__).parent / "golden"
CASES = sorted(p.stem for p in GOLDEN.glob("*.yaml"))


def _setup(root: Path, text: str) -> None:
    for line in text.splitlines():
        if line.startswith("# setup: symlink "):
            link, _, target = line.removeprefix("# setup: symlink ").partition(" -> ")
            os.symlink(target, root / link)


@pytest.mark.parametrize("case", CASES)
def test_golden_error(case, tmp_path, run):
    text = (GOLDEN / f"{case}.yaml").read_bytes()
    (tmp_path / "nbpipe.yaml").write_bytes(text)
    _setup(tmp_path, text.decode("utf-8", "replace"))
    result = run("validate", cwd=tmp_path)
    expected_file = GOLDEN / f"{case}.txt"
    if os.environ.get("NBPIPE_UPDATE_GOLDEN"):
        expected_file.write_text(result.err, "utf-8")
    assert result.code == 2, result.out + result.err
    assert result.out == ""
    assert "Traceback" not in result.err
    assert result.err == expected_file.read_text("utf-8")


def test_there_are_at_least_thirty_cases():
    assert len(CASES) >= 30
