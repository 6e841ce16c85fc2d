"""Declared targets → resolved targets: each `extends` chain and the `defaults` (and a profile's
settings) folded in, then checked: template or prompt, bible, vars, matrix, variants, output.

Still the declared tense: every problem becomes a located Diagnostic in the shared list.
"""

from __future__ import annotations

import fnmatch
import re
import string
from typing import Any

from nbpipe.errors import Diagnostic
from nbpipe.manifest.declared import ResolvedTarget, Setting
from nbpipe.manifest.load import Loaded
from nbpipe.manifest.models import Bible, Profile, Target
from nbpipe.manifest.patches import PatchProblem, checked_patch
from nbpipe.manifest.source import Path, did_you_mean
from nbpipe.manifest.templates import Template, TemplateFault
from nbpipe.relpath import fold_name

PARAMS = ("backend", "model", "aspect_ratio", "resolution", "output_format", "lane", "output",
          "quality", "background")
DEFAULT_OUTPUT = "out/{frame}.{ext}"
# What an output pattern may name besides matrix axes: the last three are the frame's request
# settings, as sent (channel crops in folders: `out/{aspect_ratio}/{frame}.{ext}`).
OUTPUT_FIELDS = ("frame", "target", "variant", "ext", "profile", "model", "aspect_ratio",
                 "resolution")
RESERVED_VARS = ("bible", "bibles", "target", "frame")
# A matrix axis is a template variable and an output placeholder: it may not shadow either.
RESERVED_AXES = (*RESERVED_VARS, "variant", "ext", "profile")
PROFILE_SETTINGS = ("backend", "model", "resolution", "aspect_ratio", "lane", "quality")
MAX_NAME = 100  # characters of a target name (it becomes a file name: 255 bytes at most)
MAX_EXTENDS = 32  # links in an `extends` chain: deeper is a mistake, or an attempt to stall CI
_TARGET_NAME = re.compile(r"^\w[\w.-]*$")
_UNSAFE = re.compile(r"[^\w.-]+")  # what a matrix value may not keep in names and paths
_BAD_PART = re.compile(r"[/\\\x00-\x1f]")


def resolve_targets(loaded: Loaded, templates: dict[str, Template], bibles: dict[str, Bible],
                    diags: list[Diagnostic], profile: str | None = None,
                    section: str | None = None) -> dict[str, ResolvedTarget]:
    """Every target that has a template, resolved under a profile (None: the default) and
    output section; problems are appended to `diags`."""
    folding = _Inheritance(loaded, diags, profile, section)
    checking = _Checks(loaded, diags, templates, bibles)
    resolved: dict[str, ResolvedTarget] = {}
    for name in loaded.manifest.targets:
        merged = folding.merged(name)
        target = checking.target(name, merged) if merged is not None else None
        if target is not None:
            resolved[name] = target
    return resolved


def compile_template(source: Any, path: Path, loaded: Loaded,
                     diags: list[Diagnostic]) -> Template | None:
    try:
        return Template(source)
    except TemplateFault as fault:
        diags.append(loaded.source.diagnostic((*path, *fault.subpath), str(fault), fault.hint))
        return None


def name_part(value: Any) -> str:
    """A matrix value as it appears in frame names and output paths: booleans as true/false,
    every run of characters other than letters, digits, '_', '.' and '-' as one '-'
    (`golden hour` → `golden-hour`, `9:16` → `9-16`). Prompts get the value itself."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return _UNSAFE.sub("-", str(value)).strip("-")


def _name_part_ok(part: str) -> bool:
    return bool(part) and part not in (".", "..") and not _BAD_PART.search(part)


def _available(kind: str, names: Any) -> str:
    return f"the manifest defines no {kind}" if not names else \
        f"defined {kind}: {', '.join(sorted(names))}"


class _Located:
    """A step that reports located problems into the shared list."""

    loaded: Loaded
    diags: list[Diagnostic]

    def error(self, path: Path, message: str, hint: str | None = None,
              at_key: bool = False) -> None:
        self.diags.append(self.loaded.source.diagnostic(path, message, hint, at_key))


class _Inheritance(_Located):
    """Folds a target's settings: `defaults`, then its `extends` chain root first, with the
    profile's settings over or under them (`wins`), and the output moved to its section."""

    profile_name: str  # "" when there is no profile
    profile: Profile | None
    section: str | None  # the output folder: the profile, and any backend override
    targets: dict[str, Target]

    def __init__(self, loaded: Loaded, diags: list[Diagnostic], profile: str | None,
                 section: str | None) -> None:
        self.loaded = loaded
        self.diags = diags
        self.profile_name = profile or ""
        self.profile = loaded.manifest.profiles.get(profile) if profile else None
        self.section = section
        self.targets = loaded.manifest.targets

    def merged(self, name: str) -> dict[str, Setting] | None:
        """The target's folded settings; None (reported) for a bad name or chain."""
        path = ("targets", name)
        if not _TARGET_NAME.match(name):
            self.error(path, f"target name '{name}' is not usable in frame names",
                       "use letters, digits, '_', '.' and '-' (no '/' or spaces)", at_key=True)
            return None
        if len(name) > MAX_NAME:
            self.error(path, f"target name '{name[:40]}…' is longer than {MAX_NAME} characters",
                       "it becomes a file name; shorten it", at_key=True)
            return None
        chain = self._chain(name)
        return None if chain is None else self._merge(chain)

    def _chain(self, name: str) -> list[str] | None:
        """The extends chain from `name` up to its root ancestor, or None on a cycle or typo."""
        chain = [name]
        while (parent := self.targets[chain[-1]].extends) is not None:
            at = ("targets", chain[-1], "extends")
            if parent in self.loaded.broken_targets:
                return None  # that target's own error is reported
            if parent not in self.targets:
                self.error(at, f"target '{chain[-1]}' extends unknown target '{parent}'",
                           did_you_mean(parent, self.targets))
                return None
            if len(chain) > MAX_EXTENDS:
                self.error(at, f"target '{name}' has an extends chain longer than {MAX_EXTENDS}",
                           "inherit from fewer levels; use defaults for what all share")
                return None
            if parent in chain:
                members = chain[chain.index(parent):]
                if name == min(members, key=list(self.targets).index):  # report a cycle once
                    loop = " -> ".join([*chain, parent])
                    self.error(at, f"extends cycle: {loop}", "a target cannot inherit from itself")
                return None
            chain.append(parent)
        return chain

    def _merge(self, chain: list[str]) -> dict[str, Setting]:
        """Fold the chain, root first: later targets override fields; `vars` merge by key."""
        merged: dict[str, Setting] = {}
        defaults = self.loaded.manifest.defaults
        for key in PARAMS:
            if getattr(defaults, key) is not None:
                merged[key] = Setting(getattr(defaults, key), ("defaults", key))
        overrides = self._profile_settings(chain[0])
        wins = bool(self.profile and self.profile.wins)
        if not wins:
            merged.update(overrides)
        variables: dict[str, Any] = {}
        for name in reversed(chain):
            target = self.targets[name]
            for key in target.model_fields_set - {"extends"}:
                value = getattr(target, key)
                if key == "vars" and value:
                    variables.update(value)
                elif value is not None:
                    merged[key] = Setting(value, ("targets", name, key))
                elif key != "vars":  # an explicit `null` unsets what defaults or a parent set
                    merged.pop(key, None)
        if wins:
            merged.update(overrides)
        merged["vars"] = Setting(variables, ("targets", chain[0], "vars"))
        if self.section:
            merged["output"] = self._profile_output(merged.get("output"), self.section)
        return merged

    def _profile_settings(self, target: str) -> dict[str, Setting]:
        profile = self.profile
        if profile is None or (profile.targets is not None and
                               not any(fnmatch.fnmatchcase(target, g) for g in profile.targets)):
            return {}
        return {key: Setting(getattr(profile, key), ("profiles", self.profile_name, key))
                for key in PROFILE_SETTINGS if getattr(profile, key) is not None}

    def _profile_output(self, output: Setting | None, section: str) -> Setting:
        """Each profile's outputs in their own folder, unless the profile names a pattern (a
        backend override always gets its own: `{profile}` is filled with the section name)."""
        named = self.profile.output if self.profile is not None else None
        own = Setting(named, ("profiles", self.profile_name, "output"))
        if named is not None and section == self.profile_name:
            return own
        base = own if named is not None \
            else output or Setting(DEFAULT_OUTPUT, ("defaults", "output"))
        folder = section.replace("{", "{{").replace("}", "}}")
        pattern = base.value
        if "{profile}" in pattern:
            return base
        value = pattern.replace("{frame}", folder + "/{frame}", 1) if "{frame}" in pattern \
            else f"{folder}/{pattern}"
        return Setting(value, base.path)


class _Checks(_Located):
    """Checks a target's folded settings and compiles what it renders with."""

    templates: dict[str, Template]  # the manifest's `templates:`, those that compiled
    bibles: dict[str, Bible]
    reported_outputs: set[tuple[Path, tuple[str, ...]]]

    def __init__(self, loaded: Loaded, diags: list[Diagnostic], templates: dict[str, Template],
                 bibles: dict[str, Bible]) -> None:
        self.loaded = loaded
        self.diags = diags
        self.templates = templates
        self.bibles = bibles
        self.reported_outputs = set()

    def target(self, name: str, m: dict[str, Setting]) -> ResolvedTarget | None:
        """The resolved target; None if it has nothing to render (`broken` if it has errors)."""
        before = len(self.diags)
        template, template_path, template_name = self._template(name, m)
        bible = m.get("bible")
        if bible and bible.value not in self.bibles:
            self.error(bible.path, f"unknown bible '{bible.value}'",
                       did_you_mean(bible.value, self.bibles) or _available("bibles", self.bibles))
        self._check_vars(m["vars"])
        matrix, variants = m.get("matrix"), m.get("variants")
        self._check_names(matrix, variants)
        source = m["prompt"].value if "prompt" in m else \
            self.loaded.manifest.templates.get(template_name or "")
        what = f"template '{template_name}'" if template_name else "the prompt"
        patches = self._patches(variants, template, source, what)
        inputs = m.get("inputs")
        input_settings = [Setting(v, (*inputs.path, i)) for i, v in enumerate(inputs.value)] \
            if inputs else []
        output = m.get("output") or Setting(DEFAULT_OUTPUT, ("defaults", "output"))
        self._check_output(output, matrix)
        params = {k: m[k] for k in PARAMS if k in m}
        params["output"] = output
        if template is None:  # it did not compile, or there is none: nothing to render
            return None
        return ResolvedTarget(
            name=name, template=template, template_path=template_path,
            template_name=template_name, bible=bible.value if bible else None,
            vars=m["vars"].value, params=params, inputs=input_settings,
            matrix=matrix.value if matrix else None,
            variants=variants.value if variants else None,
            variants_path=variants.path if variants else (), path=("targets", name),
            patches=patches, matrix_path=matrix.path if matrix else (),
            broken=len(self.diags) > before)

    def _check_vars(self, variables: Setting) -> None:
        for var in variables.value:
            if var in RESERVED_VARS:
                self.error((*variables.path, var), f"var '{var}' is reserved for nbpipe's own "
                           f"use", f"rename it; templates already see {', '.join(RESERVED_VARS)}",
                           at_key=True)

    def _patches(self, variants: Setting | None, template: Template | None, source: Any,
                 what: str) -> dict[str, Template]:
        """Each variant's patch, checked against the prompt's keys (`+key` adds one on
        purpose) and compiled: Jinja in its string leaves renders per frame."""
        patches: dict[str, Template] = {}
        if variants is None:
            return patches
        for vname, variant in variants.value.items():
            if variant.patch is None:
                continue
            at = (*variants.path, vname, "patch")
            if template is not None and not template.is_json:
                self.error(at, "a patch needs a JSON-structured (mapping) prompt",
                           "use vars to vary a text prompt")
                continue
            problems: list[PatchProblem] = []
            patch = checked_patch(source, variant.patch, problems)
            for problem in problems if isinstance(source, dict) else ():  # else: reported
                self.error((*at, *problem.path), problem.message(vname, what), problem.hint,
                           at_key=True)
            if (compiled := compile_template(patch, at, self.loaded, self.diags)):
                patches[vname] = compiled
        return patches

    def _template(self, name: str,
                  m: dict[str, Setting]) -> tuple[Template | None, Path, str | None]:
        tpl, prompt = m.get("template"), m.get("prompt")
        if tpl and prompt:
            self.error(prompt.path, f"target '{name}' has both a template and a prompt",
                       f"keep one: `template: {tpl.value}` or the inline prompt", at_key=True)
            return None, (), None
        if prompt:
            return compile_template(prompt.value, prompt.path, self.loaded, self.diags), \
                prompt.path, None
        if tpl:
            if tpl.value not in self.loaded.manifest.templates:
                templates = self.loaded.manifest.templates
                self.error(tpl.path, f"unknown template '{tpl.value}'",
                           did_you_mean(tpl.value, templates) or _available("templates", templates))
                return None, (), None
            return self.templates.get(tpl.value), ("templates", tpl.value), tpl.value
        self.error(("targets", name), f"target '{name}' has neither a template nor a prompt",
                   "add `template: NAME` or `prompt: \"...\"`", at_key=True)
        return None, (), None

    def _check_names(self, matrix: Setting | None, variants: Setting | None) -> None:
        if matrix:
            for axis, values in matrix.value.items():
                self._check_axis(matrix.path, axis, values)
        if variants:
            for vname in variants.value:
                if not _name_part_ok(vname):
                    self.error((*variants.path, vname), f"variant name '{vname}' cannot be part "
                               "of a frame name", "avoid '/', '\\' and control characters",
                               at_key=True)

    def _check_axis(self, at: Path, axis: str, values: list[Any]) -> None:
        seen: dict[str, Any] = {}
        folded: dict[str, Any] = {}  # as macOS and Windows compare file names
        if axis in RESERVED_AXES:
            self.error((*at, axis), f"matrix axis '{axis}' is reserved for nbpipe's own use",
                       f"rename it; {', '.join(RESERVED_AXES)} are nbpipe's names", at_key=True)
        for i, value in enumerate(values):
            part = name_part(value)
            if not _name_part_ok(part):
                self.error((*at, axis, i), f"matrix value {value!r} cannot be part of a frame "
                           "name", "give it a letter or digit; '.' or '..' alone cannot be one")
            elif (other := seen.setdefault(part, value)) != value:
                self.error((*at, axis, i), f"matrix values {other!r} and {value!r} both make "
                           f"the frame-name part '{part}'", "names and paths keep only letters, "
                           "digits, '_', '.' and '-' (other characters become '-'): make them "
                           "differ there")
            elif (other := folded.setdefault(fold_name(part), value)) != value:
                self.error((*at, axis, i), f"matrix values {other!r} and {value!r} make "
                           f"file names that differ only by case or Unicode form", "macOS and "
                           "Windows see one file: make them differ in letters")

    def _check_output(self, output: Setting, matrix: Setting | None) -> None:
        allowed = [*OUTPUT_FIELDS, *(matrix.value if matrix else ())]
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(output.value) if f is not None]
        except ValueError as exc:
            self.error(output.path, f"output pattern is malformed: {exc}",
                       "placeholders look like {frame}; write {{ or }} for a literal brace")
            return
        unknown = [n for n in dict.fromkeys(fields) if n not in allowed]
        if unknown and (output.path, tuple(unknown)) not in self.reported_outputs:
            # a pattern in `defaults` is shared: one error for it, not one per target
            self.reported_outputs.add((output.path, tuple(unknown)))
            hints = [(f"{{{n}}}: " if len(unknown) > 1 else "") + hint for n in unknown
                     if (hint := did_you_mean(n, allowed))]
            self.error(output.path, f"unknown placeholder{'s' if len(unknown) > 1 else ''} "
                       f"{', '.join(f'{{{n}}}' for n in unknown)} in output pattern",
                       "; ".join(hints) or
                       f"use one of {{{'}, {'.join(allowed)}}}")
