"""The manifest as declared: pydantic models of nbpipe.yaml (its JSON Schema is generated from
them).

These types describe what the user wrote, nothing more: a `Target` may lack a model (it inherits
one), name a template that does not exist, or expand to ten thousand frames. Resolution happens
in `expand.py` (declared → per-frame specs) and in `nbpipe.plan` (specs → priced, keyed frames).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, PositiveInt, field_validator

Scalar = str | int | float | bool
Axis = Annotated[list[Scalar], Field(min_length=1)]
JsonPrompt = dict[str, Any]
# How a frame's request is sent and priced (the catalogue lists the lanes each model takes).
LaneName = Literal["standard", "batch", "flex"]
LANE_HELP = ("standard (one call per image) | batch (the provider's batch API: half price, "
             "results within 24 h) | flex (a cheaper best-effort call); `nbpipe models` lists "
             "the lanes each model takes")

DEFAULT_MAX_FRAMES = 100_000


# A price is a finite number: .inf would print as "Infinity" and make JSON output invalid.
Price = Annotated[float, Field(ge=0, allow_inf_nan=False)]

class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _TiersAsText(_Strict):
    @field_validator("resolution", "aspect_ratio", mode="before", check_fields=False)
    @classmethod
    def _numbers_as_text(cls, value: Any) -> Any:
        # `resolution: 512` arrives from YAML as an int; the catalogue speaks strings.
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class Params(_TiersAsText):
    """Render settings a target inherits from `defaults` (and from the target it `extends`)."""

    backend: str | None = Field(
        default=None, description="hiapi | gemini | openai | fal | preview (offline, free)")
    model: str | None = Field(
        default=None, description="a model of the backend; `nbpipe models` lists them")
    aspect_ratio: str | None = Field(
        default=None, description="width:height as the model lists it, e.g. 3:2; quote it in YAML")
    resolution: str | None = Field(
        default=None, description="a resolution tier of the model; `nbpipe models` lists them")
    output_format: str | None = Field(
        default=None, description="png | jpeg (jpg is the same) | webp, as the model takes")
    lane: LaneName | None = Field(default=None, description=LANE_HELP)
    output: str | None = Field(
        default=None,
        description="output path pattern: {frame} {target} {variant} {ext}, the request's "
        "{model} {aspect_ratio} {resolution}, and matrix variables")
    quality: str | None = Field(
        default=None, description="a quality level, where the model takes one (OpenAI: low | "
        "medium | high; its 2.5 models also xhigh | max); `nbpipe models` lists them")
    background: str | None = Field(
        default=None, description="auto | opaque | transparent (png or webp output), where "
        "the model takes it")



class Defaults(Params):
    """Settings every target inherits unless it overrides them."""


class Bible(_Strict):
    """A character bible: a dense paragraph reused verbatim as a prompt prefix."""

    text: str = Field(description="the paragraph; `{{ bible }}` in a template")
    markers: list[str] = Field(default_factory=list, description="identity markers to check by eye")
    references: list[str] = Field(
        default_factory=list,
        description="identity-anchor images (project files), sent where the model takes input "
        "images")


class Variant(_TiersAsText):
    """A named minimal-diff variant: extra vars, an RFC 7386 merge patch on the JSON prompt,
    and/or its own model, aspect ratio or resolution (a tall story crop beside a square product shot).
    """  # noqa: E501 (the docstring is the schema's description, word for word)

    vars: dict[str, Any] = Field(default_factory=dict)
    patch: JsonPrompt | None = None
    model: str | None = None
    aspect_ratio: str | None = Field(
        default=None, description='width:height, one the model takes; quote it in YAML')
    resolution: str | None = None
    lane: LaneName | None = Field(default=None, description=LANE_HELP)
    inputs: list[str] | None = Field(
        default=None, description="input images of this variant's frames, instead of the "
        "target's")
    quality: str | None = Field(
        default=None, description="a quality level of the model, for this variant's frames")


class Target(Params):
    """
    A render target as declared; `extends`, `matrix` and `variants` make it one or more frames."""

    template: str | None = Field(default=None, description="name of a template in `templates`")
    prompt: str | JsonPrompt | None = Field(
        default=None, description="an inline template instead of `template`")
    bible: str | None = Field(
        default=None, description="name of a bible; its text is `{{ bible }}`")
    vars: dict[str, Any] | None = None
    extends: str | None = Field(default=None, description="inherit everything from another target")
    matrix: dict[str, Axis] | None = Field(
        default=None,
        description="cartesian product of values; frame names join the values with '-'; "
        "an axis named model, aspect_ratio, resolution or quality sets that per frame")
    variants: dict[str, Variant] | None = None
    inputs: list[str] | None = Field(
        default=None,
        description="input images: other targets or frames (an edit), or project files; "
        "rendered like a prompt, so `master/{{ color }}` follows the frame's matrix value")


class Profile(_TiersAsText):
    """A named set of overrides, chosen with `--profile NAME` (draft, production, hero...)."""

    backend: str | None = None
    model: str | None = None
    resolution: str | None = None
    aspect_ratio: str | None = None
    lane: LaneName | None = Field(default=None, description=LANE_HELP)
    output: str | None = Field(
        default=None, description="output pattern while this profile is active "
        "(default: the usual one with the profile name as a folder)")
    targets: list[str] | None = Field(
        default=None, description="globs of target names it applies to")
    wins: bool = Field(default=False, description="override what targets set explicitly too")
    quality: str | None = Field(
        default=None, description="a quality level, on the targets whose model takes one "
        "(the others are left as they are)")



class CacheConfig(_Strict):
    """Where images are shared beyond this machine."""

    remote: str | None = Field(default=None, description="an fsspec URL, e.g. s3://bucket/prefix "
                               "($NBPIPE_REMOTE overrides)")
    endpoint_url: str | None = Field(default=None, description="S3-compatible endpoint (R2, MinIO)")
    url_lifetime: PositiveInt = Field(
        default=3600, description="seconds a presigned input-image URL stays valid (HiAPI inputs)")


class BackendLimits(_Strict):
    """How hard a build may press one backend."""

    jobs: PositiveInt | None = Field(default=None, description="frames in flight at once")
    rpm: PositiveInt | None = Field(default=None, description="requests per minute, all kinds")


class Manifest(_Strict):
    """The whole of nbpipe.yaml."""

    version: Literal[1] = Field(description="manifest format version; this nbpipe reads 1")
    name: str | None = None
    defaults: Defaults = Field(default_factory=Defaults)
    bibles: dict[str, Bible | str] = Field(default_factory=dict)
    templates: dict[str, str | JsonPrompt] = Field(default_factory=dict)
    targets: dict[str, Target] = Field(default_factory=dict)
    pricing: dict[str, dict[str, Price | dict[str, Price]]] = Field(
        default_factory=dict,
        description="USD per image overrides: {backend: {model: price | {resolution: price}}}")
    max_frames: PositiveInt = Field(
        default=DEFAULT_MAX_FRAMES, le=10_000_000,
        description="refuse manifests that expand past this many frames")
    max_cost: NonNegativeFloat | None = Field(
        default=None, description="USD a build may spend at most (--max-cost overrides)")
    limits: dict[str, BackendLimits] = Field(
        default_factory=dict, description="per backend: {jobs, rpm}")
    profiles: dict[str, Profile] = Field(
        default_factory=dict, description="named overrides: nbpipe build --profile NAME")
    cache: CacheConfig = Field(default_factory=CacheConfig)


# The keys each kind of mapping accepts, for "unknown key ... did you mean" hints.
ALLOWED_KEYS: dict[str, tuple[str, ...]] = {
    "manifest": tuple(Manifest.model_fields),
    "defaults": tuple(Defaults.model_fields),
    "target": tuple(Target.model_fields),
    "bible": tuple(Bible.model_fields),
    "variant": tuple(Variant.model_fields),
    "limits": tuple(BackendLimits.model_fields),
    "profile": tuple(Profile.model_fields),
    "cache": tuple(CacheConfig.model_fields),
}
