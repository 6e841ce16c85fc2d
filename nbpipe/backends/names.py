"""The built-in backends by name (name → the module that defines its SPEC): no imports, so the
no-op fast path (launch.py) may check --backend against them for free. registry.py reads it."""

from __future__ import annotations

from functools import cache  # loaded with pathlib at start-up: free here
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

BUILTIN = {"hiapi": "nbpipe.backends.hiapi", "gemini": "nbpipe.backends.gemini",
           "fal": "nbpipe.backends.fal", "preview": "nbpipe.backends.preview",
           "openai": "nbpipe.backends.openai"}
NAMES = tuple(BUILTIN)
GROUP = "nbpipe.backends"  # the entry-point group third-party packages register backends in


@cache
def installed() -> dict[str, EntryPoint]:
    """The backends installed packages register (the `GROUP` entry points): looked up once per
    process, for the registry and the catalogue both."""
    from importlib.metadata import entry_points

    return {point.name: point for point in entry_points(group=GROUP)}
