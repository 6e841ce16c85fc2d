"""The outside world: one module per backend, behind one interface (see base.py)."""

from __future__ import annotations

from nbpipe.backends import gemini, hiapi, preview
from nbpipe.backends.base import Backend, describe_image
from nbpipe.errors import UsageError
from nbpipe.plan.frame import Frame

class BackendUnavailable(UsageError):
    """A frame's backend cannot render on this machine (exit 2, before anything is spent)."""


_BUILDERS = {
    "hiapi": (hiapi.create_body, hiapi.PAYLOAD_STYLE),
    "gemini": (gemini.generate_body, gemini.PAYLOAD_STYLE),
    "preview": (preview.render_request, preview.PAYLOAD_STYLE),
}


def describe_request(frame: Frame) -> dict:
    """The exact body the frame's backend would send, image payloads described in place."""
    build, style = _BUILDERS[frame.backend]
    return build(frame, [describe_image(image, style) for image in frame.inputs])


def open_backend(name: str) -> Backend:
    """A ready backend by name; BackendUnavailable when it cannot render here."""
    if name == "preview":
        return preview.PreviewBackend()
    raise BackendUnavailable(
        f"rendering on '{name}' is not built yet: plan and show work, and "
        "`--backend preview` renders any project offline")


def endpoint(frame: Frame) -> str:
    if frame.backend == "hiapi":
        return "POST /v1/tasks"
    if frame.backend == "gemini":
        return f"POST /v1beta/models/{frame.model}:generateContent"
    return "local preview renderer (offline)"
