"""The declared tense's values: targets with their inheritance folded in, and the frame specs a
manifest expands to. Nothing here knows backends, prices or files."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nbpipe.errors import Diagnostic
from nbpipe.manifest.load import Loaded
from nbpipe.manifest.models import Bible
from nbpipe.manifest.source import Path
from nbpipe.manifest.templates import Template


@dataclass(frozen=True)
class Setting:
    """A resolved value and the manifest path it came from (for locating errors)."""

    value: Any
    path: Path


@dataclass
class ResolvedTarget:
    """A target with its `extends` chain and `defaults` folded in."""

    name: str
    template: Template
    template_path: Path  # where the template's source sits: ("templates", x) or a target's prompt
    template_name: str | None
    bible: str | None
    vars: dict[str, Any]
    params: dict[str, Setting]
    inputs: list[Setting]
    matrix: dict[str, list[Any]] | None = None
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
    variant: str  # the part of the name after "target/" ("red", "matte", "red/matte"; "" for
    # a single-frame target): `{variant}` in output patterns
    vars: dict[str, Any]
    bindings: dict[str, str] = field(default_factory=dict)  # axis → value as in names, paths
    settings: dict[str, Setting] = field(default_factory=dict)  # FRAME_SETTINGS it overrides
    patch: Template | None = None  # rendered like the template's own leaves, then merged
    variant_name: str = ""  # its variant's name in `variants:` ("" for none)
    inputs: tuple[Setting, ...] = ()  # as declared (the variant's, else the target's): Jinja
    # in them renders with the frame's vars, like the prompt


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
