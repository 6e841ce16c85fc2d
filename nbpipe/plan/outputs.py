"""Where frames write: each frame's output path, checked to stay inside the project, and which
frame writes a path another frame names as its input."""

from __future__ import annotations

from nbpipe.manifest.declared import Declared, FrameSpec
from nbpipe.manifest.expand import name_part
from nbpipe.plan.findings import Findings
from nbpipe.plan.paths import PathRefused, ProjectDir, relative_path

IMAGE_EXTS = ("png", "jpg", "jpeg", "webp")
SENT = ("model", "aspect_ratio", "resolution")  # request settings an output pattern may name


class Outputs:
    """The output paths of a manifest's frames (an output pattern filled per frame)."""

    declared: Declared
    project: ProjectDir
    findings: Findings
    _written: dict[str, str] | None  # output path → frame, built on first need
    _slugs: dict[str, str]  # a setting's value → as a path part: a few values, 6 asks a frame

    def __init__(self, declared: Declared, project: ProjectDir, findings: Findings) -> None:
        self.declared = declared
        self.project = project
        self.findings = findings
        self._written = None
        self._slugs = {}

    def path(self, spec: FrameSpec, ext: str, sent: dict[str, str] | None = None) -> str | None:
        """The frame's output path for an image of extension `ext` and request settings `sent`
        (model, aspect_ratio, resolution); None (reported) if refused."""
        setting = spec.target.params["output"]
        try:
            fields = {**self._fields(spec, ext), **self._slugged(sent or {})}
            return self.project.check_output(setting.value.format_map(fields))
        except PathRefused as exc:
            self.findings.error(setting.path, f"output of {{who}} refused: {exc}",
                                "outputs must stay inside the project, e.g. out/{frame}.{ext}",
                                who=("frame", spec.name), key="output refused")
        except KeyError:
            pass  # an unknown placeholder: the manifest's checks reported it, once per pattern
        except (ValueError, IndexError) as exc:
            self.findings.error(setting.path, f"output pattern cannot be filled: {exc}")
        return None

    def writer(self, ref: str) -> str | None:
        """The frame that may write the project file `ref` (under any image extension)."""
        try:
            return self._writers().get(relative_path(ref))
        except PathRefused:
            return None

    def _writers(self) -> dict[str, str]:
        """Every path some frame may write (under any image extension) → that frame's name."""
        if self._written is None:
            self._written = {}
            for spec in self.declared.frames:
                setting = spec.target.params.get("output")
                if setting is None:
                    continue
                for ext in IMAGE_EXTS:
                    try:
                        path = relative_path(setting.value.format_map(self._fields(spec, ext)))
                    except (AttributeError, KeyError, ValueError, IndexError, PathRefused):
                        break  # reported where the frame's own output is resolved
                    self._written.setdefault(path, spec.name)
        return self._written

    def _fields(self, spec: FrameSpec, ext: str) -> dict[str, str]:
        """The placeholders a pattern may use; the request settings as declared (the planner
        passes them as sent)."""
        declared = {key: str(s.value) for key in SENT
                    if (s := spec.settings.get(key) or spec.target.params.get(key)) is not None}
        return {"frame": spec.name, "target": spec.target.name, "variant": spec.variant,
                "ext": ext, "profile": self.declared.section or "", **dict.fromkeys(SENT, ""),
                **self._slugged(declared), **spec.bindings}

    def _slugged(self, settings: dict[str, str]) -> dict[str, str]:
        """Request settings as path parts: `9:16` → `9-16`, like a matrix value."""
        slugs = self._slugs
        return {key: slugs.get(value) or slugs.setdefault(value, name_part(value))
                for key, value in settings.items() if key in SENT}
