"""What every frame of a target shares under the same per-frame settings: backend, model,
request parameters, output extension, price and inputs, each checked against the catalogue."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from nbpipe.catalog import EXTENSIONS, FORMAT_ALIASES, FORMATS, STANDARD, Catalog, ModelSpec
from nbpipe.manifest.declared import Declared, FrameSpec, ResolvedTarget, Setting
from nbpipe.manifest.source import Path, did_you_mean
from nbpipe.plan.findings import Findings
from nbpipe.plan.frame import InputImage
from nbpipe.plan.inputs import Inputs
from nbpipe.plan.sizing import request_extras

# A target and the per-frame settings (matrix axes, variants) that change its plan.
PlanKey = tuple[str, tuple[tuple[str, object], ...]]


@dataclass
class TargetPlan:
    """What every frame of one target (with the same per-frame settings) shares, resolved once."""

    backend: str
    spec: ModelSpec
    params: dict[str, str]
    ext: str
    cost: Decimal  # the price of its lane
    inputs: list[tuple[InputImage, Path]]
    lane: str = STANDARD


class Targets:
    """Plans each target once per distinct per-frame settings; `plans` keeps every one made
    (None where the target has errors), for the checks across targets."""

    declared: Declared
    catalog: Catalog
    findings: Findings
    inputs: Inputs
    today: dt.date  # lifecycles are judged on this date
    backend_override: str | None  # `--backend`
    lane_override: str | None  # `--lane` / NBPIPE_LANE
    profile_wins: bool  # the profile's settings beat the targets' own
    plans: dict[PlanKey, TargetPlan | None]

    def __init__(self, declared: Declared, catalog: Catalog, findings: Findings, inputs: Inputs,
                 today: dt.date, backend: str | None, lane: str | None = None) -> None:
        self.declared = declared
        self.catalog = catalog
        self.findings = findings
        self.inputs = inputs
        self.today = today
        self.backend_override = backend
        self.lane_override = lane
        profile = declared.loaded.manifest.profiles.get(declared.profile or "")
        self.profile_wins = bool(profile and profile.wins)
        self.plans = {}

    def plan(self, spec: FrameSpec, inputs: tuple[Setting, ...]) -> TargetPlan | None:
        """The plan of a frame's target under the frame's own settings (matrix axes, variants)
        and its inputs as rendered for it."""
        target = spec.target
        settings = {k: s for k, s in spec.settings.items()
                    if not (self.profile_wins and k in target.params
                            and target.params[k].path[0] == "profiles")}
        refs = ("inputs", tuple((s.value, s.path) for s in inputs))
        key = (target.name, (*sorted((k, s.value) for k, s in settings.items()), refs))
        if key not in self.plans:
            self.plans[key] = self._target(target, {**target.params, **settings}, inputs)
        return self.plans[key]

    def _target(self, target: ResolvedTarget, settings: dict[str, Setting],
                inputs: tuple[Setting, ...]) -> TargetPlan | None:
        before = self.findings.reported
        backend = self._backend(target)
        spec = self._model(target, backend, settings, bool(inputs)) if backend else None
        if backend is None or spec is None:
            return None
        params, ext = self._params(spec, settings, target.name)
        lane = lane_of(self, target, spec, settings)
        images = self.inputs.of(target, spec, inputs)
        if self.findings.reported != before:
            return None
        return TargetPlan(backend, spec, params, ext, spec.price_of(params, lane),
                          images, lane)

    def _backend(self, target: ResolvedTarget) -> str | None:
        if self.backend_override:
            return self.backend_override
        setting = target.params.get("backend")
        if setting is None:
            return self.catalog.default_backend
        value: str = setting.value
        if value not in self.catalog.names:
            names = self.catalog.names
            self.findings.error(setting.path, f"unknown backend '{value}'",
                                did_you_mean(value, names) or f"use one of {', '.join(names)}")
            return None
        return value

    def _model(self, target: ResolvedTarget, backend: str, settings: dict[str, Setting],
               needs_inputs: bool) -> ModelSpec | None:
        if self.declared.builtin_draft:
            return self._cheapest(backend, needs_inputs)
        setting = settings.get("model")
        name: str = setting.value if setting else self.catalog.default_model(backend)
        spec = self.catalog.get(backend, name)
        where = setting.path if setting else target.path
        if spec is None:
            self._unknown_model(where, backend, name)
            return None
        news = self.catalog.news(spec, self.today)
        if news is not None:
            severity, message, hint = news
            if severity == "error":
                self.findings.error(where, message, hint)
                return None
            self.findings.warn(where, message, hint, severity)
        return spec

    def _unknown_model(self, where: Path, backend: str, name: str) -> None:
        owners = [b for b in self.catalog.names if self.catalog.get(b, name)]
        models = self.catalog.in_service(backend, self.today)
        if self.backend_override and owners:  # the flag moved it, not the manifest
            self.findings.error(where, f"--backend {backend}: '{name}' is a {owners[0]} model, "
                                f"not a {backend} one", f"{backend} models: {', '.join(models)}; "
                                f"drop --backend, or give a profile a {backend} model and use "
                                "--profile")
            return
        hint = did_you_mean(name, models) or (
            f"'{name}' is a {owners[0]} model; set `backend: {owners[0]}`" if owners
            else f"{backend} models: {', '.join(models)}")
        self.findings.error(where, f"unknown model '{name}' for backend '{backend}'", hint)

    def _cheapest(self, backend: str, needs_inputs: bool) -> ModelSpec:
        """The built-in draft profile's model: the cheapest one in service that still takes
        the inputs."""
        fits = [s for s in self.catalog.in_service(backend, self.today).values()
                if s.max_inputs or not needs_inputs]
        return min(fits, key=lambda s: (min(s.prices.values(), default=Decimal(0)), s.name))

    def _profile_moved(self, settings: dict[str, Setting]) -> bool:
        """Did a profile pick the model? Then the tier follows the model, not the target."""
        model = settings.get("model")
        return self.declared.builtin_draft or bool(model and model.path[0] == "profiles")

    def _params(self, spec: ModelSpec, settings: dict[str, Setting],
                target: str) -> tuple[dict[str, str], str]:
        params: dict[str, str] = {}
        who = ("model", spec.name)
        resolution = settings.get("resolution")
        if resolution is not None and self._profile_moved(settings) and \
                resolution.path[0] != "profiles" and resolution.value not in spec.resolutions:
            # e.g. draft moves a 2K Pro frame to a model that takes no resolution at all
            resolution = None
        if resolution is not None and resolution.path[0] == "defaults":
            if not spec.resolutions:  # a default follows the model, as a profile's does
                resolution = None
            elif resolution.value not in spec.resolutions:
                self.findings.error(resolution.path, f"resolution '{resolution.value}' (from "
                                    f"defaults) is not taken by {spec.name}, the model of {{who}}",
                                    f"{spec.name} takes {', '.join(spec.resolutions)}; set "
                                    "`resolution:` on the target, or `resolution: null`",
                                    who=("target", target),
                                    key=f"default tier {resolution.value} on {spec.name}")
                resolution = None
        ratio = settings.get("aspect_ratio")
        if ratio is not None:
            if ratio.value in spec.aspect_ratios:
                params["aspect_ratio"] = ratio.value
            else:
                self.findings.error(ratio.path, f"aspect ratio '{ratio.value}' is not taken by "
                                    "{who}", f"{spec.name} takes {', '.join(spec.aspect_ratios)}",
                                    who=who)
        if resolution is not None and not spec.resolutions:
            self.findings.error(resolution.path, "a resolution is not taken by {who} (sending "
                                "one is a 400)", "remove `resolution`, or pick a model with "
                                "resolution tiers", who=who)
        elif resolution is not None and resolution.value not in spec.resolutions:
            self.findings.error(resolution.path, f"resolution '{resolution.value}' is not taken "
                                "by {who}", f"{spec.name} takes {', '.join(spec.resolutions)}",
                                who=who)
        elif spec.resolutions:
            # Always send the tier explicitly: the request (and so the key) says what is paid for.
            tier = resolution.value if resolution else spec.default_resolution
            if tier is not None:
                params["resolution"] = tier
        ext = self._format(settings.get("output_format"), spec, params)
        request_extras(spec, settings, params, ext, self.findings, self.catalog.tiers,
                       self.declared.builtin_draft)
        return params, ext

    def _format(self, setting: Setting | None, spec: ModelSpec, params: dict[str, str]) -> str:
        wanted: str = setting.value if setting else "png"
        canonical = FORMAT_ALIASES.get(wanted, wanted)
        if setting is not None and canonical not in FORMATS:
            self.findings.error(setting.path, f"unknown output format '{wanted}'",
                                did_you_mean(wanted, [*FORMATS, *FORMAT_ALIASES])
                                or f"use {', '.join(FORMATS)}")
            return "png"
        if spec.formats is not None and canonical not in spec.formats and setting is not None:
            self.findings.error(setting.path, f"output format '{wanted}' is not taken by "
                                "{who}", f"{spec.name} takes {', '.join(spec.formats)}",
                                who=("model", spec.name))
            return "png"
        if spec.formats is not None and canonical in spec.formats:
            params["output_format"] = spec.formats[canonical]
        elif setting is not None:  # never sent: the key could not tell png from jpeg
            self.findings.error(setting.path, f"{spec.name} takes no output format (the model "
                                "chooses it, and nbpipe names the file after the bytes it gets)",
                                "remove `output_format` for this model")
        return EXTENSIONS[canonical]


def lane_of(targets: Targets, target: ResolvedTarget, spec: ModelSpec,
             settings: dict[str, Setting]) -> str:
    """The frame's lane: `--lane` / NBPIPE_LANE over the manifest's (a variant, the target,
    a profile, `defaults`), else standard. A lane the model's catalogue entry does not list
    is an error where it was chosen (the flag's: at the model)."""
    setting = settings.get("lane")
    lane: str = targets.lane_override or (setting.value if setting else STANDARD)
    if lane in spec.lanes:
        return lane
    takers = sorted({s.name for models in targets.catalog.models.values()
                     for s in models.values()
                     if lane in s.lanes and not s.shut_down(targets.today)})
    hint = f"{spec.name} takes {', '.join(spec.lanes)}; " + \
        (f"models that take {lane}: {', '.join(takers)}" if takers
         else f"no model in service takes {lane}")
    if setting is not None and not targets.lane_override:
        if setting.path[0] == "profiles":
            hint += "; or name the targets the profile applies to (`targets:`)"
        targets.findings.error(setting.path, f"{{who}} does not take the {lane} lane", hint,
                            who=("model", spec.name))
        return STANDARD
    where = settings["model"].path if "model" in settings else target.path
    targets.findings.error(where, f"--lane {lane}: {{who}} does not take the {lane} lane",
                        f"{hint}; drop --lane, and set `lane:` in the manifest where it "
                        "applies", who=("model", spec.name))
    return STANDARD
