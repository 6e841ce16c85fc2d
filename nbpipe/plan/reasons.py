"""Why a frame is stale: the current request against the one recorded with the locked take.

Root causes come first (bible 'mira' changed, template 'product' changed, var 'scene' changed),
then what they did to the request: backend, model, each parameter, the prompt (JSON path by JSON
path, or a word diff for text), and each input image (through which upstream frame).
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from typing import Any

from nbpipe.catalog import builtin, today
from nbpipe.plan.frame import Frame

_MISSING = object()


@dataclass(frozen=True)
class Change:
    """One difference; `short` fits the plan table, `lines` are what explain prints. A `cause`
    is a root cause (a bible, template or var that changed, or an input image), as opposed to
    what it did to the request."""

    short: str
    lines: tuple[str, ...]
    cause: bool = False


def _show(value: Any) -> str:
    return "(absent)" if value is _MISSING else json.dumps(value, ensure_ascii=False)


def changes(frame: Frame, old: dict[str, Any]) -> list[Change]:
    out = _root_causes(frame, old)
    if old.get("backend") != frame.backend:
        out.append(Change("backend changed", (f"backend: {old.get('backend')} → {frame.backend}",)))
    if old.get("model") != frame.model:
        out.append(_model_change(str(old.get("model")), frame))
    params = _param_changes(old.get("params") or {}, frame.params)
    if params:
        names = ", ".join(p for p, _ in params)
        out.append(Change(f"params changed ({names})", tuple(line for _, line in params)))
    if old.get("prompt") != frame.prompt:
        out.append(Change("prompt changed", tuple(_prompt_lines(old, frame))))
    out.extend(_input_changes(old.get("inputs") or [], frame))
    return out


def _model_change(old: str, frame: Frame) -> Change:
    """A model change; a migration off a shut-down model says so (it is why the frame renders)."""
    line = f"model changed: {old} → {frame.model}"
    catalog = builtin()
    gone = catalog.get(frame.backend, old)
    when = today()
    if gone is not None and gone.shut_down(when):
        chain = [spec.name for spec in catalog.successor(gone, when)]
        why = f"{old} was shut down on {gone.shutdown}"
        line += f" ({why}; {frame.model} is its replacement)" if frame.model in chain \
            else f" ({why})"
        return Change(f"model changed ({old} retired)", (line,))
    return Change("model changed", (line,))


def short_reason(found: list[Change]) -> str:
    """The first change: root causes come first, and the rest usually follow from it."""
    return found[0].short if found else "request changed"


def _root_causes(frame: Frame, old: dict[str, Any]) -> list[Change]:
    out = []
    old_sources = old.get("sources") or {}
    if frame.bible and old.get("bible") == frame.bible and \
            old_sources.get("bible") != frame.sources.get("bible"):
        out.append(Change(f"bible '{frame.bible}' changed", (f"bible '{frame.bible}' changed",),
                          True))
    elif old.get("bible") != frame.bible:
        out.append(Change("bible changed", (f"bible: {old.get('bible')} → {frame.bible}",), True))
    if frame.template and old.get("template") == frame.template and \
            old_sources.get("template") != frame.sources.get("template"):
        out.append(Change(f"template '{frame.template}' changed",
                          (f"template '{frame.template}' changed",), True))
    old_vars = old.get("vars") or {}
    for name in sorted(set(old_vars) | set(frame.vars)):
        before, after = old_vars.get(name, _MISSING), frame.vars.get(name, _MISSING)
        if before != after:
            out.append(Change(f"var '{name}' changed",
                              (f"var '{name}': {_value_diff(before, after)}",), True))
    return out


def _value_diff(before: Any, after: Any) -> str:
    if isinstance(before, str) and isinstance(after, str) and max(len(before), len(after)) > 60:
        return word_diff(before, after)
    return f"{_show(before)} → {_show(after)}"


def _param_changes(old: dict[str, Any], new: dict[str, str]) -> list[tuple[str, str]]:
    return [(name, f"{name}: {_show(old.get(name, _MISSING))} → {_show(new.get(name, _MISSING))}")
            for name in sorted(set(old) | set(new))
            if old.get(name, _MISSING) != new.get(name, _MISSING)]


def _prompt_lines(old: dict[str, Any], frame: Frame) -> list[str]:
    before, after = old.get("prompt_json"), frame.prompt_json
    if isinstance(before, dict) and isinstance(after, dict):
        lines = [f"prompt {path}: {_value_diff(a, b)}"  # a long leaf (a bible): word diff
                 for path, a, b in json_diff(before, after)]
        if lines:
            return lines
        return ["prompt: same fields, different JSON text (key order?)"]
    return [f"prompt: {word_diff(str(old.get('prompt', '')), frame.prompt, what='prompt')}"]


def json_diff(old: Any, new: Any, path: str = "") -> list[tuple[str, Any, Any]]:
    """(dotted path, old, new) for every leaf that differs; lists compare by index."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in [*old, *[k for k in new if k not in old]]:
            child = f"{path}.{key}" if path else str(key)
            out += json_diff(old.get(key, _MISSING), new.get(key, _MISSING), child)
        return out
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [d for i, (a, b) in enumerate(zip(old, new, strict=True))
                for d in json_diff(a, b, f"{path}[{i}]")]
    return [] if old == new else [(path or "(root)", old, new)]


# SequenceMatcher is quadratic in the words it compares (a 30,000-word prompt took 54 s): it
# only sees what differs once the common head and tail are cut off, and only up to this many
# word pairs; past that the diff says "long ... changed" (a reason, not a full diff).
MAX_DIFF_PAIRS = 200_000


def _common_ends(a: list[str], b: list[str]) -> tuple[int, int]:
    """How many words the two share at their start, and then at their end (linear)."""
    head = 0
    limit = min(len(a), len(b))
    while head < limit and a[head] == b[head]:
        head += 1
    tail = 0
    while tail < limit - head and a[-1 - tail] == b[-1 - tail]:
        tail += 1
    return head, tail


def _too_long(a: list[str], b: list[str]) -> int | None:
    """The first differing word's index when the middle is past MAX_DIFF_PAIRS, else None."""
    head, tail = _common_ends(a, b)
    if (len(a) - head - tail) * (len(b) - head - tail) > MAX_DIFF_PAIRS:
        return head
    return None


def word_ops(old: str, new: str) -> list[tuple[str, str]]:
    """The word diff as (op, words) runs, op in "equal", "delete", "insert"; a middle too long
    to diff word by word is one delete and one insert."""
    a, b = old.split(), new.split()
    head, tail = _common_ends(a, b)
    mid_a, mid_b = a[head:len(a) - tail], b[head:len(b) - tail]
    out: list[tuple[str, str]] = [("equal", " ".join(a[:head]))] if head else []
    if len(mid_a) * len(mid_b) > MAX_DIFF_PAIRS:
        out += [("delete", " ".join(mid_a))] if mid_a else []
        out += [("insert", " ".join(mid_b))] if mid_b else []
    else:
        out += _matched_ops(mid_a, mid_b)
    return out + ([("equal", " ".join(a[len(a) - tail:]))] if tail else [])


def _matched_ops(a: list[str], b: list[str]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op == "equal":
            out.append(("equal", " ".join(a[i1:i2])))
            continue
        if i2 > i1:
            out.append(("delete", " ".join(a[i1:i2])))
        if j2 > j1:
            out.append(("insert", " ".join(b[j1:j2])))
    return out


def word_diff(old: str, new: str, context: int = 3, what: str = "text") -> str:
    """A compact word diff: unchanged runs shortened to `context` words, [-old-] {+new+}; a
    change too long to diff is named with its size (`what` says which text)."""
    words_new = new.split()
    first = _too_long(old.split(), words_new)
    if first is not None:
        return f"long {what} changed ({len(words_new)} words; they differ from word {first + 1})"
    ops = word_ops(old, new)
    parts: list[str] = []
    for n, (op, text) in enumerate(ops):
        if op == "delete":
            parts.append(f"[-{text}-]")
        elif op == "insert":
            parts.append("{+" + text + "+}")
        else:
            words = text.split()
            if len(words) > 2 * context:
                lead = words[:context] if parts else []
                tail = words[-context:] if n < len(ops) - 1 else []
                words = [*lead, "…", *tail]
            parts.extend(words)
    return " ".join(p for p in parts if p)


def _input_changes(old_inputs: list[Any], frame: Frame) -> list[Change]:
    out = []
    old_by_ref = {i.get("ref"): i.get("digest") for i in old_inputs if isinstance(i, dict)}
    for image in frame.inputs:
        before = old_by_ref.get(image.ref, _MISSING)
        if before == image.digest:
            continue
        what = f"upstream frame '{image.ref}'" if image.kind == "frame" else f"file '{image.ref}'"
        if before is _MISSING:
            out.append(Change(f"input '{image.ref}' added", (f"input added: {what}",), True))
            continue
        why = " (the upstream's pinned image changed: re-rendered or re-pinned)" \
            if image.kind == "frame" else ""
        now = f"{image.digest[:12]}{why}" if image.digest else "not rendered yet"
        out.append(Change(f"input '{image.ref}' changed", (
            f"input {what}: sha256 {str(before)[:12]} → {now}",), True))
    current = {i.ref for i in frame.inputs}
    for ref in old_by_ref:
        if ref not in current:
            out.append(Change(f"input '{ref}' removed", (f"input removed: '{ref}'",), True))
    return out
