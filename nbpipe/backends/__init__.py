"""The outside world: one module per backend, behind one interface (see base.py)."""

from __future__ import annotations

from nbpipe.backends import gemini, hiapi, preview
from nbpipe.backends.base import Backend, describe_image
from nbpipe.catalog import builtin
from nbpipe.plan.frame import Frame

_BUILDERS = {
    "hiapi": (hiapi.create_body, hiapi.PAYLOAD_STYLE),
    "gemini": (gemini.generate_body, gemini.PAYLOAD_STYLE),
    "preview": (preview.render_request, preview.PAYLOAD_STYLE),
}


def describe_request(frame: Frame, mimes: list[str] | None = None) -> dict:
    """The exact body the frame's backend would send, image payloads described in place;
    `mimes`: each input's media type, by its bytes (Gemini's body names it)."""
    build, style = _BUILDERS[frame.backend]
    described = [describe_image(image, style) for image in frame.inputs]
    if frame.backend == "gemini":
        return gemini.generate_body(frame.request, described, mimes)
    return build(frame.request, described)


DEFAULT_JOBS = builtin().jobs()  # frames in flight per backend, unless the manifest says


def open_backend(name: str, jobs: int = 4, rpm: int | None = None) -> Backend:
    """A ready backend by name, with one pooled HTTP client; UsageError if it has no key."""
    if name == "preview":
        return preview.PreviewBackend()
    import httpx

    settings = hiapi.HiApiSettings.from_env() if name == "hiapi" else \
        gemini.GeminiSettings.from_env()
    client = httpx.AsyncClient(
        timeout=httpx.Timeout(connect=15.0, read=120.0, write=60.0, pool=None),
        limits=httpx.Limits(max_connections=max(4, jobs * 2)),
        follow_redirects=False)  # see HttpBackend.exchange and http.download
    from nbpipe.backends.http import RateLimiter

    if name == "hiapi":
        return hiapi.HiApiBackend(settings, client, RateLimiter(rpm))
    return gemini.GeminiBackend(settings, client, RateLimiter(rpm))


def endpoint(frame: Frame) -> str:
    if frame.backend == "hiapi":
        return "POST /v1/tasks"
    if frame.backend == "gemini":
        return f"POST /v1beta/models/{frame.model}:generateContent"
    return "local preview renderer (offline)"
