"""How `nbpipe diff` prints: text for a terminal, Markdown for a GitHub job summary, JSON for
tools (its fields are documented in docs/diff-json.md; bump DIFF_VERSION when they change).

Frame names, reasons and prompts come from the manifest of a pull request: in Markdown every
such string is escaped, so it stays text (no links, images or HTML of its own).
"""

from __future__ import annotations

import html
import json
import re
from urllib.parse import quote, urlsplit

from nbpipe.errors import UsageError
from nbpipe.money import fmt_usd, usd
from nbpipe.plan.frame import Frame
from nbpipe.query.diff import Diff, FrameDiff

DIFF_VERSION = 1
MARKDOWN_BUDGET = 900_000  # bytes: GitHub refuses a job summary over 1 MiB; keep room for the plan
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~])")  # what could start markup inside a cell


def summary_line(diff: Diff) -> str:
    parts = [f"{diff.count(s)} {s}" for s in ("changed", "added", "removed") if diff.count(s)]
    if not parts:
        return "no frame differs"
    todo = diff.to_render
    pay = f"{todo} to render, USD {fmt_usd(diff.cost)}" if todo else "nothing to render"
    return f"{' · '.join(parts)} · {pay}"


def diff_text(diff: Diff) -> str:
    head = f"diff against {diff.ref} ({diff.commit[:12]}): {summary_line(diff)}"
    if not diff.frames:
        return head
    width = max(len(f.name) for f in diff.frames)
    lines = [head]
    for f in diff.frames:
        cost = f"USD {fmt_usd(f.cost)}" if f.cost else ""
        cause = "; ".join(f.causes) if f.causes else f.reason
        lines.append(f"  {f.status:<8} {f.name:<{width}}  {f.state:<8} {cost:<10} {cause}"
                     .rstrip())
        lines += [f"      {line}" for line in f.details]
    return _printable("\n".join(lines))


def _printable(text: str) -> str:
    """No terminal control sequences from a pull request's names and prompts."""
    return "".join(c if c.isprintable() or c == "\n" else "?" for c in text)


def diff_json(diff: Diff) -> str:
    doc = {
        "version": DIFF_VERSION,
        "base": {"ref": diff.ref, "commit": diff.commit},
        "summary": {"changed": diff.count("changed"), "added": diff.count("added"),
                    "removed": diff.count("removed"), "to_render": diff.to_render,
                    "cost_usd": usd(diff.cost)},
        "frames": [_frame_json(f) for f in diff.frames],
    }
    return json.dumps(doc, indent=2, ensure_ascii=False)


def _frame_json(f: FrameDiff) -> dict:
    before = None if f.before is None else {
        "key": f.before.key, "digest": f.before.digest, "output": f.before.output,
        "backend": f.before.backend, "model": f.before.model, "cost_usd": f.before.cost_usd}
    after = None if f.after is None else {
        "key": f.after.key, "digest": f.digest, "output": f.output, "backend": f.after.backend,
        "model": f.after.model, "resolution": f.after.params.get("resolution"),
        "cost_usd": usd(f.after.cost)}
    return {"frame": f.name, "status": f.status, "state": f.state, "reason": f.reason,
            "causes": list(f.causes), "details": list(f.details), "cost_usd": usd(f.cost),
            "replaces": f.replaces, "before": before, "after": after}


def diff_markdown(diff: Diff, review_url: str | None = None) -> str:
    """A GitHub job summary: no data: images (GitHub strips them), under 1 MiB."""
    url = _checked_url(review_url) if review_url else None
    lines = [f"### nbpipe diff against `{_code(diff.ref)}` ({diff.commit[:12]})", "",
             f"**{_md(summary_line(diff))}**", ""]
    if url:
        lines += [f"[Review the changed frames before/after]({url})", ""]
    if not diff.frames:
        return "\n".join(lines)
    lines += ["| Frame | Change | Now | Cause | Model | To pay |",
              "|---|---|---|---|---|---:|"]
    size = sum(_bytes(line) + 1 for line in lines)
    details = []
    for n, f in enumerate(diff.frames):
        name = f"[{_name(f.name)}]({url}#{quote(anchor(f.name))})" if url else _name(f.name)
        model = _md(model_label(f.after)) if f.after else ""
        row = (f"| {name} | {f.status} | {f.state} | {_md('; '.join(f.causes) or f.reason)} | "
               f"{model} | {'USD ' + fmt_usd(f.cost) if f.cost else ''} |")
        size += _bytes(row) + 1
        if size > MARKDOWN_BUDGET:
            lines.append(f"| … {len(diff.frames) - n} more | | | | | |")
            break
        lines.append(row)
        if f.details:
            details.append(f"{f.name}:\n" + "\n".join(f"  {line}" for line in f.details))
    text = "\n".join(details)
    if text and size + _bytes(html.escape(text)) < MARKDOWN_BUDGET:
        lines += ["", "<details><summary>Field-level changes</summary>", "",
                  f"<pre>{html.escape(text)}</pre>", "", "</details>"]
    return "\n".join(lines)


def model_label(frame: Frame) -> str:
    resolution = frame.params.get("resolution")
    return f"{frame.model} {resolution}" if resolution else frame.model


def anchor(name: str) -> str:
    """The id of a frame's entry on the review page (and the Markdown links to it)."""
    return "frame-" + re.sub(r"[^A-Za-z0-9_-]", lambda m: f".{ord(m.group()):x}.", name)


def _bytes(text: str) -> int:
    return len(text.encode("utf-8"))  # GitHub's limit counts bytes, and names need not be ASCII


def _md(text: str) -> str:
    """Plain text in a Markdown table cell: no HTML, no links, no cell breaks. GitHub links
    `www.x`, `scheme://x` and `a@b.c` in text by itself: their '.', ':' and '@' are written as
    character references, which it shows as the characters but does not link."""
    flat = " ".join(str(text).split())
    escaped = _MD_SPECIAL.sub(r"\\\1", html.escape(flat, quote=False))
    return _AUTOLINK.sub(lambda m: _REFERENCE[m.group()], escaped)


_AUTOLINK = re.compile(r"(?<=[wW]{3})\.|:(?=//)|@")
_REFERENCE = {".": "&#46;", ":": "&#58;", "@": "&#64;"}


def _name(name: str) -> str:
    """A frame's name in a table cell: a code span, where GitHub makes nothing a link (a
    target may be named like a domain: `www.pay-here.example`)."""
    return "`" + _code(name).replace("|", "\\|") + "`"


def _code(text: str) -> str:
    return " ".join(text.split()).replace("`", "'")


def _checked_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.netloc:
        raise UsageError(f"--review-url must be an http(s) URL, not '{url}'")
    return quote(url, safe=":/?&=%#@+,;~")
