"""The price list in force, read from the cache (`prices.json`, written by `nbpipe models
--refresh`): a stored record like any other, so a shared cache's damage is a miss with a
warning, and the budget's measure never falls below the built-in prices."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from nbpipe.catalog import Catalog, builtin
from nbpipe.errors import warn
from nbpipe.projectfile import FileRefused, read_capped
from nbpipe.store.records import valid_price_list

PRICES_FILE = "prices.json"
PRICES_CAP = 1 << 20  # a price list is a few kilobytes; what HiAPI sends is capped alike


def stored(cache_dir: Path) -> dict[str, Any] | None:
    """The refreshed catalogue, checked like every cached file (the cache may be shared): a file
    of the wrong shape is set aside with a warning, and the built-in table stays in force."""
    path = cache_dir / PRICES_FILE
    try:  # bounded, not followed, never blocking: another user of the cache may plant a FIFO
        doc = json.loads(read_capped(path, PRICES_CAP).decode("utf-8"))
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, ValueError, FileRefused, RecursionError):
        doc = None
    if valid_price_list(doc) and isinstance(doc, dict):
        return doc
    warn(f"{path} is not a valid price list; set aside as {PRICES_FILE}.invalid, the built-in "
         "table is in force (`nbpipe models --refresh` fetches it again)", str(path))
    try:
        os.replace(path, path.with_name(PRICES_FILE + ".invalid"))
    except OSError:
        pass
    return None


def list_prices(cache_dir: Path) -> Catalog:
    """The budget's measure: per model and tier, the higher of the built-in price and the
    refreshed one. Neither a manifest's `pricing:` nor a tampered shared cache can lower it."""
    refreshed = current_catalog(cache_dir)
    return builtin() if refreshed is None else builtin().higher(refreshed)


def current_catalog(cache_dir: Path) -> Catalog | None:
    """The built-in table with a refreshed HiAPI catalogue applied, if one was fetched."""
    doc = stored(cache_dir)
    return builtin().with_prices({"hiapi": doc["hiapi"]},
                                 f"HiAPI catalogue fetched {doc.get('fetched', '?')}") \
        if doc else None
