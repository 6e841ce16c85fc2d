"""The interface every backend implements, and the registry of backends by name.

A request body is built by a pure function of the Frame and its input images, so `nbpipe show`
prints exactly what a build would send. Image payloads (URLs for HiAPI, base64 for Gemini) are
known only when sending; `show` passes descriptions in their place.
"""

from __future__ import annotations

from collections.abc import Callable

from nbpipe.plan.frame import Frame, InputImage

# frame, one payload string per input image (a URL or base64 data, or a description) → body
BodyBuilder = Callable[[Frame, list[str]], dict]


def describe_image(image: InputImage, style: str) -> str:
    """The stand-in `show` prints where an image payload will go."""
    digest = f"sha256:{image.digest[:12]}" if image.digest else "not rendered yet"
    what = f"frame '{image.ref}'" if image.kind == "frame" else f"file '{image.ref}'"
    return f"<{style} of {what} ({digest})>"
