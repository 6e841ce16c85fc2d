"""JSON text from untrusted places (a lock in a pull request, a shared cache's records).

`json.loads` accepts more than the rest of nbpipe can use: nesting deep enough to exhaust the
stack (RecursionError, a crash) and unpaired surrogate escapes (`"\\ud800"`), which no UTF-8
writer can print later (the diff's Markdown and JSON, the review page). Both are refused here
as ValueError, the error every caller already treats as "not a valid document".
"""

from __future__ import annotations

import json
import re

_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def loads(text: str | bytes) -> object:
    """The JSON value of `text`; ValueError when it is not one nbpipe can use."""
    try:
        doc = json.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    escaped = _SURROGATE_ESCAPE.search(text if isinstance(text, str) else text.decode("utf-8"))
    if escaped and not encodable(doc):  # only an escape makes one: skip the walk of a big lock
        raise ValueError("a string holds an unpaired surrogate escape (like \\ud800)")
    return doc


def encodable(value: object) -> bool:
    """Whether every string in `value` can be written as UTF-8."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except (UnicodeEncodeError, RecursionError, TypeError, ValueError):
        return False
    return True
