"""Frame specs (declared) → Frames (resolved): backend, model, prompt as sent, params, inputs,
output path and price, each checked against the catalogue before anything is sent.

The work is split by what it resolves: `targets` (backend, model, params: once per target),
`inputs`, `prompts`, `outputs`, and `checks` across frames; `findings` collects every error.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from nbpipe.catalog import Catalog
from nbpipe.catalog import today as catalog_today
from nbpipe.errors import Diagnostic
from nbpipe.manifest.declared import Declared, FrameSpec, ResolvedTarget
from nbpipe.manifest.source import SourceMap
from nbpipe.manifest.templates import prompt_text
from nbpipe.plan.checks import check_graph, check_unique
from nbpipe.plan.findings import Findings
from nbpipe.plan.frame import Frame, Request, canonical_json
from nbpipe.plan.inputs import Inputs
from nbpipe.plan.outputs import Outputs
from nbpipe.plan.paths import ProjectDir
from nbpipe.plan.prompts import Prompts, SharedText
from nbpipe.plan.targets import TargetPlan, Targets

# Where a model's prompt limit is unconfirmed: about its 32k-token input window, so a 50 MB
# prompt is refused at load instead of being sent (and billed, or answered 400) at build.
MAX_PROMPT = 131_072


def _sha(data: str | bytes) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


class Resolver:
    """Turns a Declared manifest into Frames, collecting every located error on the way."""

    declared: Declared
    source: SourceMap
    uploads: bool  # a remote cache can turn local images into https URLs
    project: ProjectDir  # its `reads` are the files whose bytes went into keys
    findings: Findings
    warnings: dict[Diagnostic, None]  # for the user; they fail nothing
    targets: Targets
    prompts: Prompts
    shared: SharedText
    outputs: Outputs
    bible_sha: dict[str, str]
    template_sha: dict[str, str]

    def __init__(self, declared: Declared, catalog: Catalog, backend: str | None = None,
                 uploads: bool = False, today: dt.date | None = None,
                 lane: str | None = None) -> None:
        when = today or catalog_today()  # lifecycles are judged on this date
        self.declared = declared
        self.source = declared.loaded.source
        self.uploads = uploads
        self.project = ProjectDir(declared.loaded.root)
        self.findings = Findings(self.source, declared.diags)
        self.warnings = self.findings.warnings
        self.outputs = Outputs(declared, self.project, self.findings)
        inputs = Inputs(declared, catalog, self.findings, self.outputs, when, uploads)
        self.targets = Targets(declared, catalog, self.findings, inputs, when, backend, lane)
        bible_texts = {name: b.text for name, b in declared.bibles.items()}
        self.prompts = Prompts(self.findings, bible_texts)
        self.shared = SharedText(list(bible_texts.values()))
        self.bible_sha = {name: _sha(text) for name, text in bible_texts.items()}
        self.template_sha = {name: _sha(canonical_json(source)) for name, source
                             in declared.loaded.manifest.templates.items()}

    def resolve(self) -> list[Frame]:
        frames: list[Frame] = []
        planned: list[tuple[str, TargetPlan]] = []
        for spec in self.declared.frames:
            # Every check runs on every frame, whatever else failed: one pass finds it all.
            inputs = self.prompts.inputs(spec)
            plan = self.targets.plan(spec, inputs) if inputs is not None else None
            rendered = self.prompts.render(spec)
            if plan is not None:
                planned.append((spec.name, plan))
            output = None if spec.target.broken else \
                self.outputs.path(spec, plan.ext if plan else "png",
                                  {"model": plan.spec.name, **plan.params} if plan else None)
            if plan and rendered is not None and output is not None:
                frame = self._frame(spec, plan, rendered, output)
                if frame is not None:
                    frames.append(frame)
        check_graph(self.targets.plans, self.findings, self.uploads, planned)
        check_unique(self.declared, frames, self.findings)
        self.findings.raise_any()
        return frames

    def _frame(self, spec: FrameSpec, plan: TargetPlan, rendered: Any,
               output: str) -> Frame | None:
        target = spec.target
        prompt = prompt_text(rendered)
        limit = plan.spec.prompt_max or MAX_PROMPT
        if len(prompt) > limit:
            self.findings.error(target.template_path, f"the prompt of {{who}} has "
                                f"{len(prompt):,} characters; {plan.spec.name} takes at most "
                                f"{limit:,}", "shorten the template, vars or bible",
                                who=("frame", spec.name),
                                key=f"prompt too long for {plan.spec.name}")
            return None
        inputs = tuple(i for i, _ in plan.inputs)
        return Frame(
            name=spec.name, target=target.name, backend=plan.backend, model=plan.spec.name,
            parts=self.shared.split(prompt), params=plan.params, inputs=inputs, output=output,
            cost=plan.cost, lane=plan.lane, is_json=isinstance(rendered, dict),
            bible=target.bible, template=target.template_name, vars=spec.vars,
            markers=tuple(self.declared.bibles[target.bible].markers) if target.bible else (),
            sources=self._sources(target),
            key=Request(plan.backend, plan.spec.name, prompt, plan.params,
                        tuple(i.digest for i in inputs)).key)

    def _sources(self, target: ResolvedTarget) -> dict[str, str]:
        sources = {}
        if target.bible:
            sources["bible"] = self.bible_sha[target.bible]
        if target.template_name:
            sources["template"] = self.template_sha[target.template_name]
        return sources
