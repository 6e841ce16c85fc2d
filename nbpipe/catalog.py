"""The model catalogue: loads and validates nbpipe/data/catalog.json, the one place model facts
live (what each backend's models accept and cost, their status, dates and replacements).

Everything else (resolve, planner, prices, backends, the fakes in tests/) asks this module; no
other module names a model, a price or a limit, so a retirement is a one-file change. Prices are
USD per image as Decimal (sums of floats print as 0.37000000000000005). A manifest's `pricing:`
overrides prices, never limits. A limit the vendors leave unconfirmed may be None: the server
is then the judge, and nbpipe does not refuse what may be valid.

Lanes: every model takes the standard lane (one `generateContent` call per image, at `prices`).
A model may list more under `lanes` with their own prices per tier: `batch` (the provider's
batch API) and `flex` (a cheaper, sheddable synchronous tier). Where a lane's price is not
stated by the vendor for this model, `confirmed: false` says so (`nbpipe models` marks it). A
manifest's `pricing:` overrides the standard lane only; the other lanes keep their list prices.

A model is shut down from its `shutdown` date on; "today" is the UTC date, or NBPIPE_TODAY
(YYYY-MM-DD) so tests and rehearsals can move the clock.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from importlib.resources import files
from types import MappingProxyType
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    model_validator,
)

from nbpipe.errors import UsageError
from nbpipe.settings import LANES, current

FLAT = "*"  # the price key of a model without resolution tiers
WARN_DAYS = 30  # a shutdown this close is a warning on plan and build

# Canonical output formats the manifest speaks; each model maps them to its own wire enum.
FORMATS = ("png", "jpeg", "webp")
FORMAT_ALIASES = {"jpg": "jpeg"}
EXTENSIONS = {"png": "png", "jpeg": "jpg", "webp": "webp"}
ALPHA_FORMATS = ("png", "webp")  # the canonical formats that can carry a transparent background

STANDARD = LANES[0]  # the lane every model takes: one call per image, at its list price

DATA_FILE = "data/catalog.json"
SCHEMA_FILE = "data/catalog.schema.json"

Fact = Literal["status", "released", "shutdown", "replacement", "prices", "resolutions",
               "aspect_ratios", "output_formats", "inputs", "prompt", "qualities", "sizes",
               "backgrounds"]


# --- the file's shape (its JSON Schema is generated from these) ---------------------------------

class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputLimits(_Strict):
    """Input images a model takes: how many (0 = text-to-image only), how big, which types."""

    max: int = Field(ge=0)
    min: int = Field(default=0, ge=0,
                     description="input images it needs: an edit model refuses a request without")
    max_bytes: int | None = Field(default=None, gt=0, description="per image; null = not checked")
    types: list[str] | None = Field(default=None, description="MIME types; null = not checked")


class PromptLimits(_Strict):
    max_chars: int | None = Field(default=None, gt=0, description="null = unknown, not checked")


# The file writes prices as JSON numbers. Said outright, the schema stays the same whatever
# pydantic release is installed (its own Decimal schema changes between releases).
Price = Annotated[Decimal, WithJsonSchema({"type": "number"})]


class TokenPrices(_Strict):
    """What a model bills per token on top of its image price (Gemini: the prompt, each input
    image, and the model's thinking), with the limits that bound how many tokens a request can
    use. The budget reserves the most a request can cost from these (plan/budget.py)."""

    input_usd_per_million: Price = Field(
        ge=0, description="USD per million input tokens (prompt text and input images)")
    thinking_usd_per_million: Price = Field(
        ge=0, description="USD per million thinking (text output) tokens")
    max_input_tokens: int = Field(gt=0, description="the model's input token limit")
    max_thinking_tokens: int = Field(
        gt=0, description="the most thinking a request can bill: its output token limit")
    tokens_per_input_image: int = Field(gt=0, description="input tokens one image counts")
    source: str

    def bound(self, prompt_bytes: int, images: int) -> Decimal:
        """The most a request can bill in tokens: a token covers at least one UTF-8 byte of the
        prompt, input within the model's limit, and thinking within its output limit."""
        used = min(prompt_bytes + images * self.tokens_per_input_image, self.max_input_tokens)
        return (used * self.input_usd_per_million +
                self.max_thinking_tokens * self.thinking_usd_per_million) / 1_000_000


class LaneEntry(_Strict):
    """A lane a model takes beyond the standard one: its price per image, how soon it answers,
    and whether the vendor's docs state that this model takes it at that price."""

    prices: Price | dict[str, Price] = Field(
        description="USD per image on this lane: one flat price, or one per resolution tier")
    turnaround: str | None = Field(default=None, description="how soon results come, in words")
    confirmed: bool = Field(default=True,
                            description="false: the vendor does not state it for this model")
    source: str


class FreeSize(_Strict):
    """A model that takes any WIDTHxHEIGHT within limits (OpenAI's gpt-image-2): nbpipe sends
    the size of the manifest's aspect ratio with its long side at the resolution tier's
    (`tiers`), shrunk to the limits, each side a multiple of `multiple`."""

    multiple: int = Field(gt=0, description="each side a multiple of this")
    max_ratio: float = Field(ge=1, description="the long side over the short one, at most")
    max_side: int = Field(gt=0, description="pixels of the long side, at most")
    max_pixels: int = Field(gt=0, description="width times height, at most")

    def size(self, ratio: str, long_side: int) -> str | None:
        """WIDTHxHEIGHT for `ratio` (W:H) at `long_side`, or None if the ratio is out of range."""
        w, _, h = ratio.partition(":")
        if not (w.isdigit() and h.isdigit()) or not int(w) or not int(h):
            return None
        rw, rh = int(w), int(h)
        if max(rw, rh) > self.max_ratio * min(rw, rh):
            return None
        long_side = min(long_side, self.max_side)
        short = long_side * min(rw, rh) / max(rw, rh)
        scale = min(1.0, (self.max_pixels / (long_side * short)) ** 0.5)
        sides = [self._fit(long_side * scale), self._fit(short * scale)]
        width, height = sides if rw >= rh else sides[::-1]
        return f"{width}x{height}"

    def _fit(self, side: float) -> int:  # down to the multiple: the limits stay kept
        return max(self.multiple, int(side) // self.multiple * self.multiple)


class ModelEntry(_Strict):
    """One model of one backend, as the vendor documents it."""

    title: str | None = Field(default=None, description="the vendor's name for it")
    note: str | None = None
    status: Literal["ga", "preview", "retired"]
    released: dt.date | None = None
    shutdown: dt.date | None = Field(
        default=None, description="from this date on the API refuses it")
    replacement: str | None = Field(
        default=None, description="the model of the same backend to use instead")
    also_replaced_by: list[str] = Field(
        default_factory=list, description="other models of the same backend that replace it")
    prices: Price | dict[str, Price] = Field(
        description="USD per image: one flat price, one per resolution tier, or one per "
        "`quality/size` (a model with qualities; size: its tier, or its WIDTHxHEIGHT)")
    resolutions: list[str] = Field(default_factory=list,
                                   description="empty: the model takes no resolution at all")
    default_resolution: str | None = None
    aspect_ratios: list[str]
    output_formats: dict[Literal["png", "jpeg", "webp"], str] | None = Field(
        description="canonical format → the wire value; null = the model chooses")
    qualities: list[str] = Field(
        default_factory=list, description="quality levels it takes, cheapest first; empty: "
        "it takes none")
    default_quality: str | None = Field(
        default=None, description="the quality sent when the manifest names none")
    sizes: dict[str, str] | None = Field(
        default=None, description="aspect ratio → the size the API takes for it instead (a "
        "model that takes a few fixed sizes: OpenAI's WIDTHxHEIGHT, fal's image_size presets); "
        "null: the ratio is sent as it is, or `free_size` decides")
    free_size: FreeSize | None = Field(
        default=None, description="a model that takes any size within limits")
    backgrounds: list[str] = Field(
        default_factory=list, description="`background` values it takes; empty: none")
    inputs: InputLimits
    prompt: PromptLimits = PromptLimits()
    tokens: TokenPrices | None = Field(
        default=None, description="per-token billing on top of the image price; null = none")
    lanes: dict[Literal["batch", "flex"], LaneEntry] = Field(
        default_factory=dict, description="lanes beyond standard it takes, with their prices")
    confirmed: list[Fact] = Field(default_factory=list,
                                  description="the facts the vendor's docs state")
    source: str

    @model_validator(mode="after")
    def _consistent(self) -> ModelEntry:
        if self.qualities:
            self._priced_by_quality()
        else:
            for prices in (self.prices, *(lane.prices for lane in self.lanes.values())):
                if isinstance(prices, dict):
                    if sorted(prices) != sorted(self.resolutions):
                        raise ValueError("tiered prices must name exactly the model's "
                                         "resolutions")
                elif self.resolutions:
                    raise ValueError("a model with resolutions needs a price per resolution")
        if (self.default_resolution is None) != (not self.resolutions) or \
                (self.default_resolution and self.default_resolution not in self.resolutions):
            raise ValueError("default_resolution must be one of the resolutions (and only then)")
        if self.sizes is not None and sorted(self.sizes) != sorted(self.aspect_ratios):
            raise ValueError("sizes must name exactly the model's aspect ratios")
        if self.status == "retired" and self.shutdown is None:
            raise ValueError("a retired model needs its shutdown date")
        if self.sizes is not None and sorted(self.sizes) != sorted(self.aspect_ratios):
            raise ValueError("sizes must name exactly the model's aspect ratios")
        if self.free_size is not None and (self.sizes is not None or any(
                self.free_size.size(r, self.free_size.max_side) is None
                for r in self.aspect_ratios)):
            raise ValueError("free_size must make a size of every aspect ratio, and excludes "
                             "fixed sizes")
        return self

    def _priced_by_quality(self) -> None:
        """A model with quality levels is priced per level and size class: `quality/tier`
        with resolution tiers, else `quality/WIDTHxHEIGHT` for each of its fixed sizes."""
        if (self.default_quality not in self.qualities) or self.sizes is None and \
                not self.resolutions:
            raise ValueError("a model with qualities needs a default_quality among them, and "
                             "fixed sizes or resolution tiers")
        classes = self.resolutions or sorted(set((self.sizes or {}).values()))
        wanted = sorted(f"{q}/{c}" for q in self.qualities for c in classes)
        if not isinstance(self.prices, dict) or sorted(self.prices) != wanted:
            raise ValueError(f"prices must name exactly each quality/size class: {wanted}")


class BackendEntry(_Strict):
    title: str
    note: str | None = None
    default_model: str
    jobs: int = Field(gt=0, description="frames in flight by default")
    input_transport: Literal["url", "inline", "any"]
    stands_in_for: list[str] = Field(default_factory=list,
                                     description="backends whose models this one imitates, free")
    models: dict[str, ModelEntry] = Field(default_factory=dict)


class CatalogFile(_Strict):
    """The whole catalogue file."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    schema_ref: str | None = Field(default=None, alias="$schema")
    about: str | None = None
    version: Literal[1]
    default_backend: str
    tiers: dict[str, int] = Field(description="resolution tier → long side in pixels")
    backends: dict[str, BackendEntry]

    @model_validator(mode="after")
    def _references(self) -> CatalogFile:
        if self.default_backend not in self.backends:
            raise ValueError(f"default_backend '{self.default_backend}' is not a backend")
        for name, backend in self.backends.items():
            for other in backend.stands_in_for:
                if other not in self.backends or other == name:
                    raise ValueError(f"{name}: stands_in_for names no other backend '{other}'")
            for model, entry in backend.models.items():
                unknown = set(entry.resolutions) - set(self.tiers)
                if unknown:
                    raise ValueError(f"{name}/{model}: unknown tiers {sorted(unknown)}")
                for other in filter(None, (entry.replacement, *entry.also_replaced_by)):
                    if other not in backend.models:
                        raise ValueError(f"{name}/{model}: replacement '{other}' is not a "
                                         f"{name} model")
        return self


# --- what the rest of nbpipe uses ----------------------------------------------------------------

@dataclass(frozen=True)
class Lane:
    """A lane beyond standard as a model takes it: resolution (or FLAT) → USD per image."""

    prices: Mapping[str, Decimal]
    turnaround: str | None = None
    confirmed: bool = True


@dataclass(frozen=True)
class ModelSpec:
    """One model of one backend: what a request to it may contain, its price per image, and
    where it is in its life. `price_source` says where the prices in force come from."""

    backend: str
    name: str
    max_inputs: int  # input images it takes; 0 = text-to-image only
    aspect_ratios: tuple[str, ...]
    resolutions: tuple[str, ...] = ()  # () = sending a resolution is an error (HiAPI answers 400)
    default_resolution: str | None = None
    formats: Mapping[str, str] | None = None  # canonical → wire value; None = the model chooses
    prices: Mapping[str, Decimal] = field(default_factory=dict)  # resolution (or FLAT) → USD
    prompt_max: int | None = None
    status: str = "ga"
    released: dt.date | None = None
    shutdown: dt.date | None = None
    replacement: str | None = None
    also_replaced_by: tuple[str, ...] = ()  # other replacements, named beside `replacement`
    transport: str = "any"  # how input images travel: url | inline | any
    input_max_bytes: int | None = None
    input_types: tuple[str, ...] | None = None
    title: str | None = None
    confirmed: frozenset[str] = frozenset()
    price_source: str = "built-in"
    tokens: TokenPrices | None = None  # billed on top of `prices`; None: the image price is all
    other_lanes: Mapping[str, Lane] = field(default_factory=dict)  # lanes beyond standard
    qualities: tuple[str, ...] = ()  # () = sending a quality is an error
    default_quality: str | None = None
    sizes: Mapping[str, str] | None = None  # aspect ratio → the size sent (WIDTHxHEIGHT, a preset)
    free_size: FreeSize | None = None
    backgrounds: tuple[str, ...] = ()
    min_inputs: int = 0  # input images it needs (an edit model: 1)

    @property
    def lanes(self) -> tuple[str, ...]:
        """The lanes it takes, standard first."""
        return (STANDARD, *(lane for lane in LANES if lane in self.other_lanes))

    def lane(self, name: str) -> Lane | None:
        """A lane beyond standard it takes (None: not taken, or standard itself)."""
        return self.other_lanes.get(name)

    def _table(self, lane: str) -> Mapping[str, Decimal]:
        """Its prices on `lane`. A lane it does not take is priced as standard: the planner
        refuses such a frame, and a lane read from an untrusted lock must never make a measure
        lower than the list price."""
        other = self.other_lanes.get(lane)
        return self.prices if other is None else other.prices

    @property
    def price_keys(self) -> tuple[str, ...]:
        """What its prices are named by (a manifest's `pricing:` too): its resolution tiers,
        or `quality/size` pairs for a model with quality levels; () for one flat price."""
        if not self.qualities:
            return self.resolutions
        classes = self.resolutions or tuple(sorted(set((self.sizes or {}).values())))
        return tuple(f"{q}/{c}" for q in self.qualities for c in classes)

    def price_at(self, key: str) -> Decimal:
        """Its standard price under one of its price keys (FLAT: at its defaults)."""
        if FLAT in self.prices or key == FLAT:
            return self.price(None)
        found = self.prices.get(key)
        return found if found is not None else self.price(key)

    def price(self, resolution: str | None, lane: str = STANDARD) -> Decimal:
        """USD per image at a resolution tier (None: its default) on `lane` (at the default
        quality, for a model with levels)."""
        table = self._table(lane)
        if FLAT in table:
            return table[FLAT]
        tier = resolution or self.default_resolution or ""
        if self.qualities:
            return self.price_of({"resolution": tier} if tier else {}, lane)
        return table.get(tier, Decimal(0))

    def price_of(self, params: Mapping[str, str], lane: str = STANDARD) -> Decimal:
        """The price of a request with these params (as sent) on `lane`. A model priced per
        quality and size is looked up by both; a pair the table lacks (an untrusted journal
        record) costs the model's highest price: a budget must never count it as free."""
        if not self.qualities:
            return self.price(params.get("resolution"), lane)
        table = self._table(lane)
        size = params.get("resolution") or self.default_resolution if self.resolutions \
            else params.get("size")
        quality = params.get("quality") or self.default_quality
        found = table.get(f"{quality}/{size}")
        return found if found is not None else max(table.values(), default=Decimal(0))

    def size_for(self, ratio: str | None, tier: str | None, long_side: int) -> str | None:
        """The WIDTHxHEIGHT to send for an aspect ratio (None: square) at a tier of
        `long_side` pixels; None where the model is sent no size or cannot make this one."""
        if self.sizes is not None:
            return self.sizes.get(ratio or "1:1")
        if self.free_size is not None and tier is not None:
            return self.free_size.size(ratio or "1:1", long_side)
        return None

    def shut_down(self, today: dt.date) -> bool:
        """Does the API refuse it by now? The date decides, so a stale status cannot lie."""
        return self.shutdown is not None and today >= self.shutdown

    def days_left(self, today: dt.date) -> int | None:
        """Days until its shutdown, if that is within WARN_DAYS (and not past)."""
        if self.shutdown is None or self.shut_down(today):
            return None
        left = (self.shutdown - today).days
        return left if left <= WARN_DAYS else None

    def quiet_until(self) -> dt.date | None:
        """The first day its lifecycle is news (a warning, then an error); None: never."""
        return self.shutdown - dt.timedelta(days=WARN_DAYS) if self.shutdown else None

    def lifecycle(self, today: dt.date) -> str:
        return "retired" if self.shut_down(today) else self.status


def today() -> dt.date:
    """The date lifecycles are judged on: NBPIPE_TODAY (YYYY-MM-DD), else today in UTC."""
    return current().today or dt.datetime.now(dt.UTC).date()


class Catalog:
    """backend → model → ModelSpec, with any price overrides applied."""

    backends: Mapping[str, BackendEntry]
    default_backend: str
    tiers: Mapping[str, int]  # resolution tier → long side in pixels
    models: dict[str, dict[str, ModelSpec]]

    def __init__(self, models: tuple[ModelSpec, ...], backends: Mapping[str, BackendEntry],
                 default_backend: str, tiers: Mapping[str, int]) -> None:
        self.backends = backends
        self.default_backend = default_backend
        self.tiers = tiers
        self.models = {b: {} for b in backends}
        for spec in models:
            self.models[spec.backend][spec.name] = spec

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.backends)

    def default_model(self, backend: str) -> str:
        return self.backends[backend].default_model

    def jobs(self) -> dict[str, int]:
        return {name: b.jobs for name, b in self.backends.items()}

    def get(self, backend: str, model: str) -> ModelSpec | None:
        return self.models.get(backend, {}).get(model)

    def in_service(self, backend: str, when: dt.date) -> dict[str, ModelSpec]:
        return {n: s for n, s in self.models.get(backend, {}).items() if not s.shut_down(when)}

    def successor(self, spec: ModelSpec, when: dt.date) -> tuple[ModelSpec, ...]:
        """The replacement chain from `spec` to the first model still in service (may be ())."""
        chain: list[ModelSpec] = []
        current = spec
        while current.replacement and len(chain) < len(self.models[spec.backend]):
            current = self.models[spec.backend][current.replacement]
            chain.append(current)
            if not current.shut_down(when):
                return tuple(chain)
        return ()

    def news(self, spec: ModelSpec, when: dt.date) -> tuple[str, str, str] | None:
        """(severity, message, hint) if `spec`'s lifecycle is news on `when`: shut down (an
        error, naming the replacement) or shutting down within WARN_DAYS (a warning)."""
        left = spec.days_left(when)
        if not spec.shut_down(when) and left is None:
            return None
        chain = self.successor(spec, when)
        via = f", via '{chain[0].name}'" if len(chain) > 1 else ""
        others = [o for o in spec.also_replaced_by
                  if (found := self.get(spec.backend, o)) and not found.shut_down(when)]
        more = "".join(f" or '{o}'" for o in others)
        hint = f"use '{chain[-1].name}' (its replacement{via}){more}" if chain \
            else "`nbpipe models` lists the models in service"
        if left is None:
            return "error", f"model '{spec.name}' was shut down on {spec.shutdown}", hint
        return ("warning", f"model '{spec.name}' shuts down on {spec.shutdown} (in {left} "
                f"day{'s' * (left != 1)})", hint)

    def with_prices(self, pricing: Mapping[str, Mapping[str, object]],
                    source: str = "nbpipe.yaml `pricing:`") -> Catalog:
        """A copy with `pricing:` applied: {backend: {model: price | {resolution: price}}}, to
        the standard lane (a lane's own list prices stay: they are the vendor's discount)."""
        specs = []
        for backend, models in self.models.items():
            for spec in models.values():
                prices = _overridden(spec, pricing.get(backend, {}).get(spec.name))
                if prices is not None:
                    spec = replace(spec, prices=MappingProxyType(prices), price_source=source)
                specs.append(spec)
        return Catalog(tuple(specs), self.backends, self.default_backend, self.tiers)

    def higher(self, other: Catalog) -> Catalog:
        """A copy where each model's price per tier is the higher of this table's and `other`'s."""
        specs = []
        for backend, models in self.models.items():
            for spec in models.values():
                theirs = other.get(backend, spec.name)
                if theirs is not None:
                    tiers = spec.price_keys or (FLAT,)
                    prices = {t: max(spec.price_at(t), theirs.price_at(t)) for t in tiers}
                    spec = replace(spec, prices=MappingProxyType(prices))
                specs.append(spec)
        return Catalog(tuple(specs), self.backends, self.default_backend, self.tiers)


def _overridden(spec: ModelSpec, override: object) -> dict[str, Decimal] | None:
    """The prices of `spec` with an override applied; None if it names none of its prices.
    Only tiers the model has count, so no override can leave a tier unpriced (free)."""
    if isinstance(override, Mapping):
        keys = spec.price_keys
        tiers = {r: Decimal(str(p)) for r, p in override.items() if r in keys}
        return {**{r: spec.price_at(r) for r in keys}, **tiers} if tiers else None
    return None if override is None else {FLAT: Decimal(str(override))}


def _prices(prices: Decimal | dict[str, Decimal]) -> Mapping[str, Decimal]:
    tiers = prices if isinstance(prices, dict) else {FLAT: prices}
    return MappingProxyType({k: Decimal(str(v)) for k, v in tiers.items()})


def _spec(backend: str, name: str, entry: ModelEntry, transport: str) -> ModelSpec:
    lanes = {str(n): Lane(_prices(lane.prices), lane.turnaround, lane.confirmed)
             for n, lane in entry.lanes.items()}
    return ModelSpec(
        backend=backend, name=name, max_inputs=entry.inputs.max, min_inputs=entry.inputs.min,
        aspect_ratios=tuple(entry.aspect_ratios), resolutions=tuple(entry.resolutions),
        default_resolution=entry.default_resolution,
        formats=MappingProxyType({str(k): v for k, v in entry.output_formats.items()})
        if entry.output_formats else None,
        prices=_prices(entry.prices),
        prompt_max=entry.prompt.max_chars, status=entry.status, released=entry.released,
        shutdown=entry.shutdown, replacement=entry.replacement,
        also_replaced_by=tuple(entry.also_replaced_by), transport=transport,
        input_max_bytes=entry.inputs.max_bytes,
        input_types=tuple(entry.inputs.types) if entry.inputs.types else None,
        title=entry.title, confirmed=frozenset(entry.confirmed), tokens=entry.tokens,
        other_lanes=MappingProxyType(lanes),
        qualities=tuple(entry.qualities), default_quality=entry.default_quality,
        sizes=MappingProxyType(dict(entry.sizes)) if entry.sizes is not None else None,
        free_size=entry.free_size, backgrounds=tuple(entry.backgrounds))


def from_file(doc: CatalogFile) -> Catalog:
    """The runtime catalogue of a validated file; a stand-in backend gets free copies of the
    models it imitates (the backend is in the frame key, so its images never pass for real), on
    the standard lane only (it has no batch API and no flex tier to imitate)."""
    specs: list[ModelSpec] = []
    for name, backend in doc.backends.items():
        specs += [_spec(name, model, entry, backend.input_transport)
                  for model, entry in backend.models.items()]
        for other in backend.stands_in_for:
            specs += [replace(_spec(name, model, entry, backend.input_transport),
                              prices=MappingProxyType({FLAT: Decimal(0)}), tokens=None,
                              other_lanes=MappingProxyType({}))
                      for model, entry in doc.backends[other].models.items()]
    catalog = Catalog(tuple(specs), MappingProxyType(dict(doc.backends)), doc.default_backend,
                      MappingProxyType(dict(doc.tiers)))
    for name in catalog.names:
        if catalog.get(name, catalog.default_model(name)) is None:
            raise ValueError(f"{name}: default_model '{catalog.default_model(name)}' is unknown")
    return catalog


class CatalogBroken(Exception):
    """The packaged catalogue does not validate: a bug in nbpipe's data, never a user error."""


def parse(text: str) -> CatalogFile:
    try:  # JSON, not YAML: parsing it costs well under a millisecond on every plan
        return CatalogFile.model_validate(json.loads(text, parse_float=Decimal))
    except (ValueError, ValidationError) as exc:
        raise CatalogBroken(f"{DATA_FILE}: {exc}") from None


def data_text() -> str:
    return files("nbpipe").joinpath(DATA_FILE).read_text("utf-8")


@functools.cache
def builtin() -> Catalog:
    """The packaged catalogue, with the entries of backends installed packages register
    (parsed once per process)."""
    try:
        doc = parse(data_text())
        plugins = _plugin_entries(set(doc.backends))
        if plugins:
            doc = doc.model_copy(update={"backends": {**doc.backends, **plugins}})
        return from_file(doc)
    except ValueError as exc:
        raise CatalogBroken(f"{DATA_FILE}: {exc}") from None


def _plugin_entries(built_in: set[str]) -> dict[str, BackendEntry]:
    """The catalogue entries of third-party backends (the `nbpipe.backends` entry-point group,
    each spec's `catalog`): their models are data too, checked as catalog.json's are. A
    package whose entry cannot be loaded or read is a usage error naming it (not nbpipe's
    bug)."""
    from nbpipe.backends.names import installed

    found: dict[str, BackendEntry] = {}
    for point in installed().values():
        if point.name in built_in:
            continue  # a built-in name is never a package's to redefine
        try:
            entry = getattr(point.load(), "catalog", None)
            if entry is not None:
                found[point.name] = BackendEntry.model_validate(entry)
        except (ImportError, AttributeError, ValueError) as exc:
            raise UsageError(f"backend '{point.name}' of an installed package ({point.value}) "
                             f"cannot be used: {exc}", "fix or uninstall that package") from None
    return found


def schema_text() -> str:
    """The JSON Schema of the catalogue file (kept in data/catalog.schema.json by a test)."""
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema",
              **CatalogFile.model_json_schema(by_alias=True), "title": "nbpipe model catalogue"}
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"
