"""The manifest most benchmarks use: one target, a one-axis matrix of `frames` tiles."""

from __future__ import annotations

HIAPI = "{backend: hiapi, model: Nano-Banana}"
PREVIEW_SMALL = ('{backend: preview, model: gemini-3.1-flash-image, resolution: "512", '
                 'aspect_ratio: "1:1"}')  # 512 px previews: cheap to draw


def tiles(frames: int, defaults: str = HIAPI) -> str:
    values = ", ".join(f"v{i}" for i in range(frames))
    return (f"version: 1\ndefaults: {defaults}\ntargets:\n  tile:\n"
            f"    prompt: \"tile {{{{ v }}}}\"\n    matrix: {{v: [{values}]}}\n")
