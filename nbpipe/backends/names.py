"""The built-in backends by name (name → the module that defines its SPEC): no imports, so the
no-op fast path (launch.py) may check --backend against them for free. registry.py reads it."""

BUILTIN = {"hiapi": "nbpipe.backends.hiapi", "gemini": "nbpipe.backends.gemini",
           "preview": "nbpipe.backends.preview"}
NAMES = tuple(BUILTIN)
GROUP = "nbpipe.backends"  # the entry-point group third-party packages register backends in
