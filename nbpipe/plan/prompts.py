"""Each frame's prompt: its target's template (or inline prompt) rendered with the frame's vars
and bibles, then its variant's merge patch; and its inputs, rendered the same way."""

from __future__ import annotations

import json
from typing import Any

from nbpipe.manifest.declared import FrameSpec, Setting
from nbpipe.manifest.source import Path, did_you_mean
from nbpipe.manifest.templates import Template, TemplateFault, merge_patch
from nbpipe.plan.findings import Findings


class Prompts:
    """Renders prompts; a template that fails is reported against the frames it fails for."""

    findings: Findings
    bible_texts: dict[str, str]
    _inputs: dict[str, Template | TemplateFault]  # an input's text, compiled once

    def __init__(self, findings: Findings, bible_texts: dict[str, str]) -> None:
        self.findings = findings
        self.bible_texts = bible_texts
        self._inputs = {}

    def _context(self, spec: FrameSpec) -> dict[str, Any]:
        target = spec.target
        context = {**spec.vars, "bibles": self.bible_texts, "target": target.name,
                   "frame": spec.name}
        if target.bible:
            context["bible"] = self.bible_texts.get(target.bible, "")
        return context

    def inputs(self, spec: FrameSpec) -> tuple[Setting, ...] | None:
        """The frame's inputs with their Jinja rendered (`master/{{ color }}` → `master/red`);
        None (reported) when one fails."""
        context, rendered = self._context(spec), []
        for setting in spec.inputs:
            text: str = setting.value
            if "{" not in text:
                rendered.append(setting)
                continue
            try:
                compiled = self._compiled(text)
                rendered.append(Setting(compiled.render(context), setting.path))
            except TemplateFault as fault:
                self._fault(spec, fault, "the input", setting.path, context)
                return None
        return tuple(rendered)

    def _compiled(self, text: str) -> Template:
        if text not in self._inputs:
            try:
                self._inputs[text] = Template(text)
            except TemplateFault as fault:
                self._inputs[text] = fault
        found = self._inputs[text]
        if isinstance(found, TemplateFault):
            raise found
        return found

    def render(self, spec: FrameSpec) -> Any:
        """The rendered string or mapping; None (reported) when the template fails."""
        target = spec.target
        context = self._context(spec)
        where = f"template '{target.template_name}'" if target.template_name else "prompt"
        at = target.template_path
        try:
            rendered = target.template.render(context)
            if spec.patch is not None:
                where = f"the patch of variant '{spec.variant_name}'"
                at = (*target.variants_path, spec.variant_name, "patch")
                rendered = merge_patch(rendered, spec.patch.render(context))
        except TemplateFault as fault:
            self._fault(spec, fault, where, at, context)
            return None
        return rendered

    def _fault(self, spec: FrameSpec, fault: TemplateFault, where: str, at: Path,
               context: dict[str, Any]) -> None:
        target = spec.target
        message = f"{where} of {{who}}: {fault}"
        hint = fault.hint
        if fault.missing == "bible" and not target.bible:
            hint = f"target '{target.name}' names no bible: add `bible: NAME`"
        elif fault.missing:
            message = f"undefined variable '{fault.missing}' in {where} ({{who}})"
            hint = did_you_mean(fault.missing, context) or \
                f"add `{fault.missing}` to the vars of target '{target.name}'"
        self.findings.error((*at, *fault.subpath), message, hint, who=("frame", spec.name))


# Shorter repeats cost less to keep per frame than to look for in every prompt.
MIN_SHARED = 256


class SharedText:
    """Long texts many prompts repeat, held once: each bible's text, as it is and as it reads
    inside a JSON-structured prompt. `split` cuts a prompt into parts around them, so frames
    share one copy of their bible instead of each holding its own (the prompt sent is the
    parts joined, unchanged)."""

    pieces: list[str]  # longest first: a bible that contains another is found whole

    def __init__(self, texts: list[str]) -> None:
        found = {text for text in texts if len(text) >= MIN_SHARED}
        found |= {escaped for text in found
                  if (escaped := json.dumps(text, ensure_ascii=False)[1:-1]) != text}
        self.pieces = sorted(found, key=len, reverse=True)

    def split(self, prompt: str) -> tuple[str, ...]:
        """`prompt` as parts whose join is `prompt`; each repeat found is the shared object."""
        parts: list[str] = []
        self._split(prompt, parts)
        return tuple(parts)

    def _split(self, text: str, parts: list[str]) -> None:
        for piece in self.pieces:
            at = text.find(piece) if len(text) >= len(piece) else -1
            if at >= 0:
                self._split(text[:at], parts)
                parts.append(piece)
                self._split(text[at + len(piece):], parts)
                return
        if text:
            parts.append(text)
