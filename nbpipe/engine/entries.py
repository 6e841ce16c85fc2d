"""Journal entries read back: the frame (and the key) an entry's journalled request names.

The journal is untrusted input (it sits in a cache others may write): odd records are dropped,
and then the key check refuses the entry."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from nbpipe.catalog import Catalog
from nbpipe.plan.frame import Frame, InputImage
from nbpipe.store.journal import Entry


def entry_frame(entry: Entry, catalog: Catalog) -> Frame:
    """The frame a journal entry was made for, rebuilt from its record (no output: a recovered
    image goes to the cache; a frame of the build that wants it follows the flight)."""
    return _frame(entry, entry_price(entry, catalog))


def recorded_key(entry: Entry) -> str | None:
    """The key the entry's journalled request hashes to: a task it names was made for the
    request of this key only if this is the entry's own."""
    return _frame(entry, Decimal(0)).request.key


def _frame(entry: Entry, cost: Decimal) -> Frame:
    request = entry.request
    found = request.get("params")
    params = {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else {}
    return Frame(name=entry.frame, target=entry.frame, backend=entry.backend,
                 model=str(request.get("model")), parts=(str(request.get("prompt")),),
                 params=params, inputs=_inputs_of(request), output="", key=entry.key,
                 cost=cost, lane=entry.lane)


def entry_price(entry: Entry, catalog: Catalog) -> Decimal:
    spec = catalog.get(entry.backend, str(entry.request.get("model")))
    params = entry.request.get("params") or {}
    try:
        return spec.price_of(params, entry.lane) if spec else Decimal(0)
    except Exception:
        return Decimal(0)


def _inputs_of(record: dict[str, object]) -> tuple[InputImage, ...]:
    """The input images of a journalled request record (untrusted: odd entries are dropped,
    and then the key check refuses the entry)."""
    out = []
    docs = record.get("inputs")
    for doc in docs if isinstance(docs, list) else []:
        if isinstance(doc, dict) and doc.get("kind") in ("frame", "file", "url") and \
                isinstance(doc.get("ref"), str) and isinstance(doc.get("digest"), str):
            out.append(InputImage(doc["kind"], doc["ref"], doc["digest"],
                                  "reference" if doc.get("role") == "reference" else "input"))
    return tuple(out)


def on_its_lane(frame: Frame, entry: Entry, catalog: Catalog) -> Frame:
    """`frame` as `entry` sent it: a request sent in a batch job is the job's whatever lane the
    frame is on now (--lane standard after a --no-wait), and is priced on that lane."""
    if entry.lane == frame.lane:
        return frame
    return replace(frame, lane=entry.lane, cost=entry_price(entry, catalog))
