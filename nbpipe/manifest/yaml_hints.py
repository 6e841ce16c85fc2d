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
    if problem.startswith("expected ',' or '}', but got ':'"):
        quoted = _quote_flow_value(text, col)
        if quoted:
            return SyntaxHint(line, col, f"YAML syntax: {problem}", quoted)
    previous = next((n for n in range(line - 1, 0, -1)
                     if lines[n - 1].strip() and not lines[n - 1].lstrip().startswith("#")), 0)
    if problem.startswith("expected <block end>, but found") and context_line:
        return _misaligned(line, previous, context_line, lines)
    if problem.startswith("mapping values are not allowed"):
        quoted = _quote_value(text, col)
        if quoted:
            return SyntaxHint(line, col, f"YAML syntax: {problem}", quoted)
        missing = _missing_colon(previous, lines) if previous else None
        if missing:
            return missing
        deeper = _under_a_value(line, previous, lines)
        if deeper:
            return deeper
    return SyntaxHint(line, col, f"YAML syntax: {problem}", None)


def _indent(text: str) -> int:
    """The 1-based column where a line's content starts."""
    return len(text) - len(text.lstrip()) + 1


def _key(text: str) -> str:
    found = _KEY.match(text.lstrip().removeprefix("- "))
    return found.group() if found else text.strip()[:20]


def _misaligned(line: int, previous: int, context: int, lines: list[str]) -> SyntaxHint:
    """A key indented to a column no mapping around it uses."""
    text = lines[line - 1]
    col, key = _indent(text), _key(text)
    columns = {_indent(lines[n - 1]): n for n in (previous, context) if 0 < n < line}
    choices = " or ".join(f"column {c} (like '{_key(lines[n - 1])}' on line {n})"
                          for c, n in sorted(columns.items()) if c != col)
    return SyntaxHint(line, col, f"YAML syntax: '{key}' on line {line} is indented to column "
                      f"{col}, which no key around it uses",
                      f"YAML reads nesting from indentation: move it to {choices}" if choices
                      else "line it up with the keys of the mapping it belongs to")


def _under_a_value(line: int, previous: int, lines: list[str]) -> SyntaxHint | None:
    """`model: M` then a deeper `output: x`: the key reads as more of the value."""
    above, text = lines[previous - 1] if previous else "", lines[line - 1]
    key = _KEY.match(above.lstrip())
    if not key or not above.lstrip()[key.end():].startswith(": ") or \
            _indent(text) <= _indent(above):
        return None
    return SyntaxHint(line, _indent(text), f"YAML syntax: '{_key(text)}' on line {line} is "
                      f"indented under '{key.group()}', which already has a value",
                      f"line it up with '{key.group()}' (column {_indent(above)})")


def _quote_value(text: str, col: int) -> str | None:
    """`prompt: Scene: Mira` — a second ': ' on a line whose key already had one."""
    body = text.lstrip()
    body = body[1:].lstrip() if body.startswith("- ") else body
    start = len(text) - len(body)
    found = _KEY.match(body)
    if not found or not body[found.end():].startswith(": ") or start + found.end() + 1 >= col:
        return None
    key, value = found.group(), body[found.end() + 2:].strip()
    if value.startswith(("{", "[", "&", "*", "!", "'", '"')):
        return None  # a flow collection or a tag: quoting it whole is not the fix
    return (f"a value holding ': ' must be quoted: `{key}: {json.dumps(value, ensure_ascii=False)}`"
            " (prompts often need quotes)")


def missing_colon(body: str) -> tuple[str, str] | None:
    """(key, what to write) when `body` reads as a key without its colon: `prompt "Mira"`."""
    key = _KEY.match(body)
    rest = body[key.end():] if key else ""
    if not key or not rest[:1].isspace() or ":" in rest or "#" in rest:
        return None
    value = rest.strip()
    return key.group(), f"{key.group()}: {value}" if value else f"{key.group()}:"


def _missing_colon(line: int, lines: list[str]) -> SyntaxHint | None:
    text = lines[line - 1] if 0 < line <= len(lines) else ""
    body = text.lstrip()
    slip = missing_colon(body)
    if slip is None:
        return None
    return SyntaxHint(line, len(text) - len(body) + 1,
                      f"YAML syntax: '{slip[0]}' has no ':' after it",
                      f"write `{slip[1]}` (the parser noticed only on the next line)")


def _quote_flow_value(text: str, col: int) -> str | None:
    """`{mood: calm, scene: Mira: dawn}` — a second ':' inside one entry of a flow mapping."""
    start = max(text.rfind("{", 0, col - 1), text.rfind(",", 0, col - 1)) + 1
    end = min((i for i in (text.find(",", col), text.find("}", col)) if i >= 0), default=len(text))
    entry = text[start:end].strip()
    key = _KEY.match(entry)
    if not start or not key or not entry[key.end():].startswith(": "):
        return None
    value = entry[key.end() + 2:].strip()
    if value.startswith(("{", "[", "'", '"')):
        return None
    return (f"a value holding ': ' must be quoted: `{key.group()}: "
            f"{json.dumps(value, ensure_ascii=False)}` (prompts often need quotes)")
