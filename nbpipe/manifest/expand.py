"""Declared targets → resolved targets (extends folded in, see targets.py) → frame specs
(matrix and variants), within the manifest's `max_frames`.

Still the declared tense: nothing here knows backends, prices or files. Every problem becomes a
located Diagnostic; all of them are collected before `ManifestError` is raised.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

from nbpipe.errors import Diagnostic, ManifestError
from nbpipe.manifest.declared import Declared, FrameSpec, ResolvedTarget, Setting, section_name
from nbpipe.manifest.load import Loaded
from nbpipe.manifest.models import Bible
from nbpipe.manifest.targets import compile_template, name_part, resolve_targets
from nbpipe.manifest.templates import Template, reset_budget
from nbpipe.settings import current

# Where the declared tense's names were first defined: other layers import them from here.
__all__ = ["Declared", "FrameSpec", "ResolvedTarget", "Setting", "compile_template", "expand",
           "frames_ceiling", "name_part", "section_name"]

# Settings a matrix axis or a variant may vary per frame (channel crops: 1:1, 9:16, 21:9).
FRAME_SETTINGS = ("model", "aspect_ratio", "resolution", "quality")
# A variant may also send its frames on another lane (hero shots now, the rest in a batch).
VARIANT_SETTINGS = (*FRAME_SETTINGS, "lane")
MAX_FRAMES_CEILING = 100_000  # what a manifest may raise max_frames to; NBPIPE_MAX_FRAMES lifts it


def expand(loaded: Loaded, profile: str | None = None, backend: str | None = None,
           only: frozenset[str] | None = None) -> Declared:
    """Resolve and expand every target under a profile (None: the default) and a command-line
    backend override (None: none); a manifest past `max_frames` is refused at once. `only`:
    the targets whose frames are made (plan/reach.py); every target is still resolved and
    counted, so what the whole manifest declares is checked the same."""
    diags: list[Diagnostic] = list(loaded.diags)  # from targets the loader had to leave out
    manifest = loaded.manifest
    bibles = {name: Bible(text=b) if isinstance(b, str) else b
              for name, b in manifest.bibles.items()}
    reset_budget()
    templates = _compile_templates(loaded, diags)
    targets = resolve_targets(loaded, templates, bibles, diags, profile,
                              section_name(profile, backend))
    _check_size(loaded, targets, diags)
    frames = [spec for target in targets.values() if only is None or target.name in only
              for spec in _frames(target)]
    builtin = profile is not None and profile not in manifest.profiles
    return Declared(loaded, bibles, targets, frames, diags, profile, builtin, backend)


def _compile_templates(loaded: Loaded, diags: list[Diagnostic]) -> dict[str, Template]:
    compiled = {}
    for name, source in loaded.manifest.templates.items():
        template = compile_template(source, ("templates", name), loaded, diags)
        if template is not None:
            compiled[name] = template
    return compiled


def _count(target: ResolvedTarget) -> int:
    count = math.prod(len(values) for values in target.matrix.values()) if target.matrix else 1
    return count * len(target.variants) if target.variants else count


def frames_ceiling() -> int:
    """How far a manifest may raise max_frames: the person running nbpipe decides
    ($NBPIPE_MAX_FRAMES), since a manifest may come from a pull request."""
    return current().max_frames or MAX_FRAMES_CEILING


def _check_size(loaded: Loaded, targets: dict[str, ResolvedTarget],
                diags: list[Diagnostic]) -> None:
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
    """The matrix's frames (`target/red`), each variant's (`target/matte`), or with both their
    cross product (`target/red/matte`); else the one frame named like the target."""
    inputs = tuple(target.inputs)
    cells = _cells(target, target.matrix, inputs) if target.matrix else \
        [FrameSpec(target.name, target, "", dict(target.vars), inputs=inputs)]
    if not target.variants:
        return cells
    return [FrameSpec(
        f"{cell.name}/{vname}", target, f"{cell.variant}/{vname}" if cell.variant else vname,
        {**cell.vars, **v.vars}, cell.bindings, {**cell.settings, **{
            key: Setting(getattr(v, key), (*target.variants_path, vname, key))
            for key in VARIANT_SETTINGS if getattr(v, key) is not None}},
        target.patches.get(vname), vname, inputs if v.inputs is None else tuple(
            Setting(ref, (*target.variants_path, vname, "inputs", i))
            for i, ref in enumerate(v.inputs)))
        for cell in cells for vname, v in target.variants.items()]


def _cells(target: ResolvedTarget, matrix: dict[str, list[Any]],
           inputs: tuple[Setting, ...]) -> list[FrameSpec]:
    """One frame per combination of the matrix's values."""
    axes = list(matrix)
    specs: list[FrameSpec] = []
    # each value's name part made once, not once a frame (a 100x100 matrix: 40,000 calls)
    indexed = [[(i, value, name_part(value)) for i, value in enumerate(values)]
               for values in matrix.values()]
    for combo in itertools.product(*indexed):
        binding = {axis: value for axis, (_, value, _) in zip(axes, combo, strict=True)}
        suffix = "-".join(part for _, _, part in combo)
        settings = {axis: Setting(str(value), (*target.matrix_path, axis, i))
                    for axis, (i, value, _) in zip(axes, combo, strict=True)
                    if axis in FRAME_SETTINGS}
        specs.append(FrameSpec(f"{target.name}/{suffix}", target, suffix,
                               {**target.vars, **binding},
                               {axis: part for axis, (_, _, part) in zip(axes, combo, strict=True)},
                               settings, inputs=inputs))
    return specs
