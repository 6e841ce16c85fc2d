"""The offline, free preview backend: draws a deterministic placeholder image locally."""

from __future__ import annotations

from nbpipe.plan.frame import Frame

PAYLOAD_STYLE = "thumbnail"


def render_request(frame: Frame, images: list[str]) -> dict:
    """What the preview renderer draws from: nothing leaves the machine."""
    return {"model": frame.model, "prompt": frame.prompt, "params": frame.params,
            "images": list(images)}
