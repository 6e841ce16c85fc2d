"""What each backend's models accept and cost (from ../shared/api-facts.md, 2026).

Pure data, no I/O: the planner checks requests against it and prices frames with it; the
backends read their wire names from it. Prices are USD per image as Decimal (sums of floats
print as 0.37000000000000005). A manifest's `pricing:` section overrides prices, never limits.

Where the vendors' docs leave a limit unconfirmed, it is `None` ("not checked here"): the server
is then the judge, and nbpipe does not refuse what may be valid.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from decimal import Decimal
from types import MappingProxyType
from typing import Mapping

FLAT = "*"  # the price key of a model without resolution tiers

_HIAPI_RATIOS = ("auto", "1:1", "16:9", "9:16", "3:4", "4:3", "3:2", "2:3", "5:4", "4:5", "21:9")
_GEMINI_RATIOS = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")
_EXTREME_RATIOS = ("1:4", "4:1", "1:8", "8:1")

# Canonical output formats the manifest speaks; each model maps them to its own wire enum.
FORMATS = ("png", "jpeg")
FORMAT_ALIASES = {"jpg": "jpeg"}
EXTENSIONS = {"png": "png", "jpeg": "jpg"}


@dataclass(frozen=True)
class ModelSpec:
    """One model of one backend: what a request to it may contain, and its price per image."""

    backend: str
    name: str
    max_inputs: int  # input images it takes; 0 = text-to-image only
    aspect_ratios: tuple[str, ...]
    resolutions: tuple[str, ...] = ()  # () = sending a resolution is an error (HiAPI answers 400)
    default_resolution: str | None = None
    formats: Mapping[str, str] | None = None  # canonical → wire value; None = the model chooses
    prices: Mapping[str, Decimal] = field(default_factory=dict)  # resolution (or FLAT) → USD
    prompt_max: int | None = None

    def price(self, resolution: str | None) -> Decimal:
        if FLAT in self.prices:
            return self.prices[FLAT]
        return self.prices.get(resolution or self.default_resolution or "", Decimal(0))


def _usd(**by_resolution: str) -> Mapping[str, Decimal]:
    return MappingProxyType({k.removeprefix("r").replace("flat", FLAT): Decimal(v)
                             for k, v in by_resolution.items()})


_PNG_JPEG = MappingProxyType({"png": "png", "jpeg": "jpeg"})
_PNG_JPG = MappingProxyType({"png": "png", "jpeg": "jpg"})

_REAL_MODELS = (
    ModelSpec("hiapi", "Nano-Banana", max_inputs=0, aspect_ratios=_HIAPI_RATIOS,
              formats=_PNG_JPEG, prices=_usd(flat="0.05"), prompt_max=5000),
    ModelSpec("hiapi", "Nano-Banana-2", max_inputs=8, aspect_ratios=_HIAPI_RATIOS + _EXTREME_RATIOS,
              resolutions=("1K", "2K", "4K"), default_resolution="1K", formats=_PNG_JPG,
              prices=_usd(r1K="0.085", r2K="0.076", r4K="0.114")),
    ModelSpec("hiapi", "Nano-Banana-Pro", max_inputs=8, aspect_ratios=_HIAPI_RATIOS,
              resolutions=("1K", "2K", "4K"), default_resolution="1K", formats=_PNG_JPG,
              prices=_usd(r1K="0.17", r2K="0.17", r4K="0.30"), prompt_max=10000),
    ModelSpec("gemini", "gemini-2.5-flash-image", max_inputs=3, aspect_ratios=_GEMINI_RATIOS,
              prices=_usd(flat="0.039")),
    ModelSpec("gemini", "gemini-3-pro-image-preview", max_inputs=14, aspect_ratios=_GEMINI_RATIOS,
              resolutions=("1K", "2K", "4K"), default_resolution="1K",
              prices=_usd(r1K="0.134", r2K="0.134", r4K="0.24")),
    ModelSpec("gemini", "gemini-3.1-flash-image-preview", max_inputs=14,
              aspect_ratios=_GEMINI_RATIOS + _EXTREME_RATIOS,
              resolutions=("512", "1K", "2K", "4K"), default_resolution="1K",
              prices=_usd(r512="0.045", r1K="0.067", r2K="0.101", r4K="0.151")),
)

BACKENDS = ("hiapi", "gemini", "preview")
DEFAULT_BACKEND = "preview"
DEFAULT_MODELS = {"hiapi": "Nano-Banana", "gemini": "gemini-2.5-flash-image",
                  "preview": "Nano-Banana"}


class Catalog:
    """backend → model → ModelSpec, with the manifest's price overrides applied."""

    def __init__(self, models: tuple[ModelSpec, ...]):
        self.models: dict[str, dict[str, ModelSpec]] = {b: {} for b in BACKENDS}
        for spec in models:
            self.models[spec.backend][spec.name] = spec

    def get(self, backend: str, model: str) -> ModelSpec | None:
        return self.models.get(backend, {}).get(model)

    def with_prices(self, pricing: Mapping[str, Mapping[str, object]]) -> "Catalog":
        """A copy with `pricing:` applied: {backend: {model: price | {resolution: price}}}."""
        specs = []
        for backend in BACKENDS:
            for spec in self.models[backend].values():
                override = pricing.get(backend, {}).get(spec.name)
                if isinstance(override, Mapping):
                    prices = dict(spec.prices)
                    prices.pop(FLAT, None)
                    prices.update({str(r): Decimal(str(p)) for r, p in override.items()})
                    spec = replace(spec, prices=MappingProxyType(prices))
                elif override is not None:
                    spec = replace(spec, prices=MappingProxyType({FLAT: Decimal(str(override))}))
                specs.append(spec)
        return Catalog(tuple(specs))


def _preview_models() -> tuple[ModelSpec, ...]:
    # The preview backend stands in for any real model: same limits (so a preview build catches
    # what the real one would refuse), free, and keyed apart because the backend is in the key.
    return tuple(replace(s, backend="preview", prices=_usd(flat="0")) for s in _REAL_MODELS)


BUILTIN = Catalog(_REAL_MODELS + _preview_models())
