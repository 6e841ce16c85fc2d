"""A target's input images: its own inputs, then its bible's references, each a project file
(keyed on its bytes), an https URL, or another frame's output (an edge in the build graph)."""

from __future__ import annotations

import datetime as dt
import os
from typing import Literal

from nbpipe.catalog import Catalog, ModelSpec
from nbpipe.manifest.declared import Declared, ResolvedTarget, Setting
from nbpipe.manifest.expand import name_part
from nbpipe.manifest.source import Path, did_you_mean
from nbpipe.plan.findings import Findings
from nbpipe.plan.frame import InputImage, url_digest
from nbpipe.plan.outputs import Outputs
from nbpipe.plan.paths import PathRefused, ProjectDir

Role = Literal["input", "reference"]
URL_SCHEMES = ("https://", "http://")


class Inputs:
    """Resolves input references and checks them against the model that takes them: how many,
    how they travel (URL or inline bytes), how big."""

    declared: Declared
    catalog: Catalog
    findings: Findings
    project: ProjectDir
    outputs: Outputs
    today: dt.date
    uploads: bool  # a remote cache can turn local images into https URLs
    frame_names: set[str]
    frames_of: dict[str, list[str]]  # target → its frames
    declared_targets: set[str]  # those that loaded, and those with errors of their own

    def __init__(self, declared: Declared, catalog: Catalog, findings: Findings,
                 outputs: Outputs, today: dt.date, uploads: bool) -> None:
        self.declared = declared
        self.catalog = catalog
        self.findings = findings
        self.project = outputs.project
        self.outputs = outputs
        self.today = today
        self.uploads = uploads
        self.frame_names = {spec.name for spec in declared.frames}
        self.frames_of = {}
        for spec in declared.frames:
            self.frames_of.setdefault(spec.target.name, []).append(spec.name)
        self.declared_targets = set(declared.loaded.manifest.targets) | \
            declared.loaded.broken_targets

    def of(self, target: ResolvedTarget, spec: ModelSpec,
           inputs: tuple[Setting, ...]) -> list[tuple[InputImage, Path]]:
        """The images a frame of `target` sends to model `spec` (its `inputs` as rendered for
        it, then its bible's references), each with where it is declared."""
        images = [(img, s.path) for s in inputs if (img := self._input(s))]
        if images and spec.max_inputs == 0:
            self.findings.error(inputs[0].path, f"{spec.name} takes no input images "
                                "(text-to-image only)", self._edit_models_hint(spec.backend))
            return []
        if spec.max_inputs and target.bible:
            images += self._references(target.bible)
        elif target.bible and (bible := self.declared.bibles.get(target.bible)) and \
                bible.references:
            self.findings.warn(("bibles", target.bible, "references"), f"the references of "
                               f"bible '{target.bible}' are not sent to {spec.name}, which takes "
                               "no input images", "identity rests on the text alone there; "
                               f"{' or '.join(self._takers(spec.backend)) or 'no model here'} "
                               "would send them", "warning")
        self._check_transport(spec, images)
        if len(images) < spec.min_inputs:
            self.findings.error(inputs[0].path if inputs else target.path,
                                f"{spec.name} is an edit model: it needs {spec.min_inputs} input "
                                f"image(s), and target '{target.name}' sends {len(images)}",
                                "give the target `inputs:`, or pick a text-to-image model")
        if len(images) > spec.max_inputs > 0:
            self.findings.error(inputs[0].path if inputs else target.path,
                                f"target '{target.name}' sends {len(images)} input images; "
                                f"{spec.name} takes at most {spec.max_inputs}",
                                "bible references count too")
        return images

    def _references(self, name: str) -> list[tuple[InputImage, Path]]:
        """A bible's identity references: sent after the target's own inputs."""
        bible = self.declared.bibles.get(name)
        images: list[tuple[InputImage, Path]] = []
        for i, ref in enumerate(bible.references if bible else ()):
            path = ("bibles", name, "references", i)
            if ref.startswith(URL_SCHEMES):
                images.append((InputImage("url", ref, url_digest(ref), "reference"), path))
            elif (image := self._file_input(ref, path, "reference")) is not None:
                images.append((image, path))
        return images

    def _check_transport(self, spec: ModelSpec, images: list[tuple[InputImage, Path]]) -> None:
        """Some backends fetch input images by URL (HiAPI), others take them inline as bytes."""
        for image, path in images:
            if spec.transport == "url" and image.kind == "file" and not self.uploads:
                self.findings.error(
                    path, f"HiAPI takes input images as URLs, and '{image.ref}' is a local file",
                    "give an https:// URL, configure a remote cache (`cache: {remote: s3://...}`)"
                    " to upload it, or render this target on gemini (it takes images inline)")
            elif spec.transport == "inline" and image.kind == "url":
                self.findings.error(
                    path, f"Gemini takes input images inline, and '{image.ref}' is a URL",
                    "save the image into the project and name the file instead")
            elif spec.input_max_bytes and image.kind == "file":
                self._check_size(spec.name, spec.input_max_bytes, image.ref, path)

    def _check_size(self, model: str, limit: int, ref: str, path: Path) -> None:
        try:
            size = os.stat(os.path.join(self.project.root, ref)).st_size
        except OSError:
            return  # already reported by the digest
        if size > limit:
            self.findings.error(path, f"input '{ref}' has {size:,} bytes; {model} takes at most "
                                f"{limit:,} per image", "downscale or recompress it")

    def _takers(self, backend: str) -> list[str]:
        """The models in service on `backend` that take input images."""
        return [m for m, s in self.catalog.in_service(backend, self.today).items()
                if s.max_inputs]

    def _edit_models_hint(self, backend: str) -> str:
        takers = self._takers(backend)
        return f"use {' or '.join(takers)} for edits" if takers \
            else "pick a model that takes images"

    def _input(self, setting: Setting) -> InputImage | None:
        ref: str = setting.value
        if ref.startswith(URL_SCHEMES):
            return InputImage("url", ref, url_digest(ref))
        if ref in self.frame_names:
            return InputImage("frame", ref, None)
        owner, _, rest = ref.partition("/")
        if rest and owner in self.declared_targets and not self._a_file(ref):
            return self._frame_input(owner, rest, setting)
        if ref in self.frames_of:
            frames = self.frames_of[ref]
            if len(frames) == 1:
                return InputImage("frame", frames[0], None)
            self.findings.error(setting.path, f"input '{ref}' makes {len(frames)} frames; "
                                "name one", f"for example '{frames[0]}'")
            return None
        if ref in self.declared_targets or \
                ref.split("/")[0] in self.declared.loaded.broken_targets:
            return None  # a target with its own error, already reported
        if "/" not in ref and "." not in ref:
            names = [*self.frames_of, *self.frame_names]
            self.findings.error(setting.path, f"unknown input '{ref}': no such target, frame "
                                "or file", did_you_mean(ref, names))
            return None
        return self._file_input(ref, setting.path)

    def _a_file(self, ref: str) -> bool:
        """A project file or an output whose folder happens to share a target's name."""
        return self.outputs.writer(ref) is not None or \
            os.path.lexists(os.path.join(self.project.root, ref))

    def _frame_input(self, owner: str, rest: str, setting: Setting) -> InputImage | None:
        """`target/...`: one of that target's frames, named as written or by its matrix values
        as rendered (`master/glacier blue` is `master/glacier-blue`); never a file."""
        slug = "/".join([owner, *(name_part(part) for part in rest.split("/"))])
        if slug in self.frame_names:
            return InputImage("frame", slug, None)
        ref = setting.value
        own = self.frames_of.get(owner, [])
        if not own:
            return None  # that target has errors of its own, already reported
        under = [f for f in own if f.startswith(f"{slug}/")]
        if under:
            self.findings.error(setting.path, f"input '{ref}' makes {len(under)} frames; "
                                "name one", f"for example '{under[0]}'")
            return None
        self.findings.error(setting.path, f"target '{owner}' has no frame '{ref}'",
                            did_you_mean(slug, own) or f"its frames: {', '.join(own[:6])}"
                            + (", ..." if len(own) > 6 else ""))
        return None

    def _file_input(self, ref: str, path: Path, role: Role = "input") -> InputImage | None:
        """A project file, or the frame that writes it: an output used as an input is an edge
        to its frame (keyed on the bytes that frame pins, built after it), never a file read
        now, which a build would then overwrite under a key made from the old bytes."""
        owner = self.outputs.writer(ref)
        if owner is not None:
            return InputImage("frame", owner, None, role)
        found = self._file(ref, path)
        return InputImage("file", found[0], found[1], role) if found else None

    def _file(self, ref: str, path: Path) -> tuple[str, str] | None:
        try:
            return self.project.file_digest(ref)
        except FileNotFoundError:
            names = [*self.frames_of, *self.frame_names]
            self.findings.error(path, f"file '{ref}' not found in the project",
                                did_you_mean(ref, names)
                                or "file paths are relative to the project directory")
        except PathRefused as exc:
            self.findings.error(path, f"input refused: {exc}",
                                "inputs must be image files inside the project")
        except OSError as exc:
            self.findings.error(path, f"cannot read '{ref}': {exc.strerror}")
        return None
