"""Keys never reach a file, a log line, an event or a message."""

from __future__ import annotations

import shutil

from tests.conftest import copy_example


def scan(root, text: str, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in text
        for path in root.rglob("*"):
            if path.is_file():
                assert secret.encode() not in path.read_bytes(), path


def test_sentinel_keys_appear_nowhere(fake_hiapi, fake_gemini, run, tmp_path, monkeypatch):
    root = tmp_path / "mira"
    copy_example("mira-storyboard", root)
    gem = tmp_path / "sneaker"
    copy_example("sneaker-colorways", gem)
    seen = []
    fake_hiapi.faults.add("create", "429", "400")
    fake_hiapi.faults.add("poll", "garbage", "503")
    fake_hiapi.faults.add("download", "notimage")
    fake_gemini.faults.add("generate", "429", "safety", "drop")
    for args in (("build",), ("build", "--json"), ("build", "--check"), ("plan", "--json"),
                 ("show", "workshop"), ("show", "workshop", "--json"), ("explain", "cover"),
                 ("takes", "cover"), ("graph",), ("gc", "--dry-run")):
        for project in (root, gem):
            if args[0] in ("show", "explain", "takes") and project == gem:
                continue
            result = run("-C", str(project), *args)
            seen.append(result.out + result.err)
    fake_hiapi.faults.add("create", "401")
    fake_gemini.faults.add("generate", "badkey")
    (root / "nbpipe.yaml").write_text((root / "nbpipe.yaml").read_text() + "# again\n")
    (root / "out" / "cover.png").unlink()
    (gem / "out" / "shoe" / "red.png").unlink()
    shutil.rmtree(root / ".nbpipe")
    for project in (root, gem):
        result = run("-C", str(project), "build", "--force")
        seen.append(result.out + result.err)
    text = "\n".join(seen)
    assert "refused the key" in text  # the error paths really ran
    scan(tmp_path, text, fake_hiapi.key, fake_gemini.key)
