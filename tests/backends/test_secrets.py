"""Keys never reach a file, a log line, an event or a message."""

from __future__ import annotations

import json
import shutil

from tests.conftest import copy_example
from tests.samples import THREE


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


GEMINI_FIVE = """\
version: 1
defaults: {backend: gemini, model: gemini-3.1-flash-image}
targets:
  shoe:
    prompt: a {{ colour }} shoe
    matrix: {colour: [red, blue, green, black, white]}
"""


def test_keys_echoed_in_server_fields_are_scrubbed_at_the_boundary(fake_hiapi, fake_gemini, run,
                                                                    tmp_path):
    """A server that echoes the key in every field it supplies: failed-task codes and messages,
    task ids, output URLs, text parts, finishReason, blockReason, error bodies (JSON-escaped
    too). The key must reach no output, no file, no message."""
    hi, gem = tmp_path / "hi", tmp_path / "gem"
    for root, manifest in ((hi, THREE), (gem, GEMINI_FIVE)):
        root.mkdir()
        (root / "nbpipe.yaml").write_text(manifest)
    fake_hiapi.faults.add("task", "echo-fail", "echo-url")
    fake_hiapi.faults.add("create", "echo-id")
    fake_gemini.faults.add("generate", "echo-text", "echo-escaped", "echo-finish", "echo-block",
                           "echo-error")
    seen = []
    for root in (hi, gem):
        result = run("-C", str(root), "build", "--json", "--report")
        seen.append(result.out + result.err)
        failed = [e["detail"] for e in map(json.loads, result.out.splitlines()[:-1])
                  if e.get("status") == "failed"]
        assert len(failed) == (2 if root == hi else 5), failed
        assert all("[redacted]" in detail for detail in failed), failed  # the paths really ran
        for args in (("build",), ("plan", "--json"), ("explain", "shoe/red" if root == gem
                                                      else "a"), ("takes", "--help")):
            result = run("-C", str(root), *args)
            seen.append(result.out + result.err)
    assert fake_hiapi.counts["replays"] >= 1  # the echoed task id was refused, then replayed
    scan(tmp_path, "\n".join(seen), fake_hiapi.key, fake_gemini.key)
