"""Every record nbpipe reads back from its store, as a strict model: a take record (the local
index, the remote's `takes/`, a remote blob's metadata), a journal line, the refreshed price
list, state.json.

The store may be shared or tampered with, so nothing read is trusted: a record that does not
validate is a miss (a take), a skipped line (the journal), a list set aside (prices) or a part
forgotten (state), never a crash and never a value of the wrong type further in. Strict: no
coercion ("1" is no number, true is no take number); unknown fields are ignored, except in a
journal line, where they are allowed and kept (`extra="allow"`, in `model_extra`), so a field
a newer nbpipe adds leaves the line readable, and the known ones are still checked. The formats
on disk are unchanged: these models only read them.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    model_validator,
)

from nbpipe.catalog import builtin
from nbpipe.files import is_sha256
from nbpipe.store.state import STATE_VERSION, is_durations, is_rel


def _sha256(value: str) -> str:
    if not is_sha256(value):
        raise ValueError("must be 64 lowercase hex digits")
    return value


def _money(value: str) -> str:
    try:
        ok = Decimal(value).is_finite() and Decimal(value) >= 0
    except (InvalidOperation, ValueError):
        ok = False
    if not ok:
        raise ValueError("not an amount of USD, 0 or more")
    return value


Sha256 = Annotated[str, AfterValidator(_sha256)]
Money = Annotated[str, AfterValidator(_money)]  # a Decimal as text
Finite = Annotated[float, Field(allow_inf_nan=False)]

_STRICT = ConfigDict(strict=True, extra="ignore", frozen=True)


# The formats a take's bytes can have (nbpipe.imagefmt.sniff decides a take's format): a
# take's format names its output's extension (Frame.output_for), so any other text, read from
# a shared cache or a remote, could name a path ("png/../../x").
ImageFormat = Literal["png", "jpeg", "webp"]


class TakeRecord(BaseModel):
    """A take as stored (store.takes.Take): the digest names a file, the cost is summed, the
    format is one nbpipe writes."""

    model_config = _STRICT

    digest: Sha256
    backend: str
    model: str
    format: ImageFormat
    cost_usd: Money
    created: Finite
    task_id: str | None = None
    url: str | None = None
    url_expires: Finite | None = None
    take: Annotated[int, Field(gt=0)] | None = None
    lane: Literal["standard", "batch", "flex"] = "standard"  # older records: standard


class RemoteTakeRecord(BaseModel):
    """A remote's `takes/<key>/<digest>.json`: the take and the request that made it."""

    model_config = _STRICT

    take: TakeRecord
    request: dict[str, Any] | None = None


class BlobTakeRecord(BaseModel):
    """A remote blob's own metadata (`x-amz-meta-nbpipe-take`): the key and the take it was
    first pushed as, never the request (S3 keeps 2 KB of metadata; the request is the frame's,
    whose hash the key is). Proves nothing alone: the reader checks that it names the key
    and the digest it asked for."""

    model_config = _STRICT

    key: Sha256
    take: TakeRecord


# --- the journal ------------------------------------------------------------------------------


def _text_or_none(value: object) -> object:
    return value if isinstance(value, str) else None  # an older or damaged account: anybody's


class JournalLine(BaseModel):
    """What every journal line holds; the op's own fields are checked by its model below."""

    model_config = ConfigDict(strict=True, extra="allow", frozen=True)

    op: str
    key: str
    take: int


class IntentLine(JournalLine):
    """An intent a later build can act on (the cache may be shared or damaged): a digest key,
    a model of the catalogue, and a request whose parameters that model takes."""

    key: Sha256
    frame: str
    backend: str
    request: dict[str, Any]
    account: Annotated[str | None, BeforeValidator(_text_or_none)] = None
    project: Annotated[str | None, BeforeValidator(_text_or_none)] = None  # journal.project_mark
    lane: Literal["standard", "batch", "flex"] = "standard"  # how it is sent (batch: in a job)

    @model_validator(mode="after")
    def _sound(self) -> IntentLine:
        if not _sound_request(self.backend, self.request):
            raise ValueError("an intent of the wrong shape")
        return self


class SentLine(JournalLine):
    body: str


class TaskLine(JournalLine):
    task_id: str


_BY_OP: dict[str, type[JournalLine]] = {"intent": IntentLine, "sent": SentLine,
                                        "task": TaskLine}


def journal_line(doc: object) -> JournalLine:
    """A journal line checked for its op; ValueError (pydantic's ValidationError is one) when
    it is not one a build can act on."""
    line = JournalLine.model_validate(doc)
    model = _BY_OP.get(line.op)
    return line if model is None else model.model_validate(doc)


def unknown_request(record: dict[str, Any]) -> bool:
    """An intent of a digest key whose backend or model this nbpipe's catalogue does not hold (a
    plug-in not installed here, a model since retired): not damage; another nbpipe may act on
    it."""
    request, key = record.get("request"), record.get("key")
    return isinstance(request, dict) and isinstance(key, str) and is_sha256(key) and \
        builtin().get(str(record.get("backend")), str(request.get("model"))) is None


def _sound_request(backend: str, request: dict[str, Any]) -> bool:
    spec = builtin().get(backend, str(request.get("model")))
    params = request.get("params", {})
    if spec is None or not isinstance(request.get("prompt", ""), str) or \
            not isinstance(params, dict) or not all(isinstance(v, str) for v in params.values()):
        return False
    return params.get("aspect_ratio", spec.aspect_ratios[0]) in spec.aspect_ratios and \
        params.get("resolution", "") in ("", *spec.resolutions) and \
        params.get("output_format", "png") in ("png", "jpeg", "jpg", "webp")


# --- the refreshed price list (prices.json) --------------------------------------------------

MAX_PRICE = 100  # USD per image: far above any real price; a larger one is damage, not a price

Price = Annotated[float, Field(ge=0, le=MAX_PRICE, allow_inf_nan=False)]


class PriceList(BaseModel):
    """HiAPI's catalogue as `nbpipe models --refresh` stored it: a price (or one per
    resolution) for models of the built-in catalogue, each finite and at most MAX_PRICE."""

    model_config = _STRICT

    hiapi: dict[str, Price | dict[str, Price]]
    fetched: str = ""

    @model_validator(mode="after")
    def _known(self) -> PriceList:
        for model, price in self.hiapi.items():
            spec = builtin().get("hiapi", model)
            if spec is None:
                raise ValueError(f"unknown HiAPI model {model[:60]!r}")
            if isinstance(price, dict) and not set(price) <= set(spec.resolutions):
                raise ValueError(f"a resolution {model[:60]!r} does not have")
        return self


def valid_price_list(doc: object) -> bool:
    """Whether a prices.json document is one to apply."""
    try:
        PriceList.model_validate(doc)
    except ValueError:
        return False
    return True



# --- state.json -----------------------------------------------------------------------------


def _or_none(value: object, handler: ValidatorFunctionWrapHandler) -> object:
    """A part of state.json that does not validate is forgotten, not the whole file."""
    try:
        return handler(value)
    except ValidationError:
        return None


def _tuple(value: object) -> object:
    return tuple(value) if isinstance(value, list) else value  # JSON has arrays, not tuples


def _rel(value: str) -> str:
    if not is_rel(value):
        raise ValueError("not a project-relative path")
    return value


def _amount(value: str) -> str:
    try:
        ok = Decimal(value).is_finite()
    except (InvalidOperation, ValueError):
        ok = False
    if not ok:
        raise ValueError("not an amount")
    return value


Forgotten = WrapValidator(_or_none)
Rel = Annotated[str, AfterValidator(_rel)]
StatEntry = Annotated[tuple[int, int, int, int, Sha256], BeforeValidator(_tuple)]
Pair = Annotated[tuple[Sha256, Sha256], BeforeValidator(_tuple)]


class Totals(BaseModel):
    """What every build of the project spent and saved, in USD as Decimal text."""

    model_config = _STRICT

    spent_usd: Annotated[str, AfterValidator(_amount)]
    saved_usd: Annotated[str, AfterValidator(_amount)]
    # paid by builds that died before they could say so (engine/telling.py): older states lack it
    spent_earlier_usd: Annotated[str, AfterValidator(_amount)] | None = None


class Fingerprint(BaseModel):
    """The parts of a no-op fingerprint that name files (engine/noop.py reads the rest)."""

    model_config = ConfigDict(strict=True, extra="allow", frozen=True)

    inputs: dict[Rel, list[Any]] = {}
    outputs: list[Rel] = []
    manifest: Sha256
    lock: Sha256
    frames: int


class StateDoc(BaseModel):
    """state.json: a cache of what this machine saw, so a part of the wrong shape is dropped
    (and re-learnt), never trusted: an entry of a map or list alone, or a whole part."""

    model_config = _STRICT

    version: Annotated[int, Field(ge=STATE_VERSION, le=STATE_VERSION)]  # strict: true is no 1
    outputs: Annotated[dict[str, Annotated[StatEntry | None, Forgotten]] | None, Forgotten] = None
    orphans: Annotated[dict[str, Annotated[Sha256 | None, Forgotten]] | None, Forgotten] = None
    failed: Annotated[dict[str, Annotated[str | None, Forgotten]] | None, Forgotten] = None
    totals: Annotated[Totals | None, Forgotten] = None
    unpushed: Annotated[list[Annotated[Pair | None, Forgotten]] | None, Forgotten] = None
    synced: Annotated[str | None, Forgotten] = None  # the remote every take was sent to
    fingerprint: Annotated[Fingerprint | None, Forgotten] = None


def read_state(doc: object) -> dict[str, Any]:
    """state.json as the rest of nbpipe uses it (the document it was read from, less every
    part that did not validate); {} when it is no state of this version at all."""
    try:
        state = StateDoc.model_validate(doc)
    except ValidationError:
        return {}
    assert isinstance(doc, dict)  # a model validated it
    out: dict[str, Any] = {"version": state.version}
    if state.outputs is not None:
        out["outputs"] = {k: list(v) for k, v in state.outputs.items()
                          if v is not None and is_rel(k)}
    if state.orphans is not None:
        out["orphans"] = {k: v for k, v in state.orphans.items() if v is not None and is_rel(k)}
    if state.failed is not None:
        out["failed"] = {k: v for k, v in state.failed.items() if v is not None}
    if state.totals is not None:
        out["totals"] = state.totals.model_dump(exclude_none=True)
    if state.unpushed is not None:
        out["unpushed"] = [list(p) for p in state.unpushed if p is not None]
    if state.synced is not None:
        out["synced"] = state.synced
    if state.fingerprint is not None:
        out["fingerprint"] = doc["fingerprint"]  # as written: noop.py compares all of it
    if is_durations(doc.get("durations")):  # plain numbers: one check serves both readers
        out["durations"] = doc["durations"]
    return out
