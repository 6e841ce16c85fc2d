"""The outside world: one module per provider, each registered once (registry.py), behind one
interface (base.py). Importing this package costs nothing: providers load when first used."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nbpipe.backends.base import Backend
    from nbpipe.plan.frame import Frame
    from nbpipe.settings import Settings


def describe_request(frame: Frame, mimes: list[str] | None = None) -> dict[str, object]:
    """The exact body the frame's backend would send, image payloads described in place;
    `mimes`: each input's media type, by its bytes (Gemini's body names it)."""
    from nbpipe.backends.base import describe_image
    from nbpipe.backends.registry import spec

    found = spec(frame.backend)
    return found.on_lane(found.describe(frame.request, [describe_image(image, found.payload_style)
                                                        for image in frame.inputs], mimes),
                         frame.lane)


def default_jobs(name: str) -> int:
    """Frames in flight on `name`, unless the manifest or -j says: the catalogue's figure."""
    from nbpipe.catalog import builtin

    return builtin().jobs().get(name, 4)


def open_backend(name: str, jobs: int = 4, rpm: int | None = None,
                 settings: Settings | None = None) -> Backend:
    """A ready backend by name, with one pooled HTTP client, configured from `settings` (the
    command's when not given); UsageError if it has no key."""
    from nbpipe.backends.registry import spec
    from nbpipe.settings import current

    return spec(name).open(jobs, rpm, settings or current())


def endpoint(frame: Frame) -> str:
    from nbpipe.backends.registry import spec

    return spec(frame.backend).endpoint(frame.model)
