"""Which prices are in force, and the `nbpipe models` listing: the built-in catalogue, HiAPI's
live price list (refreshed into the cache with its date), and the manifest's `pricing:`
overrides on top of either; each model says where its prices come from."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from pathlib import Path

from nbpipe.catalog import FLAT, Catalog, Lane, ModelSpec, builtin
from nbpipe.errors import UsageError, warn
from nbpipe.files import atomic_write
from nbpipe.plan.planner import Plan, Project
from nbpipe.store.prices import PRICES_FILE, list_prices, stored
from nbpipe.store.prices import current_catalog as current_catalog  # for the command line
from nbpipe.store.records import MAX_PRICE


def price_source(cache_dir: Path, project: Project) -> str:
    doc = stored(cache_dir)
    source = f"HiAPI catalogue fetched {doc.get('fetched', '?')}" if doc \
        else "built-in table (the vendors' list prices, 2026)"
    overrides = sum(len(models) for models in project.loaded.manifest.pricing.values())
    overridden = f"; {overrides} model price(s) overridden by the manifest" if overrides else ""
    return source + overridden


def budget_note(cache_dir: Path, plan: Plan) -> str | None:
    """Where a render's price in force (the manifest's, or a refreshed catalogue's) is below
    the budget's measure (plan/budget.py: never below the built-in list price), `--max-cost`
    counts more than the plan's total: say how much, before the cap surprises anyone."""
    from nbpipe.money import fmt_usd
    from nbpipe.plan.budget import Budget

    budget = Budget(None, list_prices(cache_dir))
    renders = [s.frame for s in plan.steps if s.action == "render"]
    measured = sum((budget.reservation(f) for f in renders), Decimal(0))
    tokens = sum((budget.tokens(f) for f in renders), Decimal(0))
    if measured <= plan.cost:
        return None
    listed = measured - tokens > plan.cost
    why = ["at list prices above the ones shown"] if listed else []
    if tokens:  # Gemini bills prompt, input images and thinking on top: reserved at the most
        why.append(f"with up to USD {fmt_usd(tokens)} of input and thinking tokens billed on "
                   "top of the image prices")
    trust = " (--trust-manifest-prices counts the ones shown)" if listed else ""
    return f"--max-cost counts USD {fmt_usd(measured)} for these renders, " \
        f"{' and '.join(why)}{trust}"


def parse_catalogue(doc: object) -> dict[str, object]:
    """HiAPI's /api/pricing → {model: price | {resolution: price}} for the models nbpipe knows.
    The reply is untrusted: a model whose prices are not all finite and non-negative is left
    out (its price in force stays as it was)."""
    known = builtin().models["hiapi"]
    items = doc.get("data") if isinstance(doc, dict) else None
    out: dict[str, object] = {}
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict) or item.get("model_name") not in known:
            continue
        spec = known[item["model_name"]]
        base = _price(item.get("base_usd_value"))
        tiers: dict[str, Decimal | None] = {}
        policies = item.get("policies")
        for policy in policies if isinstance(policies, list) else []:
            match = _dig(policy, "rule", "resolution", "match")
            if isinstance(match, str) and match in spec.resolutions:
                tiers[match] = _price(policy.get("usd_value"))
        prices = {r: tiers.get(r, base) for r in spec.resolutions} if spec.resolutions \
            else {FLAT: base}
        listed = {r: float(p) for r, p in prices.items() if p is not None}
        odd = [f"{r} USD {p}" for r, p in prices.items()
               if p is not None and not _plausible(p, spec.price(None if r == FLAT else r))]
        if odd:
            warn(f"the price list gives {spec.name} {', '.join(odd)[:200]}: more than "
                 f"{PLAUSIBLE}x off its built-in price (or past USD {MAX_PRICE}); set aside, "
                 "its price in force stays as it was")
        elif len(listed) == len(prices):
            out[spec.name] = listed if spec.resolutions else listed[FLAT]
    return out


# A refreshed price is believed within this factor of the built-in one, and never above
# MAX_PRICE: HiAPI's prices move by tens of percent, a price of 0 or x1000 is a broken or a
# hostile reply (the budget measures with the higher of the two prices anyway).
PLAUSIBLE = 10


def _plausible(price: Decimal, builtin_price: Decimal) -> bool:
    """Whether a refreshed price lies between the built-in floor (built-in / PLAUSIBLE, above
    0) and the ceiling (built-in x PLAUSIBLE, at most MAX_PRICE)."""
    if price <= 0 or price > MAX_PRICE:
        return False
    if builtin_price <= 0:
        return True  # nothing to compare with
    return builtin_price / PLAUSIBLE <= price <= builtin_price * PLAUSIBLE


def _dig(node: object, *keys: str) -> object:
    for key in keys:
        node = node.get(key) if isinstance(node, dict) else None
    return node


def _price(value: object) -> Decimal | None:
    """A price from an untrusted reply: a finite, non-negative number, else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        price = Decimal(str(value))
    except InvalidOperation:
        return None
    return price if price.is_finite() and price >= 0 else None


def refresh(cache_dir: Path) -> str:
    """Fetch HiAPI's public price list (no key needed) into the cache, dated."""
    from nbpipe.backends.hiapi import fetch_price_list

    base, doc = fetch_price_list()
    prices = parse_catalogue(doc)
    if not prices:
        raise UsageError(f"{base}/api/pricing lists no valid price for the HiAPI models nbpipe "
                         "knows", "the table in use stays as it was")
    fetched = dt.date.today().isoformat()
    atomic_write(cache_dir / PRICES_FILE, json.dumps(
        {"fetched": fetched, "source": base, "hiapi": prices}, indent=2).encode("utf-8"))
    return f"refreshed {len(prices)} HiAPI model price(s) from {base} ({fetched})"


def _usd(value: Decimal) -> str:  # a catalogue price exactly as listed, no zeros added
    return format(value.normalize(), "f")


def _prices(spec: ModelSpec, prices: Mapping[str, Decimal] | None = None) -> str:
    prices = spec.prices if prices is None else prices
    if FLAT in prices:
        return _usd(prices[FLAT])
    keys = spec.price_keys if spec.qualities else spec.resolutions
    return " · ".join(f"{r} {_usd(prices[r]) if r in prices else '?'}" for r in keys)


def _lanes(spec: ModelSpec) -> str:
    """The lanes it takes, a lane the vendor does not confirm for it marked '?'."""
    return " · ".join(name + ("" if (lane := spec.lane(name)) is None or lane.confirmed
                              else "?") for name in spec.lanes)


def _lane_lines(specs: list[ModelSpec]) -> list[str]:
    """Each lane beyond standard: its prices per tier and how soon it answers."""
    lines = []
    for spec in specs:
        for name in spec.lanes[1:]:
            lane = spec.other_lanes[name]
            said = [lane.turnaround or ""] + ([] if lane.confirmed else
                                              ["unconfirmed for this model"])
            lines.append(f"  {spec.name} on {name}: USD {_prices(spec, lane.prices)}"
                         f" ({'; '.join(s for s in said if s)})")
    return lines


def _status(spec: ModelSpec, today: dt.date) -> str:
    if spec.shut_down(today):
        instead = " / ".join(filter(None, (spec.replacement, *spec.also_replaced_by)))
        return f"retired {spec.shutdown}" + (f" → {instead}" if instead else "")
    since = f" since {spec.released}" if spec.released else ""
    ends = f", shuts down {spec.shutdown}" if spec.shutdown else ""
    return f"{spec.status}{since}{ends}"


def _limits(spec: ModelSpec) -> str:
    def mark(fact: str) -> str:
        return "" if fact in spec.confirmed else "?"

    if spec.max_inputs:
        kinds = {"url": " (URLs)", "inline": " (inline)"}.get(spec.transport, "")
        inputs = f"≤{spec.max_inputs}{mark('inputs')} images{kinds}"
    else:
        inputs = "text only"
    prompt = f"; prompt ≤{spec.prompt_max:,}{mark('prompt')} chars" if spec.prompt_max else ""
    return inputs + prompt


def _listed(catalog: Catalog, backend: str | None) -> list[ModelSpec]:
    """Every model of `backend`, or of every backend that is not a free stand-in."""
    names = [backend] if backend else [b for b in catalog.names
                                       if not catalog.backends[b].stands_in_for]
    return [spec for name in names for spec in catalog.models[name].values()]


def models_table(catalog: Catalog, backend: str | None, today: dt.date) -> str:
    """One row per model: status and dates, prices per tier and their source, input limits."""
    listed = _listed(catalog, backend)
    rows = [("BACKEND", "MODEL", "STATUS", "USD PER IMAGE", "PRICES FROM", "TAKES", "LANES")]
    rows += [(s.backend, s.name, _status(s, today), _prices(s), s.price_source, _limits(s),
              _lanes(s)) for s in listed]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in rows]
    stand_ins = [b for b in catalog.names if catalog.backends[b].stands_in_for and b != backend]
    for name in stand_ins:
        lines.append(f"{name}: every model of {', '.join(catalog.backends[name].stands_in_for)} "
                     "with the same limits, free (`--backend " + name + "` lists them)")
    lanes = _lane_lines([s for s in listed if not s.shut_down(today)])
    if lanes:
        lines += ["lanes beyond standard (`lane:` in nbpipe.yaml, or --lane), USD per image:",
                  *lanes]
    lines.append("? = a limit or lane the vendor's docs do not confirm")
    return "\n".join(lines)


def models_json(catalog: Catalog, backend: str | None, today: dt.date) -> str:
    return json.dumps({"today": today.isoformat(), "models": [{
        "backend": s.backend, "model": s.name, "title": s.title, "status": s.status,
        "lifecycle": s.lifecycle(today), "released": _date(s.released),
        "shutdown": _date(s.shutdown), "replacement": s.replacement,
        "prices": _json_prices(s.prices), "price_source": s.price_source,
        "resolutions": list(s.resolutions), "default_resolution": s.default_resolution,
        "aspect_ratios": list(s.aspect_ratios),
        "output_formats": dict(s.formats) if s.formats is not None else None,
        "inputs": {"max": s.max_inputs, "transport": s.transport,
                   "max_bytes": s.input_max_bytes,
                   "types": list(s.input_types) if s.input_types else None},
        "prompt_max_chars": s.prompt_max, "confirmed": sorted(s.confirmed),
        "lanes": {name: _lane_json(s.other_lanes[name]) for name in s.lanes[1:]},
    } for s in _listed(catalog, backend)]}, indent=2, ensure_ascii=False)


def _json_prices(prices: Mapping[str, Decimal]) -> float | dict[str, float]:
    return float(prices[FLAT]) if FLAT in prices else {k: float(v) for k, v in prices.items()}


def _lane_json(lane: Lane) -> dict[str, object]:
    return {"prices": _json_prices(lane.prices), "turnaround": lane.turnaround,
            "confirmed": lane.confirmed}


def _date(value: dt.date | None) -> str | None:
    return value.isoformat() if value else None
