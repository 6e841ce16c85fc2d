"""A usage or manifest error as one JSON object, for a command run with `--json`: a tool reading
stdout gets a document it can parse either way (the human text still goes to stderr).

`{"error": {"message", "file", "line", "column", "hint"}}`; a manifest error's every diagnostic,
the first one included, is in `"errors"` beside it, in the same shape; `file`, `line` and
`column` are null where the error has no place in a file."""

from __future__ import annotations

import json

from nbpipe.errors import Diagnostic, ManifestError

PLACELESS = {"file": None, "line": None, "column": None}


def _diagnostic(d: Diagnostic) -> dict:
    placed = d.line > 0
    return {"message": d.message, "file": d.file, "line": d.line if placed else None,
            "column": d.col if placed else None, "hint": d.hint}


def error_json(message: str, hint: str | None = None) -> str:
    """A usage error (the command line, or a setting) as one line of JSON."""
    return json.dumps({"error": {"message": message, **PLACELESS, "hint": hint}},
                      ensure_ascii=False)


def manifest_error_json(exc: ManifestError) -> str:
    """A manifest error as one line of JSON: the first diagnostic, and all of them."""
    errors = [_diagnostic(d) for d in exc.diagnostics if d.severity == "error"]
    first = errors[0] if errors else {"message": str(exc), **PLACELESS, "hint": None}
    return json.dumps({"error": first, "errors": errors}, ensure_ascii=False)
