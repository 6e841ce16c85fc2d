"""What to do about a YAML syntax error: the parser says what broke, a prompt writer needs to
know which slip made it (a colon in an unquoted prompt, a tab, a key without its colon)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

_KEY = re.compile(r"[A-Za-z_][\w.-]*")  # the keys a manifest has; anchored, no backtracking


@dataclass(frozen=True)
class SyntaxHint:
    """Where to point (1-based) and what to say about one YAML syntax error."""

    line: int
    col: int
    message: str
    hint: str | None


def explain(problem: str, line: int, col: int, context_line: int | None,
            lines: list[str]) -> SyntaxHint:
    """`problem` as the parser said it at (line, col); `context_line` where the parser started
    the construct it could not finish."""
    text = lines[line - 1] if 0 < line <= len(lines) else ""
    if "'\\t'" in problem:
        return SyntaxHint(line, col, "YAML syntax: a tab character",
                          "YAML indents with spaces only: replace the tab with spaces")
    if problem.startswith("could not find expected ':'") and context_line:
        missing = _missing_colon(context_line, lines)
        if missing:
            return missing
    if problem.startswith("mapping values are not allowed"):
        quoted = _quote_value(text, col)
        if quoted:
            return SyntaxHint(line, col, f"YAML syntax: {problem}", quoted)
        previous = next((n for n in range(line - 1, 0, -1)
                         if lines[n - 1].strip() and not lines[n - 1].lstrip().startswith("#")), 0)
        missing = _missing_colon(previous, lines) if previous else None
        if missing:
            return missing
    return SyntaxHint(line, col, f"YAML syntax: {problem}", None)


def _quote_value(text: str, col: int) -> str | None:
    """`prompt: Scene: Mira` — a second ': ' on a line whose key already had one."""
    body = text.lstrip()
    body = body[1:].lstrip() if body.startswith("- ") else body
    start = len(text) - len(body)
    key = _KEY.match(body)
    if not key or not body[key.end():].startswith(": ") or start + key.end() + 1 >= col:
        return None
    key, value = key.group(), body[key.end() + 2:].strip()
    if value.startswith(("{", "[", "&", "*", "!", "'", '"')):
        return None  # a flow collection or a tag: quoting it whole is not the fix
    return (f"a value holding ': ' must be quoted: `{key}: {json.dumps(value, ensure_ascii=False)}`"
            " (prompts often need quotes)")


def _missing_colon(line: int, lines: list[str]) -> SyntaxHint | None:
    text = lines[line - 1] if 0 < line <= len(lines) else ""
    body = text.lstrip()
    key = _KEY.match(body)
    rest = body[key.end():] if key else ""
    if not key or not rest[:1].isspace() or ":" in rest or "#" in rest:
        return None
    key, value = key.group(), rest.strip()
    fix = f"{key}: {value}" if value else f"{key}:"
    return SyntaxHint(line, len(text) - len(body) + 1, f"YAML syntax: '{key}' has no ':' after it",
                      f"write `{fix}` (the parser noticed only on the next line)")
