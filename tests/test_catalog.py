"""The model catalogue: one data file, validated by one loader, and the only place model facts
live (so the next retirement is a one-file change)."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from pathlib import Path

import pytest

from nbpipe import catalog
from nbpipe.catalog import CatalogBroken, builtin, parse

PACKAGE = Path(catalog.__file__).parent
DATA = PACKAGE / "data"


def test_schema_file_is_current_and_the_data_matches_it():
    import jsonschema

    committed = (DATA / "catalog.schema.json").read_text("utf-8")
    assert catalog.schema_text() == committed, \
        "run: python -c 'from nbpipe.catalog import schema_text; print(schema_text(), end=\"\")' " \
        "> nbpipe/data/catalog.schema.json"
    jsonschema.validate(json.loads((DATA / "catalog.json").read_text("utf-8")),
                        json.loads(committed))


def _facts() -> dict[str, set[str]]:
    """Every model id, price, tier, aspect ratio and prompt limit the catalogue states."""
    facts: dict[str, set[str]] = {"model": set(), "price": set(), "tier": set(), "ratio": set(),
                                  "limit": set()}
    for models in builtin().models.values():
        for spec in models.values():
            facts["model"].add(spec.name)
            facts["price"] |= {format(p.normalize(), "f") for p in spec.prices.values() if p}
            for lane in spec.lanes[1:]:
                facts["price"] |= {format(p.normalize(), "f")
                                   for p in spec.other_lanes[lane].prices.values() if p}
            facts["tier"] |= set(spec.resolutions)
            facts["ratio"] |= set(spec.aspect_ratios) - {"auto"}
            facts["limit"] |= {str(n) for n in (spec.prompt_max, spec.input_max_bytes) if n}
    return facts


def _pattern(kind: str, value: str) -> re.Pattern:
    if kind == "model":
        return re.compile(rf"(?<![\w.-]){re.escape(value)}(?![\w.-])")
    if kind in ("price", "limit"):  # 0.134 or 0.1340, 10000 or 10_000, as a number
        digits = re.escape(value) + "0*" if kind == "price" \
            else "_?".join(re.escape(c) for c in value)
        return re.compile(rf"(?<![\w.]){digits}(?![\w.])")
    return re.compile(rf"[\"']{re.escape(value)}[\"']")  # tiers and ratios as string literals


def _scanned() -> list[tuple[Path, set[str]]]:
    """Every file that must not restate a fact, with the kinds of fact it is checked for."""
    kinds = {"model", "price", "tier", "ratio", "limit"}
    exempt = {PACKAGE / "catalog.py", DATA / "catalog.json", DATA / "catalog.schema.json"}
    files = [(p, kinds) for p in sorted(PACKAGE.rglob("*"))
             if p.is_file() and p.suffix != ".pyc" and p not in exempt]
    # The starter is a manifest: it names a model and a ratio as any user's would.
    files = [(p, k - {"model", "ratio"} if p == DATA / "starter.yaml" else k) for p, k in files]
    # The fake servers check what the catalogue says (prices are no business of theirs, and
    # their short sleeps are no prices); their tests drive the official clients with real ids.
    fakes = PACKAGE.parent / "tests" / "fakes"
    return files + [(p, kinds - {"price"}) for p in sorted(fakes.glob("*.py"))
                    if not p.name.startswith("test_")]


def test_no_module_but_the_loader_states_a_model_fact():
    facts = _facts()
    assert {"gemini-3-pro-image", "gemini-2.5-flash-image", "Nano-Banana-2"} <= facts["model"]
    assert {"0.134", "0.24", "0.045"} <= facts["price"] and "5000" in facts["limit"]
    offenders = []
    for path, kinds in _scanned():
        text = path.read_text("utf-8")
        for kind in kinds:
            for value in facts[kind]:
                if _pattern(kind, value).search(text):
                    offenders.append(f"{path.relative_to(PACKAGE.parent)}: {kind} {value}")
    assert offenders == []


def test_the_grep_would_catch_a_restated_fact():
    facts = _facts()
    samples = [("model", 'DEFAULT = "gemini-3-pro-image"'), ("price", "cost = Decimal('0.134')"),
               ("price", 'PRO_4K = "0.30"'), ("price", "# Nano-Banana 0.050 a frame"),
               ("tier", 'TIERS = {"512": 512}'), ("ratio", 'ok = ratio in ("21:9",)'),
               ("limit", "PROMPT_MAX = 10_000"), ("limit", "INLINE_MAX = 7340032")]
    for kind, sample in samples:
        assert any(_pattern(kind, v).search(sample) for v in facts[kind]), sample
    assert not any(_pattern("price", "0.3").search(text) for text in ("0.35", "10.3", "0.3.1"))
    assert not _pattern("model", "gemini-3-pro-image").search("gemini-3-pro-image-preview")


def _doc() -> dict:
    return json.loads((DATA / "catalog.json").read_text("utf-8"))


def _model(doc: dict, name: str) -> dict:
    return doc["backends"]["gemini"]["models"][name]


@pytest.mark.parametrize("mutate, words", [
    (lambda d: _model(d, "gemini-3-pro-image").update(prices={"1K": 0.1}),
     "tiered prices must name exactly the model's resolutions"),
    (lambda d: _model(d, "gemini-3-pro-image").update(replacement="gemini-9"),
     "replacement 'gemini-9' is not a gemini model"),
    (lambda d: _model(d, "gemini-3-pro-image").update(status="retired"),
     "a retired model needs its shutdown date"),
    (lambda d: _model(d, "gemini-3-pro-image").update(resolutions=["1K", "2K", "8K"],
                                                     prices={"1K": 1, "2K": 1, "8K": 1},
                                                     lanes={}),
     "unknown tiers ['8K']"),
    (lambda d: _model(d, "gemini-3-pro-image").update(shutdown="soon"), "shutdown"),
    (lambda d: d["backends"]["gemini"].update(colour="blue"), "colour"),
    (lambda d: _model(d, "gemini-3-pro-image")["lanes"]["batch"].update(prices={"1K": 0.1}),
     "tiered prices must name exactly the model's resolutions"),
    (lambda d: _model(d, "gemini-3-pro-image")["lanes"].update(priority={"prices": 1,
                                                                         "source": "x"}),
     "priority"),
])
def test_the_loader_refuses_an_inconsistent_catalogue(mutate, words):
    doc = _doc()
    mutate(doc)
    with pytest.raises(CatalogBroken) as info:
        parse(json.dumps(doc))
    assert words in str(info.value)


def test_lifecycle_follows_the_dates_and_the_replacement_chain():
    models = builtin().models["gemini"]
    oldest = models["gemini-2.5-flash-image-preview"]
    assert [s.name for s in builtin().successor(oldest, dt.date(2026, 11, 1))] == \
        ["gemini-2.5-flash-image", "gemini-3.1-flash-image"]
    assert [s.name for s in builtin().successor(oldest, dt.date(2026, 5, 1))] == \
        ["gemini-2.5-flash-image"]  # then 2.5 Flash was still in service
    pro = models["gemini-3-pro-image-preview"]
    assert not pro.shut_down(dt.date(2026, 6, 24)) and pro.shut_down(dt.date(2026, 6, 25))
    assert (pro.days_left(dt.date(2026, 5, 25)), pro.days_left(dt.date(2026, 5, 26))) == (None, 30)
    assert pro.lifecycle(dt.date(2026, 6, 1)) == "retired"  # its status already says so
    assert models["gemini-3-pro-image"].lifecycle(dt.date(2030, 1, 1)) == "ga"


def test_the_preview_backend_stands_in_for_every_model_free():
    real = {n for b in builtin().names if b != "preview" for n in builtin().models[b]}
    preview = builtin().models["preview"]
    assert set(preview) == real
    assert all(spec.price("4K") == 0 for spec in preview.values())
    assert preview["gemini-3-pro-image"].max_inputs == 14


def test_today_can_be_moved_for_rehearsals(monkeypatch):
    from nbpipe.errors import UsageError

    monkeypatch.setenv("NBPIPE_TODAY", "2026-06-01")
    assert catalog.today() == dt.date(2026, 6, 1)
    monkeypatch.setenv("NBPIPE_TODAY", "June")
    with pytest.raises(UsageError):
        catalog.today()


def test_the_starter_manifest_names_only_models_in_service():
    starter = (DATA / "starter.yaml").read_text("utf-8")
    for models in builtin().models.values():
        for spec in models.values():
            if spec.shut_down(catalog.today()):
                assert not _pattern("model", spec.name).search(starter), spec.name


def _readme_table() -> str:
    """README's model table, made from the catalogue: models in service, then the shut-down."""
    when = catalog.today()
    rows = ["| backend | model | status | takes | USD per image, at the sizes nbpipe sends "
            "| lanes |", "|---|---|---|---|---|---|"]
    gone = []
    for backend, models in builtin().models.items():
        if backend == "preview":  # its own row: it takes any model of the others
            continue
        for spec in models.values():
            if spec.shut_down(when):
                use = " or ".join((str(spec.replacement), *spec.also_replaced_by))
                gone.append(f"{spec.name} ({spec.shutdown}, use {use})")
                continue
            since = f" since {spec.released}" if spec.released else ""
            takes = f"up to {spec.max_inputs} input image{'s' * (spec.max_inputs > 1)}" \
                if spec.max_inputs else "text only"
            takes += "; " + " / ".join(spec.resolutions) if spec.resolutions \
                else "; no `resolution`"
            if not spec.qualities:
                prices = " / ".join(format(spec.prices[r], "f") for r in spec.resolutions) \
                    if spec.resolutions else format(spec.price(None), "f")
            else:  # per quality (the columns), at each size or tier
                takes += f"; ratios {' '.join(spec.aspect_ratios)}; quality " + \
                    " / ".join(spec.qualities)
                classes = spec.resolutions or sorted(set((spec.sizes or {}).values()))
                prices = "; ".join(f"{c}: " + " / ".join(format(spec.prices[f"{q}/{c}"], "f")
                                                         for q in spec.qualities)
                                   for c in classes)
            if "prices" not in spec.confirmed:
                prices += " (unconfirmed)"
            lanes = ", ".join(_lane_cell(spec, name) for name in spec.lanes[1:]) or \
                "standard only"
            rows.append(f"| {backend} | {spec.name} | {spec.status}{since} | {takes} | {prices} "
                        f"| {lanes} |")
    rows.append("| preview | any of the above | | the same limits, offline | 0 | standard only |")
    return "\n".join(rows) + "\n\nShut down (a manifest naming one is an error that names its " \
        f"replacement): {', '.join(gone)}.\n"


def _lane_cell(spec, lane: str) -> str:
    tiers = spec.resolutions or (None,)
    prices = " / ".join(format(spec.price(r, lane), "f") for r in tiers)
    return f"{lane} {prices}" + ("" if spec.lane(lane).confirmed else " (unconfirmed)")


def test_readme_model_table_is_made_from_the_catalogue():
    readme_path = PACKAGE.parent / "README.md"
    readme = readme_path.read_text("utf-8")
    begin = "<!-- models:begin (generated from nbpipe/data/catalog.json) -->\n"
    head, _, rest = readme.partition(begin)
    table, end, tail = rest.partition("<!-- models:end -->")
    if os.environ.get("NBPIPE_UPDATE_README"):
        readme_path.write_text(head + begin + _readme_table() + end + tail, "utf-8")
    assert table == _readme_table(), "regenerate: NBPIPE_UPDATE_README=1 pytest tests/test_catalog.py"


def test_a_price_override_never_leaves_a_tier_unpriced():
    from decimal import Decimal

    base = builtin()
    flat = base.with_prices({"hiapi": {"Nano-Banana": {}, "Nano-Banana-Pro": {"8K": 9}}})
    assert flat.get("hiapi", "Nano-Banana").price(None) == Decimal("0.05")  # was free
    assert flat.get("hiapi", "Nano-Banana").price_source == "built-in"
    assert dict(flat.get("hiapi", "Nano-Banana-Pro").prices) == \
        dict(base.get("hiapi", "Nano-Banana-Pro").prices)
    # A flat refreshed price, then the manifest's price for one tier: both apply.
    both = base.with_prices({"hiapi": {"Nano-Banana-2": 0.09}}) \
        .with_prices({"hiapi": {"Nano-Banana-2": {"4K": 0.2}}})
    spec = both.get("hiapi", "Nano-Banana-2")
    assert (spec.price("1K"), spec.price("4K")) == (Decimal("0.09"), Decimal("0.2"))


def test_the_schema_does_not_depend_on_the_installed_pydantic():
    """pydantic writes Decimal's schema differently between releases: a fresh install of the
    newest one failed the test above (README's test command on a fresh machine). Prices say
    their JSON type outright."""
    schema = json.loads(catalog.schema_text())
    prices = schema["$defs"]["ModelEntry"]["properties"]["prices"]
    assert prices["anyOf"] == [{"type": "number"}, {"additionalProperties": {"type": "number"},
                                                    "type": "object"}]


def test_lanes_are_data_with_their_own_prices():
    from decimal import Decimal

    pro = builtin().get("gemini", "gemini-3-pro-image")
    assert pro.lanes == ("standard", "batch", "flex")
    for tier in pro.resolutions:  # the vendor's discount: half the standard price
        assert pro.price(tier, "batch") == pro.price(tier, "flex") == pro.price(tier) / 2
    assert pro.price(None, "batch") == pro.price("1K") / 2  # the default tier
    assert pro.lane("batch").confirmed and not pro.lane("flex").confirmed
    assert pro.lane("standard") is None
    for backend in ("hiapi", "preview"):
        assert {s.lanes for s in builtin().models[backend].values()} == {("standard",)}
    # A lane a model does not take is priced as standard, never lower (an untrusted lock).
    nano = builtin().get("hiapi", "Nano-Banana")
    assert nano.price(None, "batch") == nano.price(None) == Decimal("0.05")


def test_a_price_override_applies_to_the_standard_lane_only():
    from decimal import Decimal

    base = builtin().get("gemini", "gemini-3-pro-image")
    spec = builtin().with_prices({"gemini": {"gemini-3-pro-image": {"4K": 1}}}) \
        .get("gemini", "gemini-3-pro-image")
    assert spec.price("4K") == Decimal(1)
    assert spec.price("4K", "batch") == base.price("4K", "batch")
    assert spec.lanes == base.lanes
