"""Declared targets → resolved targets (extends folded in) → frame specs (matrix and variants).

Still the declared tense: nothing here knows backends, prices or files. Every problem becomes a
located Diagnostic; all of them are collected before `ManifestError` is raised.
"""

from __future__ import annotations

import fnmatch
import itertools
import math
import re
import string
from dataclasses import dataclass, field
from typing import Any

from nbpipe.errors import Diagnostic, ManifestError
from nbpipe.manifest.load import Loaded
from nbpipe.manifest.models import Bible, Target
from nbpipe.manifest.source import Path, did_you_mean
from nbpipe.manifest.templates import Template, TemplateFault, reset_budget
from nbpipe.settings import current

PARAMS = ("backend", "model", "aspect_ratio", "resolution", "output_format", "output")
DEFAULT_OUTPUT = "out/{frame}.{ext}"
RESERVED_VARS = ("bible", "bibles", "target", "frame")
# Settings a matrix axis or a variant may vary per frame (channel crops: 1:1, 9:16, 21:9).
FRAME_SETTINGS = ("model", "aspect_ratio", "resolution")
# A matrix axis is a template variable and an output placeholder: it may not shadow either.
RESERVED_AXES = (*RESERVED_VARS, "variant", "ext", "profile")
MAX_NAME = 100  # characters of a target name (it becomes a file name: 255 bytes at most)
MAX_EXTENDS = 32  # links in an `extends` chain: deeper is a mistake, or an attempt to stall CI
MAX_FRAMES_CEILING = 100_000  # what a manifest may raise max_frames to; NBPIPE_MAX_FRAMES lifts it
_TARGET_NAME = re.compile(r"^\w[\w.-]*$")
_UNSAFE = re.compile(r"[^\w.-]+")  # what a matrix value may not keep in names and paths
_BAD_PART = re.compile(r"[/\\\x00-\x1f]")


@dataclass(frozen=True)
class Setting:
    """A resolved value and the manifest path it came from (for locating errors)."""

    value: Any
    path: Path


@dataclass
class ResolvedTarget:
    """A target with its `extends` chain and `defaults` folded in."""

    name: str
    template: Template | None
    template_path: Path  # where the template's source sits: ("templates", x) or a target's prompt
    template_name: str | None
    bible: str | None
    vars: dict[str, Any]
    params: dict[str, Setting]
    inputs: list[Setting]
    matrix: dict[str, list] | None = None
    variants: dict[str, Any] | None = None
    variants_path: Path = ()
    path: Path = ()
    matrix_path: Path = ()
    broken: bool = False  # has errors of its own: its frames are only checked, never planned
    patches: dict[str, Template] = field(default_factory=dict)  # variant → its compiled patch


@dataclass(frozen=True)
class FrameSpec:
    """One declared frame: a target plus the matrix values or variant that make it concrete."""

    name: str
    target: ResolvedTarget
    variant: str  # the part of the name after "target/" ("" for a single-frame target)
    vars: dict[str, Any]
    bindings: dict[str, str] = field(default_factory=dict)  # axis → value as in names, paths
    settings: dict[str, Setting] = field(default_factory=dict)  # FRAME_SETTINGS it overrides
    patch: Template | None = None  # rendered like the template's own leaves, then merged


@dataclass
class Declared:
    """The manifest, resolved and expanded: what `nbpipe.plan` turns into frames."""

    loaded: Loaded
    bibles: dict[str, Bible]
    targets: dict[str, ResolvedTarget]  # those with a template; `broken` ones have errors
    frames: list[FrameSpec]
    diags: list[Diagnostic]  # problems found so far; the planner adds its own, then raises
    profile: str | None = None
    builtin_draft: bool = False  # `--profile draft` with no profiles declared: cheapest models
    backend: str | None = None  # `--backend` / NBPIPE_BACKEND, where it changes some target

    @property
    def section(self) -> str | None:
        """The lock section and output folder of this build (None: the committed default)."""
        return section_name(self.profile, self.backend)


def section_name(profile: str | None, backend: str | None) -> str | None:
    """A profile keeps its own lock section and output folder, and so does a backend forced on
    the command line (`@preview`, `draft@preview`): a free trial run never overwrites paid
    outputs or the committed pins."""
    if backend is None:
        return profile
    return f"{profile or ''}@{backend}"


def expand(loaded: Loaded, profile: str | None = None, backend: str | None = None) -> Declared:
    """Resolve and expand every target under a profile (None: the default) and a command-line
    backend override (None: none); a manifest past `max_frames` is refused at once."""
    diags: list[Diagnostic] = list(loaded.diags)  # from targets the loader had to leave out
    manifest = loaded.manifest
    bibles = {name: Bible(text=b) if isinstance(b, str) else b for name, b in manifest.bibles.items()}
    reset_budget()
    templates = _compile_templates(loaded, diags)
    resolver = _Resolver(loaded, templates, bibles, diags, profile, section_name(profile, backend))
    targets = {name: t for name in manifest.targets if (t := resolver.resolve(name))}
    _check_size(loaded, targets, diags)
    frames = [spec for target in targets.values() for spec in _frames(target)]
    builtin = profile is not None and profile not in manifest.profiles
    return Declared(loaded, bibles, targets, frames, diags, profile, builtin, backend)


def _compile_templates(loaded: Loaded, diags: list) -> dict[str, Template]:
    compiled = {}
    for name, source in loaded.manifest.templates.items():
        template = compile_template(source, ("templates", name), loaded, diags)
        if template is not None:
            compiled[name] = template
    return compiled


def compile_template(source: Any, path: Path, loaded: Loaded, diags: list) -> Template | None:
    try:
        return Template(source)
    except TemplateFault as fault:
        diags.append(loaded.source.diagnostic((*path, *fault.subpath), str(fault), fault.hint))
        return None


class _Resolver:
    def __init__(self, loaded: Loaded, templates: dict, bibles: dict, diags: list,
                 profile: str | None = None, section: str | None = None):
        self.loaded = loaded
        self.profile_name = profile
        self.section = section  # the output folder: the profile, and any backend override
        self.profile = loaded.manifest.profiles.get(profile) if profile else None
        self.targets: dict[str, Target] = loaded.manifest.targets
        self.templates = templates
        self.bibles = bibles
        self.diags = diags

    def error(self, path: Path, message: str, hint: str | None = None, at_key: bool = False):
        self.diags.append(self.loaded.source.diagnostic(path, message, hint, at_key))

    def resolve(self, name: str) -> ResolvedTarget | None:
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
        if chain is None:
            return None
        merged = self._merge(chain)
        return self._check(name, merged)

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
        if not (self.profile and self.profile.wins):
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
        if self.profile and self.profile.wins:
            merged.update(overrides)
        merged["vars"] = Setting(variables, ("targets", chain[0], "vars"))
        if self.section:
            merged["output"] = self._profile_output(merged.get("output"))
        return merged

    def _profile_settings(self, target: str) -> dict[str, Setting]:
        profile = self.profile
        if profile is None or (profile.targets is not None and
                               not any(fnmatch.fnmatchcase(target, g) for g in profile.targets)):
            return {}
        return {key: Setting(getattr(profile, key), ("profiles", self.profile_name, key))
                for key in ("backend", "model", "resolution", "aspect_ratio")
                if getattr(profile, key) is not None}

    def _profile_output(self, output: Setting | None) -> Setting:
        """Each profile's outputs in their own folder, unless the profile names a pattern (a
        backend override always gets its own: `{profile}` is filled with the section name)."""
        named = self.profile is not None and self.profile.output is not None
        if named and self.section == self.profile_name:
            return Setting(self.profile.output, ("profiles", self.profile_name, "output"))
        base = Setting(self.profile.output, ("profiles", self.profile_name, "output")) if named \
            else output or Setting(DEFAULT_OUTPUT, ("defaults", "output"))
        folder = self.section.replace("{", "{{").replace("}", "}}")
        pattern = base.value
        if "{profile}" in pattern:
            return base
        value = pattern.replace("{frame}", folder + "/{frame}", 1) if "{frame}" in pattern \
            else f"{folder}/{pattern}"
        return Setting(value, base.path)

    def _check(self, name: str, m: dict[str, Setting]) -> ResolvedTarget | None:
        before = len(self.diags)
        path = ("targets", name)
        template, template_path, template_name = self._template(name, m)
        bible = m.get("bible")
        if bible and bible.value not in self.bibles:
            self.error(bible.path, f"unknown bible '{bible.value}'",
                       did_you_mean(bible.value, self.bibles) or _available("bibles", self.bibles))
        for var in m["vars"].value:
            if var in RESERVED_VARS:
                self.error((*m["vars"].path, var), f"var '{var}' is reserved for nbpipe's own use",
                           f"rename it; templates already see {', '.join(RESERVED_VARS)}", at_key=True)
        matrix, variants = m.get("matrix"), m.get("variants")
        if matrix and variants:
            self.error(variants.path, f"target '{name}' has both a matrix and variants",
                       "use one of them per target (a variant can become a matrix axis)", at_key=True)
        self._check_names(matrix, variants)
        patches = self._patches(variants, template)
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
            name=name, template=template, template_path=template_path, template_name=template_name,
            bible=bible.value if bible else None, vars=m["vars"].value, params=params,
            inputs=input_settings, matrix=matrix.value if matrix else None,
            variants=variants.value if variants else None,
            variants_path=variants.path if variants else (), path=path, patches=patches,
            matrix_path=matrix.path if matrix else (), broken=len(self.diags) > before)

    def _patches(self, variants: Setting | None, template: Template | None) -> dict[str, Template]:
        """Each variant's patch, compiled: Jinja in its string leaves renders per frame."""
        patches: dict[str, Template] = {}
        for vname, variant in (variants.value.items() if variants else ()):
            if variant.patch is None:
                continue
            at = (*variants.path, vname, "patch")
            if template is not None and not template.is_json:
                self.error(at, "a patch needs a JSON-structured (mapping) prompt",
                           "use vars to vary a text prompt")
            elif (compiled := compile_template(variant.patch, at, self.loaded, self.diags)):
                patches[vname] = compiled
        return patches

    def _template(self, name: str, m: dict[str, Setting]):
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
                seen: dict[str, Any] = {}
                if axis in RESERVED_AXES:
                    self.error((*matrix.path, axis), f"matrix axis '{axis}' is reserved for "
                               "nbpipe's own use", f"rename it; {', '.join(RESERVED_AXES)} "
                               "are nbpipe's names", at_key=True)
                for i, value in enumerate(values):
                    part = name_part(value)
                    if not _name_part_ok(part):
                        self.error((*matrix.path, axis, i),
                                   f"matrix value {value!r} cannot be part of a frame name",
                                   "give it a letter or digit; '.' or '..' alone cannot be one")
                    elif (other := seen.setdefault(part, value)) != value:
                        self.error((*matrix.path, axis, i), f"matrix values {other!r} and "
                                   f"{value!r} both make the frame-name part '{part}'",
                                   "names and paths keep only letters, digits, '_', '.' and '-' "
                                   "(other characters become '-'): make them differ there")
        if variants:
            for vname in variants.value:
                if not _name_part_ok(vname):
                    self.error((*variants.path, vname), f"variant name '{vname}' cannot be part "
                               "of a frame name", "avoid '/', '\\' and control characters",
                               at_key=True)

    def _check_output(self, output: Setting, matrix: Setting | None) -> None:
        allowed = ["frame", "target", "variant", "ext", "profile",
                   *(matrix.value if matrix else ())]
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(output.value) if f is not None]
        except ValueError as exc:
            self.error(output.path, f"output pattern is malformed: {exc}",
                       "placeholders look like {frame}; write {{ or }} for a literal brace")
            return
        for name in fields:
            if name not in allowed:
                self.error(output.path, f"unknown placeholder {{{name}}} in output pattern",
                           did_you_mean(name, allowed) or f"use one of {{{'}, {'.join(allowed)}}}")


def _available(kind: str, names: Any) -> str:
    return f"the manifest defines no {kind}" if not names else \
        f"defined {kind}: {', '.join(sorted(names))}"


def name_part(value: Any) -> str:
    """A matrix value as it appears in frame names and output paths: booleans as true/false,
    every run of characters other than letters, digits, '_', '.' and '-' as one '-'
    (`golden hour` → `golden-hour`, `9:16` → `9-16`). Prompts get the value itself."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return _UNSAFE.sub("-", str(value)).strip("-")


def _name_part_ok(part: str) -> bool:
    return bool(part) and part not in (".", "..") and not _BAD_PART.search(part)


def _count(target: ResolvedTarget) -> int:
    if target.matrix:
        return math.prod(len(values) for values in target.matrix.values())
    return len(target.variants) if target.variants else 1


def frames_ceiling() -> int:
    """How far a manifest may raise max_frames: the person running nbpipe decides
    ($NBPIPE_MAX_FRAMES), since a manifest may come from a pull request."""
    return current().max_frames or MAX_FRAMES_CEILING


def _check_size(loaded: Loaded, targets: dict[str, ResolvedTarget], diags: list) -> None:
    cap = loaded.manifest.max_frames
    ceiling = frames_ceiling()
    if cap > ceiling:
        diags.append(loaded.source.diagnostic(
            ("max_frames",), f"max_frames may be at most {ceiling:,}",
            "the person running nbpipe can allow more: NBPIPE_MAX_FRAMES=N"))
        raise ManifestError(diags)
    total = sum(_count(t) for t in targets.values())
    if total > cap:
        biggest = max(targets.values(), key=_count)
        path = ("targets", biggest.name, "matrix") if biggest.matrix else biggest.path
        diags.append(loaded.source.diagnostic(
            path, f"the manifest expands to {total:,} frames, more than max_frames ({cap:,})",
            f"target '{biggest.name}' alone makes {_count(biggest):,}; "
            "raise `max_frames` if you mean it", at_key=True))
        raise ManifestError(diags)


def _frames(target: ResolvedTarget) -> list[FrameSpec]:
    name = target.name
    if target.matrix:
        axes = list(target.matrix)
        specs = []
        indexed = [list(enumerate(values)) for values in target.matrix.values()]
        for combo in itertools.product(*indexed):
            binding = {axis: value for axis, (_, value) in zip(axes, combo)}
            suffix = "-".join(name_part(v) for _, v in combo)
            settings = {axis: Setting(str(value), (*target.matrix_path, axis, i))
                        for axis, (i, value) in zip(axes, combo) if axis in FRAME_SETTINGS}
            specs.append(FrameSpec(f"{name}/{suffix}", target, suffix, {**target.vars, **binding},
                                   {a: name_part(v) for a, v in binding.items()}, settings))
        return specs
    if target.variants:
        return [FrameSpec(f"{name}/{vname}", target, vname, {**target.vars, **v.vars},
                          patch=target.patches.get(vname), settings={
                              key: Setting(getattr(v, key), (*target.variants_path, vname, key))
                              for key in FRAME_SETTINGS if getattr(v, key) is not None})
                for vname, v in target.variants.items()]
    return [FrameSpec(name, target, "", dict(target.vars))]
