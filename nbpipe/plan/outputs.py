"""Where frames write: each frame's output path, checked to stay inside the project, and which
frame writes a path another frame names as its input."""

from __future__ import annotations

from nbpipe.manifest.declared import Declared, FrameSpec
from nbpipe.plan.findings import Findings
from nbpipe.plan.paths import PathRefused, ProjectDir, relative_path

IMAGE_EXTS = ("png", "jpg", "jpeg", "webp")


class Outputs:
    """The output paths of a manifest's frames (an output pattern filled per frame)."""

    declared: Declared
    project: ProjectDir
    findings: Findings
    _written: dict[str, str] | None  # output path → frame, built on first need

    def __init__(self, declared: Declared, project: ProjectDir, findings: Findings) -> None:
        self.declared = declared
        self.project = project
        self.findings = findings
        self._written = None

    def path(self, spec: FrameSpec, ext: str) -> str | None:
        """The frame's output path for an image of extension `ext`; None (reported) if refused."""
        setting = spec.target.params["output"]
        try:
            return self.project.check_output(setting.value.format_map(self._fields(spec, ext)))
        except PathRefused as exc:
            self.findings.error(setting.path, f"output of {{who}} refused: {exc}",
                                "outputs must stay inside the project, e.g. out/{frame}.{ext}",
                                who=("frame", spec.name), key="output refused")
        except (KeyError, ValueError, IndexError) as exc:
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
        return {"frame": spec.name, "target": spec.target.name, "variant": spec.variant,
                "ext": ext, "profile": self.declared.section or "", **spec.bindings}
