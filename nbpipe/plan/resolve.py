"""Frame specs (declared) → Frames (resolved): backend, model, prompt as sent, params, inputs,
output path and price, each checked against the catalogue before anything is sent."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from nbpipe.catalog import EXTENSIONS, FORMAT_ALIASES, FORMATS, Catalog, ModelSpec
from nbpipe.catalog import today as catalog_today
from nbpipe.errors import Diagnostic, ManifestError
from nbpipe.manifest.expand import Declared, FrameSpec, ResolvedTarget, Setting
from nbpipe.manifest.source import Path, did_you_mean
from nbpipe.manifest.templates import TemplateFault, merge_patch, prompt_text
from nbpipe.plan import graph
from nbpipe.plan.frame import Frame, InputImage, Request, canonical_json, url_digest
from nbpipe.plan.paths import PathRefused, ProjectDir, relative_path

# Where a model's prompt limit is unconfirmed: about its 32k-token input window, so a 50 MB
# prompt is refused at load instead of being sent (and billed, or answered 400) at build.
MAX_PROMPT = 131_072


def _sha(data: str | bytes) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


@dataclass
class _Group:
    """Errors of one kind at one place (a shared template, `defaults`): reported once, naming
    every frame or model they affect."""

    path: Path
    at_key: bool
    message: str  # with "{who}" where the affected names go
    kind: str  # "frame" or "model"
    names: list[str]
    hints: list[str]

    def diagnostic(self, source) -> Diagnostic:
        message = self.message.replace("{who}", _who(self.kind, self.names))
        return source.diagnostic(self.path, message, "; ".join(self.hints[:3]) or None,
                                 self.at_key)


def _who(kind: str, names: list[str]) -> str:
    quoted = [f"'{n}'" for n in names[:3]]
    if len(names) == 1:
        return f"{kind} {quoted[0]}"
    more = f" and {len(names) - 3} more" if len(names) > 3 else ""
    listed = ", ".join(quoted) + more if more else ", ".join(quoted[:-1]) + f" and {quoted[-1]}"
    return f"{kind}s {listed}"


@dataclass
class _TargetPlan:
    """What every frame of one target (with the same per-frame settings) shares, resolved once."""

    backend: str
    spec: ModelSpec
    params: dict[str, str]
    ext: str
    cost: Decimal
    inputs: list[tuple[InputImage, Path]]


class Resolver:
    """Turns a Declared manifest into Frames, collecting every located error on the way."""

    def __init__(self, declared: Declared, catalog: Catalog, backend: str | None = None,
                 uploads: bool = False, today: dt.date | None = None):
        self.declared = declared
        self.today = today or catalog_today()  # lifecycles are judged on this date
        self.uploads = uploads  # a remote cache can turn local images into https URLs
        self.source = declared.loaded.source
        self.catalog = catalog
        self.backend_override = backend
        self.project = ProjectDir(declared.loaded.root)
        self.diags: dict[Diagnostic, None] = dict.fromkeys(declared.diags)  # ordered, unique
        self.warnings: dict[Diagnostic, None] = {}
        self.groups: dict[tuple, _Group] = {}
        self.reported = 0  # error() calls so far: did a step find anything?
        profile = declared.loaded.manifest.profiles.get(declared.profile or "")
        self.profile_wins = bool(profile and profile.wins)
        self.declared_targets = set(declared.loaded.manifest.targets) | \
            declared.loaded.broken_targets
        self.frame_names = {spec.name for spec in declared.frames}
        self.frames_of: dict[str, list[str]] = {}
        for spec in declared.frames:
            self.frames_of.setdefault(spec.target.name, []).append(spec.name)
        self.bible_texts = {name: b.text for name, b in declared.bibles.items()}
        self.bible_sha = {name: _sha(text) for name, text in self.bible_texts.items()}
        self.template_sha = {name: _sha(canonical_json(source)) for name, source
                             in declared.loaded.manifest.templates.items()}
        self._written: dict[str, str] | None = None  # output path → frame, built on first need

    def error(self, path: Path, message: str, hint: str | None = None, at_key: bool = False,
              who: tuple[str, str] | None = None, key: str | None = None):
        """Record an error. With `who` ("frame", name), `message` holds "{who}": errors with one
        `key` (default: the message) at one place become one that lists whom they affect."""
        self.reported += 1
        if who is None:
            self.diags[self.source.diagnostic(path, message, hint, at_key)] = None
            return
        place = (self.source.position(path, at_key), key or message)
        group = self.groups.setdefault(place, _Group(path, at_key, message, who[0], [], []))
        if who[1] not in group.names:
            group.names.append(who[1])
        if hint and hint not in group.hints:
            group.hints.append(hint)

    def resolve(self) -> list[Frame]:
        plans: dict[tuple, _TargetPlan | None] = {}
        frames: list[Frame] = []
        for spec in self.declared.frames:
            # Every check runs on every frame, whatever else failed: one pass finds it all.
            plan = self._plan(spec, plans)
            rendered = self._render(spec)
            output = None if spec.target.broken else self._output(spec, plan.ext if plan else "png")
            if plan and rendered is not None and output is not None:
                frame = self._frame(spec, plan, rendered, output)
                if frame is not None:
                    frames.append(frame)
        self._check_graph(plans)
        self._check_unique(frames)
        diags = [*self.diags, *(g.diagnostic(self.source) for g in self.groups.values())]
        if diags:
            raise ManifestError(list(dict.fromkeys(diags)))
        return frames

    def _plan(self, spec: FrameSpec, plans: dict) -> _TargetPlan | None:
        """The plan of a frame's target under the frame's own settings (matrix axes, variants)."""
        target = spec.target
        settings = {k: s for k, s in spec.settings.items()
                    if not (self.profile_wins and k in target.params
                            and target.params[k].path[0] == "profiles")}
        key = (target.name, tuple(sorted((k, s.value) for k, s in settings.items())))
        if key not in plans:
            plans[key] = self._target(target, {**target.params, **settings})
        return plans[key]

    # --- per target --------------------------------------------------------------------------

    def _target(self, target: ResolvedTarget, settings: dict[str, Setting]) -> _TargetPlan | None:
        before = self.reported
        backend = self._backend(target)
        spec = self._model(target, backend, settings) if backend else None
        if spec is None:
            return None
        params, ext = self._params(target, spec, settings)
        inputs = self._inputs(target, spec)
        if self.reported != before:
            return None
        return _TargetPlan(backend, spec, params, ext, spec.price(params.get("resolution")), inputs)

    def _backend(self, target: ResolvedTarget) -> str | None:
        if self.backend_override:
            return self.backend_override
        setting = target.params.get("backend")
        if setting is None:
            return self.catalog.default_backend
        if setting.value not in self.catalog.names:
            names = self.catalog.names
            self.error(setting.path, f"unknown backend '{setting.value}'",
                       did_you_mean(setting.value, names) or f"use one of {', '.join(names)}")
            return None
        return setting.value

    def _model(self, target: ResolvedTarget, backend: str,
               settings: dict[str, Setting]) -> ModelSpec | None:
        if self.declared.builtin_draft:
            return self._cheapest(backend, needs_inputs=bool(target.inputs))
        setting = settings.get("model")
        name = setting.value if setting else self.catalog.default_model(backend)
        spec = self.catalog.get(backend, name)
        where = setting.path if setting else target.path
        if spec is None:
            owners = [b for b in self.catalog.names if self.catalog.get(b, name)]
            models = self.catalog.in_service(backend, self.today)
            if self.backend_override and owners:  # the flag moved it, not the manifest
                self.error(setting.path if setting else target.path,
                           f"--backend {backend}: '{name}' is a {owners[0]} model, not a "
                           f"{backend} one", f"{backend} models: {', '.join(models)}; drop "
                           f"--backend, or give a profile a {backend} model and use --profile")
                return None
            hint = did_you_mean(name, models) or (
                f"'{name}' is a {owners[0]} model; set `backend: {owners[0]}`" if owners
                else f"{backend} models: {', '.join(models)}")
            self.error(where, f"unknown model '{name}' for backend '{backend}'", hint)
        elif (news := self.catalog.news(spec, self.today)) is not None:
            severity, message, hint = news
            if severity == "error":
                self.error(where, message, hint)
                return None
            self.warnings[self.source.diagnostic(where, message, hint, severity=severity)] = None
        return spec

    def _cheapest(self, backend: str, needs_inputs: bool) -> ModelSpec:
        """The built-in draft profile's model: the cheapest one in service that still takes
        the inputs."""
        fits = [s for s in self.catalog.in_service(backend, self.today).values()
                if s.max_inputs or not needs_inputs]
        return min(fits, key=lambda s: (min(s.prices.values(), default=0), s.name))

    def _profile_moved(self, settings: dict[str, Setting]) -> bool:
        """Did a profile pick the model? Then the tier follows the model, not the target."""
        model = settings.get("model")
        return self.declared.builtin_draft or bool(model and model.path[0] == "profiles")

    def _params(self, target: ResolvedTarget, spec: ModelSpec,
                settings: dict[str, Setting]) -> tuple[dict[str, str], str]:
        params: dict[str, str] = {}
        who = ("model", spec.name)
        resolution = settings.get("resolution")
        if resolution is not None and self._profile_moved(settings) and \
                resolution.path[0] != "profiles" and resolution.value not in spec.resolutions:
            # e.g. draft moves a 2K Pro frame to a model that takes no resolution at all
            resolution = None
        ratio = settings.get("aspect_ratio")
        if ratio is not None:
            if ratio.value in spec.aspect_ratios:
                params["aspect_ratio"] = ratio.value
            else:
                self.error(ratio.path, f"aspect ratio '{ratio.value}' is not taken by {{who}}",
                           f"{spec.name} takes {', '.join(spec.aspect_ratios)}", who=who)
        if resolution is not None and not spec.resolutions:
            self.error(resolution.path, "a resolution is not taken by {who} (sending one is a 400)",
                       "remove `resolution`, or pick a model with resolution tiers", who=who)
        elif resolution is not None and resolution.value not in spec.resolutions:
            self.error(resolution.path, f"resolution '{resolution.value}' is not taken by {{who}}",
                       f"{spec.name} takes {', '.join(spec.resolutions)}", who=who)
        elif spec.resolutions:
            # Always send the tier explicitly: the request (and so the key) says what is paid for.
            params["resolution"] = resolution.value if resolution else spec.default_resolution
        return params, self._format(settings.get("output_format"), spec, params)

    def _format(self, setting: Setting | None, spec: ModelSpec, params: dict) -> str:
        wanted = setting.value if setting else "png"
        canonical = FORMAT_ALIASES.get(wanted, wanted)
        if canonical not in FORMATS:
            self.error(setting.path, f"unknown output format '{wanted}'",
                       did_you_mean(wanted, [*FORMATS, *FORMAT_ALIASES]) or "use png or jpeg")
            return "png"
        if spec.formats is not None:
            params["output_format"] = spec.formats[canonical]
        elif setting is not None:  # never sent: the key could not tell png from jpeg
            self.error(setting.path, f"{spec.name} takes no output format (the model chooses "
                       "it, and nbpipe names the file after the bytes it gets)",
                       "remove `output_format` for this model")
        return EXTENSIONS[canonical]

    def _inputs(self, target: ResolvedTarget, spec: ModelSpec) -> list[tuple[InputImage, Path]]:
        images = [(img, s.path) for s in target.inputs if (img := self._input(s, target))]
        if images and spec.max_inputs == 0:
            self.error(target.inputs[0].path, f"{spec.name} takes no input images "
                       "(text-to-image only)", self._edit_models_hint(spec.backend))
            return []
        if spec.max_inputs and target.bible:
            bible = self.declared.bibles.get(target.bible)
            for i, ref in enumerate(bible.references if bible else ()):
                path = ("bibles", target.bible, "references", i)
                if ref.startswith(("https://", "http://")):
                    images.append((InputImage("url", ref, url_digest(ref), "reference"), path))
                elif (image := self._file_input(ref, path, "reference")) is not None:
                    images.append((image, path))
        self._check_transport(spec, images)
        if len(images) > spec.max_inputs > 0:
            self.error(target.inputs[0].path if target.inputs else target.path,
                       f"target '{target.name}' sends {len(images)} input images; "
                       f"{spec.name} takes at most {spec.max_inputs}",
                       "bible references count too")
        return images

    def _check_transport(self, spec: ModelSpec, images: list[tuple[InputImage, Path]]) -> None:
        """Some backends fetch input images by URL (HiAPI), others take them inline as bytes."""
        for image, path in images:
            if spec.transport == "url" and image.kind == "file" and not self.uploads:
                self.error(path, f"HiAPI takes input images as URLs, and '{image.ref}' is a "
                           "local file", "give an https:// URL, configure a remote cache "
                           "(`cache: {remote: s3://...}`) to upload it, or render this target "
                           "on gemini (it takes images inline)")
            elif spec.transport == "inline" and image.kind == "url":
                self.error(path, f"Gemini takes input images inline, and '{image.ref}' is a URL",
                           "save the image into the project and name the file instead")
            elif spec.input_max_bytes and image.kind == "file":
                self._check_size(spec, image.ref, path)

    def _check_size(self, spec: ModelSpec, ref: str, path: Path) -> None:
        try:
            size = os.stat(os.path.join(self.project.root, ref)).st_size
        except OSError:
            return  # already reported by the digest
        if size > spec.input_max_bytes:
            self.error(path, f"input '{ref}' has {size:,} bytes; {spec.name} takes at most "
                       f"{spec.input_max_bytes:,} per image",
                       "downscale or recompress it")

    def _edit_models_hint(self, backend: str) -> str:
        takers = [m for m, s in self.catalog.in_service(backend, self.today).items()
                  if s.max_inputs]
        return f"use {' or '.join(takers)} for edits" if takers else "pick a model that takes images"

    def _input(self, setting: Setting, target: ResolvedTarget) -> InputImage | None:
        ref = setting.value
        if ref.startswith(("https://", "http://")):
            return InputImage("url", ref, url_digest(ref))
        if ref in self.frame_names:
            return InputImage("frame", ref, None)
        if ref in self.frames_of:
            frames = self.frames_of[ref]
            if len(frames) == 1:
                return InputImage("frame", frames[0], None)
            self.error(setting.path, f"input '{ref}' makes {len(frames)} frames; name one",
                       f"for example '{frames[0]}'")
            return None
        if ref in self.declared_targets or \
                ref.split("/")[0] in self.declared.loaded.broken_targets:
            return None  # a target with its own error, already reported
        if "/" not in ref and "." not in ref:
            names = [*self.frames_of, *self.frame_names]
            self.error(setting.path, f"unknown input '{ref}': no such target, frame or file",
                       did_you_mean(ref, names))
            return None
        return self._file_input(ref, setting.path)

    def _file_input(self, ref: str, path: Path, role: str = "input") -> InputImage | None:
        """A project file, or the frame that writes it: an output used as an input is an edge
        to its frame (keyed on the bytes that frame pins, built after it), never a file read
        now, which a build would then overwrite under a key made from the old bytes."""
        try:
            owner = self._writers().get(relative_path(ref))
        except PathRefused:
            owner = None
        if owner is not None:
            return InputImage("frame", owner, None, role)  # type: ignore[arg-type]
        found = self._file(ref, path)
        return InputImage("file", found[0], found[1], role) if found else None  # type: ignore[arg-type]

    def _writers(self) -> dict[str, str]:
        """Every path some frame may write (under any image extension) → that frame's name."""
        if self._written is None:
            self._written = {}
            for spec in self.declared.frames:
                setting = spec.target.params.get("output")
                for ext in ("png", "jpg", "jpeg", "webp"):
                    try:
                        path = relative_path(setting.value.format_map(self._output_fields(spec, ext)))
                    except (AttributeError, KeyError, ValueError, IndexError, PathRefused):
                        break  # reported where the frame's own output is resolved
                    self._written.setdefault(path, spec.name)
        return self._written

    def _file(self, ref: str, path: Path) -> tuple[str, str] | None:
        try:
            return self.project.file_digest(ref)
        except FileNotFoundError:
            names = [*self.frames_of, *self.frame_names]
            self.error(path, f"file '{ref}' not found in the project", did_you_mean(ref, names)
                       or "file paths are relative to the project directory")
        except PathRefused as exc:
            self.error(path, f"input refused: {exc}",
                       "inputs must be image files inside the project")
        except OSError as exc:
            self.error(path, f"cannot read '{ref}': {exc.strerror}")
        return None

    # --- per frame ---------------------------------------------------------------------------

    def _frame(self, spec: FrameSpec, plan: _TargetPlan, rendered: Any,
               output: str) -> Frame | None:
        target = spec.target
        prompt = prompt_text(rendered)
        limit = plan.spec.prompt_max or MAX_PROMPT
        if len(prompt) > limit:
            self.error(target.template_path, f"the prompt of {{who}} has {len(prompt):,} "
                       f"characters; {plan.spec.name} takes at most {limit:,}",
                       "shorten the template, vars or bible", who=("frame", spec.name),
                       key=f"prompt too long for {plan.spec.name}")
            return None
        inputs = tuple(i for i, _ in plan.inputs)
        return Frame(
            name=spec.name, target=target.name, backend=plan.backend, model=plan.spec.name,
            prompt=prompt, params=plan.params, inputs=inputs,
            output=output, cost=plan.cost, prompt_json=rendered if isinstance(rendered, dict) else None,
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

    def _render(self, spec: FrameSpec) -> Any:
        target = spec.target
        context = {**spec.vars, "bibles": self.bible_texts, "target": target.name,
                   "frame": spec.name}
        if target.bible:
            context["bible"] = self.bible_texts.get(target.bible, "")
        where = f"template '{target.template_name}'" if target.template_name else "prompt"
        at = target.template_path
        try:
            rendered = target.template.render(context)  # type: ignore[union-attr]
            if spec.patch is not None:
                where = f"the patch of variant '{spec.variant}'"
                at = (*target.variants_path, spec.variant, "patch")
                rendered = merge_patch(rendered, spec.patch.render(context))
        except TemplateFault as fault:
            self._template_fault(spec, fault, where, at, context)
            return None
        return rendered

    def _template_fault(self, spec: FrameSpec, fault: TemplateFault, where: str, at: Path,
                        context: dict) -> None:
        target = spec.target
        message = f"{where} of {{who}}: {fault}"
        hint = fault.hint
        if fault.missing == "bible" and not target.bible:
            hint = f"target '{target.name}' names no bible: add `bible: NAME`"
        elif fault.missing:
            message = f"undefined variable '{fault.missing}' in {where} ({{who}})"
            hint = did_you_mean(fault.missing, context) or \
                f"add `{fault.missing}` to the vars of target '{target.name}'"
        self.error((*at, *fault.subpath), message, hint, who=("frame", spec.name))

    def _output(self, spec: FrameSpec, ext: str) -> str | None:
        setting = spec.target.params["output"]
        try:
            return self.project.check_output(
                setting.value.format_map(self._output_fields(spec, ext)))
        except PathRefused as exc:
            self.error(setting.path, f"output of {{who}} refused: {exc}",
                       "outputs must stay inside the project, e.g. out/{frame}.{ext}",
                       who=("frame", spec.name), key="output refused")
        except (KeyError, ValueError, IndexError) as exc:
            self.error(setting.path, f"output pattern cannot be filled: {exc}")
        return None

    def _output_fields(self, spec: FrameSpec, ext: str) -> dict[str, str]:
        return {"frame": spec.name, "target": spec.target.name, "variant": spec.variant,
                "ext": ext, "profile": self.declared.section or "", **spec.bindings}

    # --- across frames -----------------------------------------------------------------------

    def _check_graph(self, all_plans: dict[tuple, _TargetPlan | None]) -> None:
        plans: dict[str, _TargetPlan] = {}  # per target: the first of its frames' plans
        for (name, _), plan in all_plans.items():
            if plan is not None:
                plans.setdefault(name, plan)
        needs: dict[tuple[str, str], Path] = {}  # (dependant, upstream) → where it is declared
        for name, plan in plans.items():
            for image, path in plan.inputs if plan else ():
                if image.kind == "frame":
                    needs.setdefault((name, image.ref.split("/")[0]), path)
        for (name, upstream), path in needs.items():
            mine, theirs = plans.get(name), plans.get(upstream)
            if mine and theirs and mine.spec.transport == "url" and \
                    theirs.backend != mine.backend and not self.uploads:
                self.error(path, f"'{name}' renders on {mine.backend}, which fetches its input "
                           f"'{upstream}' "
                           f"by URL, but '{upstream}' renders on {theirs.backend}",
                           "render both on the same backend")
        cycle = graph.find_cycle(list(needs))
        if cycle:
            self.error(needs[(cycle[0], cycle[1])], f"input cycle: {' -> '.join(cycle)}",
                       "an edit cannot depend on its own output")

    def _check_unique(self, frames: list[Frame]) -> None:
        names: set[str] = set()
        for spec in self.declared.frames:
            if spec.target.broken:
                continue  # its names were checked with its own errors
            if spec.name in names:
                self.error(spec.target.path, f"two frames are named '{spec.name}'",
                           "matrix values joined with '-' collide; make them distinct",
                           at_key=True)
                return
            names.add(spec.name)
        seen: dict[str, str] = {}
        for frame in frames:
            other = seen.setdefault(frame.output, frame.name)
            if other != frame.name:
                setting = self.declared.targets[frame.target].params["output"]
                self.error(setting.path, f"frames '{other}' and '{frame.name}' both write "
                           f"'{frame.output}'", "put {frame} (or a matrix variable) in `output`")
                return
