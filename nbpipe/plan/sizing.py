"""The request settings of models priced by quality and size (OpenAI's gpt-image models):
`quality`, the `size` sent for the aspect ratio and tier, and `background`, each checked
against the catalogue at plan time, as located errors. Nothing here names a backend: what a
model takes is the catalogue's data."""

from __future__ import annotations

from collections.abc import Mapping

from nbpipe.catalog import ALPHA_FORMATS, EXTENSIONS, ModelSpec
from nbpipe.manifest.declared import Setting
from nbpipe.plan.findings import Findings

DEFAULT_LONG_SIDE = 1024  # a model that takes no tier: about a megapixel
# Where a quality set for many targets comes from: on a model that takes none it is left out,
# not an error (a project mixing OpenAI and Gemini sets `defaults: quality:` once)
FOLLOWS_THE_MODEL = ("defaults", "profiles")


def request_extras(spec: ModelSpec, settings: Mapping[str, Setting], params: dict[str, str],
                   ext: str, findings: Findings, tiers: Mapping[str, int],
                   draft: bool = False) -> None:
    """Add `quality`, `size` and `background` to `params` where the model takes them (always
    sent where it does: the request, and so the key, says what is paid for). `draft`: the
    built-in draft profile, which renders at the model's lowest quality, whatever is set."""
    if draft and spec.qualities:
        params["quality"] = spec.qualities[0]  # the catalogue lists them cheapest first
    else:
        _quality(spec, settings.get("quality"), params, findings)
    tier = params.get("resolution")
    size = spec.size_for(params.get("aspect_ratio"), tier,
                         tiers.get(tier or "", DEFAULT_LONG_SIDE))
    if size is not None:
        params["size"] = size
    _background(spec, settings.get("background"), params, ext, findings)


def _quality(spec: ModelSpec, setting: Setting | None, params: dict[str, str],
             findings: Findings) -> None:
    who = ("model", spec.name)
    if not spec.qualities:
        if setting is not None and setting.path[0] not in FOLLOWS_THE_MODEL:
            findings.error(setting.path, "a quality is not taken by {who}",
                           "remove `quality`, or pick a model with quality levels (`nbpipe "
                           "models` lists them)", who=who)
        return
    if setting is not None and setting.value not in spec.qualities:
        findings.error(setting.path, f"quality '{setting.value}' is not taken by {{who}}",
                       f"{spec.name} takes {', '.join(spec.qualities)}", who=who,
                       key=f"quality {setting.value} on {spec.name}")
        return
    quality = setting.value if setting is not None else spec.default_quality
    if quality is not None:
        params["quality"] = quality


def _background(spec: ModelSpec, setting: Setting | None, params: dict[str, str], ext: str,
                findings: Findings) -> None:
    if setting is None:
        return
    who = ("model", spec.name)
    value = setting.value
    if not spec.backgrounds:
        if setting.path[0] != "defaults":
            findings.error(setting.path, "a background is not taken by {who}",
                           "remove `background` for this model", who=who)
    elif value not in spec.backgrounds:
        findings.error(setting.path, f"background '{value}' is not taken by {{who}}",
                       f"{spec.name} takes {', '.join(spec.backgrounds)}", who=who,
                       key=f"background {value} on {spec.name}")
    elif value == "transparent" and ext not in {EXTENSIONS[f] for f in ALPHA_FORMATS}:
        findings.error(setting.path, "a transparent background needs png or webp output, and "
                       f"this target's is {ext}", "set `output_format: png` (or webp), or drop "
                       "`background: transparent`")
    else:
        params["background"] = value
