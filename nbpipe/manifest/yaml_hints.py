"""What to do about a YAML syntax error: the parser says what broke, a prompt writer needs to
know which slip made it (a colon in an unquoted prompt, a tab, a key without its colon)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

_KEY_VALUE = re.compile(r"^(\s*(?:-\s+)?)([^\s:#'\"][^:#]*?):\s+(.*?)\s*$")
_NO_COLON = re.compile(r"^(\s*)([A-Za-z_][\w.-]*)\s+([^:#]*?)\s*$")


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
    match = _KEY_VALUE.match(text)
    if not match or len(match.group(1)) + len(match.group(2)) + 1 >= col:
        return None
    key, value = match.group(2), match.group(3)
    if value.startswith(("{", "[", "&", "*", "!")):
        return None  # a flow collection or a tag: quoting it whole is not the fix
    return (f"a value holding ': ' must be quoted: `{key}: {json.dumps(value, ensure_ascii=False)}`"
            " (prompts often need quotes)")


def _missing_colon(line: int, lines: list[str]) -> SyntaxHint | None:
    match = _NO_COLON.match(lines[line - 1]) if 0 < line <= len(lines) else None
    if not match:
        return None
    indent, key, value = match.groups()
    fix = f"{key}: {value}" if value else f"{key}:"
    return SyntaxHint(line, len(indent) + 1, f"YAML syntax: '{key}' has no ':' after it",
                      f"write `{fix}` (the parser noticed only on the next line)")
