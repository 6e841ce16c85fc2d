"""Which price table is in force: the built-in one, HiAPI's live catalogue (refreshed into the
cache with its date), and the manifest's `pricing:` overrides on top of either."""

from __future__ import annotations

import datetime as dt
import json
import os
from decimal import Decimal, InvalidOperation
from pathlib import Path

from nbpipe.catalog import BUILTIN, FLAT, Catalog
from nbpipe.errors import UsageError
from nbpipe.plan.planner import Project

DEFAULT_PRICING_URL = "https://www.hiapi.ai"
PRICES_FILE = "prices.json"


def _stored(cache_dir: Path) -> dict | None:
    try:
        doc = json.loads((cache_dir / PRICES_FILE).read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and isinstance(doc.get("hiapi"), dict) else None


def current_catalog(cache_dir: Path) -> Catalog | None:
    """The built-in table with a refreshed HiAPI catalogue applied, if one was fetched."""
    doc = _stored(cache_dir)
    return BUILTIN.with_prices({"hiapi": doc["hiapi"]}) if doc else None


def price_source(cache_dir: Path, project: Project) -> str:
    doc = _stored(cache_dir)
    source = f"HiAPI catalogue fetched {doc.get('fetched', '?')}" if doc \
        else "built-in table (HiAPI and Gemini list prices, 2026)"
    overrides = sum(len(models) for models in project.loaded.manifest.pricing.values())
    return source + (f"; {overrides} model price(s) overridden by the manifest" if overrides else "")


def parse_catalogue(doc: dict) -> dict[str, object]:
    """HiAPI's /api/pricing → {model: price | {resolution: price}} for the models nbpipe knows."""
    known = BUILTIN.models["hiapi"]
    out: dict[str, object] = {}
    for item in doc.get("data") or []:
        if not isinstance(item, dict) or item.get("model_name") not in known:
            continue
        spec = known[item["model_name"]]
        try:
            base = Decimal(str(item.get("base_usd_value")))
            tiers = {}
            for policy in item.get("policies") or []:
                match = ((policy.get("rule") or {}).get("resolution") or {}).get("match")
                if match in spec.resolutions:
                    tiers[match] = Decimal(str(policy.get("usd_value")))
        except (InvalidOperation, AttributeError, TypeError):
            continue
        out[spec.name] = {r: float(tiers.get(r, base)) for r in spec.resolutions} \
            if spec.resolutions else float(base)
    return out


def refresh(cache_dir: Path) -> str:
    """Fetch HiAPI's public price list (no key needed) into the cache, dated."""
    import httpx

    base = os.environ.get("NBPIPE_PRICING_URL", DEFAULT_PRICING_URL).rstrip("/")
    try:
        response = httpx.get(f"{base}/api/pricing", timeout=15.0, follow_redirects=True)
        response.raise_for_status()
        prices = parse_catalogue(response.json())
    except (httpx.HTTPError, ValueError) as exc:
        raise UsageError(f"could not refresh prices from {base}: {type(exc).__name__}",
                         "the table in use stays as it was") from None
    if not prices:
        raise UsageError(f"{base}/api/pricing lists none of the Nano-Banana models",
                         "the table in use stays as it was")
    cache_dir.mkdir(parents=True, exist_ok=True)
    fetched = dt.date.today().isoformat()
    (cache_dir / PRICES_FILE).write_text(json.dumps(
        {"fetched": fetched, "source": base, "hiapi": prices}, indent=2), "utf-8")
    return f"refreshed {len(prices)} HiAPI model price(s) from {base} ({fetched})"


def price_table(catalog: Catalog) -> str:
    lines = []
    for backend, models in catalog.models.items():
        if backend == "preview":
            continue
        for name, spec in models.items():
            if FLAT in spec.prices:
                cells = f"{spec.prices[FLAT]}"
            else:
                cells = " · ".join(f"{r} {spec.prices.get(r, '?')}" for r in spec.resolutions)
            lines.append(f"{backend:<7} {name:<32} {cells}")
    return "\n".join(lines)
