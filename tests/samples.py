"""Small manifests, and readers of a build's summary, that tests in several files share.

One text for each: tests that build "two HiAPI frames" build the very same requests (the same
keys), and no test module imports another test module for its constants.
"""

from __future__ import annotations

from pathlib import Path

from nbpipe.store.journal import Journal

TWO = """\
version: 1
defaults: {backend: hiapi, model: Nano-Banana}
targets:
  a: {prompt: a lighthouse}
  b: {prompt: a harbour}
"""
ONE = TWO.replace("  b: {prompt: a harbour}\n", "")
THREE = TWO + "  c: {prompt: a pier}\n"


def on_gemini(manifest: str) -> str:
    """The same targets on Gemini 3.1 Flash Image (USD 0.067 a frame at list price)."""
    return manifest.replace("backend: hiapi, model: Nano-Banana",
                            "backend: gemini, model: gemini-3.1-flash-image")


GEMINI_ONE = on_gemini(ONE)


def failures(summary: dict) -> dict[str, str]:
    """frame → reason, for each frame the build (`build` fixture) reported failed."""
    return {e["frame"]: e["detail"] for e in summary["events"] if e.get("status") == "failed"}


def notes(summary: dict) -> list[str]:
    return [e["message"] for e in summary["events"] if e["event"] == "note"]


def journal(root: Path) -> Journal:
    """The journal of a project whose cache is its own `.nbpipe`."""
    return Journal(root / ".nbpipe" / "journal.jsonl")
