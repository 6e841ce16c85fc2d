"""--max-cost caps real spend: measured in list prices that neither a pull request's manifest
nor a shared cache can lower (SECURITY.md, "The budget rule")."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from tests.samples import ONE, journal, on_gemini

PRO = """\
version: 1
defaults: {backend: hiapi, model: Nano-Banana-Pro, resolution: 1K}
targets:
  shot:
    prompt: "a harbour at {{ hour }}"
    matrix: {hour: [one, two, three, four, five]}
"""
CHEAP = "pricing: {hiapi: {Nano-Banana-Pro: {1K: 0}}}\n"


def test_manifest_pricing_cannot_lower_the_budget_measure(fake_hiapi, build, make_project):
    root = make_project(PRO + CHEAP)
    result = build(root, "--max-cost", "0.40")
    assert fake_hiapi.counts["creates"] == 2  # 2 × USD 0.17 list price fit in 0.40, not 5
    assert (result["code"], result["rendered"], result["skipped"]) == (1, 2, 3)
    assert result["spent_usd"] == pytest.approx(0.34)


def test_the_runner_may_trust_the_manifest_prices(fake_hiapi, build, make_project):
    root = make_project(PRO + CHEAP)
    result = build(root, "--max-cost", "0.40", "--trust-manifest-prices")
    assert (result["code"], fake_hiapi.counts["creates"]) == (0, 5)


def test_a_manifest_may_raise_prices(fake_hiapi, build, make_project):
    root = make_project(PRO + "pricing: {hiapi: {Nano-Banana-Pro: {1K: 0.30}}}\n")
    result = build(root, "--max-cost", "0.40")
    assert (result["code"], fake_hiapi.counts["creates"]) == (1, 1)


def test_a_tampered_shared_price_list_cannot_lower_the_measure(fake_hiapi, build, make_project):
    root = make_project(PRO)
    (root / ".nbpipe").mkdir()
    (root / ".nbpipe" / "prices.json").write_text(json.dumps(
        {"fetched": "2026-01-01", "hiapi": {"Nano-Banana-Pro": {"1K": 0, "2K": 0, "4K": 0}}}))
    result = build(root, "--max-cost", "0.40")
    assert (result["code"], fake_hiapi.counts["creates"]) == (1, 2)


GEMINI_CHEAP = on_gemini(ONE) + "pricing: {gemini: {gemini-3.1-flash-image: 0.01}}\n"


def leave_an_unanswered_request(root, frame: str) -> None:
    """What a build killed while waiting for a Gemini reply leaves: an open journal entry."""
    from nbpipe.plan.planner import open_project

    sent = open_project(root).frames[frame]
    left = journal(root)
    left.intent(sent.key, 1, sent.name, sent.backend, sent.record())
    left.close()


@pytest.mark.parametrize("trust, rendered", [((), 0), (("--trust-manifest-prices",), 1)])
def test_a_possibly_billed_request_is_reserved_at_list_price(trust, rendered, fake_gemini, build,
                                                             make_project):
    """An earlier build's unanswered request may have cost the list price (USD 0.067); it was
    reserved at the manifest's 0.01, so a's resend (0.067 more) was let through a 0.13 cap."""
    root = make_project(GEMINI_CHEAP)
    leave_an_unanswered_request(root, "a")
    from nbpipe.catalog import builtin
    from nbpipe.plan.budget import Budget
    from nbpipe.plan.planner import open_project

    tokens = Budget(None, builtin()).tokens(open_project(root).frames["a"])  # each, on top
    result = build(root, "--max-cost", str(Decimal("0.13") + 2 * tokens), *trust)
    assert (result["rendered"], fake_gemini.counts.get("generates", 0)) == (rendered, rendered)
    assert (result["skipped"], result["maybe_billed"]) == (1 - rendered, 1)


@pytest.mark.parametrize("garbage", ['{"hiapi": {"Nano-Banana": "abc"}}', '{"hiapi": []}',
                                     '{"hiapi": {"Nano-Banana": 1e999}}', "[1, 2]", "\x00\x01",
                                     '{"hiapi": {"Nano-Banana-2": {"8K": 1}}}',
                                     '{"hiapi": {"Nano-Banana": true}}'])
def test_garbage_price_list_is_set_aside_with_a_warning(make_project, run, garbage):
    root = make_project(PRO)
    (root / ".nbpipe").mkdir()
    (root / ".nbpipe" / "prices.json").write_text(garbage)
    result = run("-C", str(root), "plan", "--json")
    assert result.code == 0 and "is not a valid price list" in result.err
    assert json.loads(result.out)["summary"]["cost_usd"] == pytest.approx(0.85)
    assert (root / ".nbpipe" / "prices.json.invalid").read_text() == garbage
    assert run("-C", str(root), "plan").err == ""  # set aside once, not every command
