"""Gemini bills input and thinking tokens on top of the image (issue #22 item 5): the budget
reserves the most a request can cost from the catalogue's token prices, and `plan` says so."""

from __future__ import annotations

from decimal import Decimal

from nbpipe.catalog import builtin
from nbpipe.plan.budget import Budget
from nbpipe.plan.planner import open_project
from tests.conftest import tiny_png

LONG = "x" * 131_072  # the longest prompt nbpipe sends where the vendor states no limit


def _frames(tmp_path, model: str, extra: str = "", backend: str = "gemini"):
    for i in range(14):
        (tmp_path / f"ref{i}.png").write_bytes(tiny_png())
    refs = ", ".join(f"ref{i}.png" for i in range(14))
    (tmp_path / "nbpipe.yaml").write_text(
        f"version: 1\ndefaults: {{backend: {backend}, model: {model}}}\n{extra}targets:\n"
        f"  short: {{prompt: a red kite}}\n"
        f"  long: {{prompt: '{LONG}', inputs: [{refs}]}}\n")
    return open_project(tmp_path).frames


def test_a_pro_render_reserves_its_tokens_at_most(tmp_path):
    frames = _frames(tmp_path, "gemini-3-pro-image")
    tokens = builtin().get("gemini", "gemini-3-pro-image").tokens
    budget = Budget(None, builtin())
    image = Decimal("0.134")
    # The whole input window at the input price, the whole output window at the thinking price.
    most = (tokens.max_input_tokens * tokens.input_usd_per_million
            + tokens.max_thinking_tokens * tokens.thinking_usd_per_million) / 1_000_000
    assert budget.reservation(frames["long"]) == image + most
    # "a red kite" without images bills 10 input tokens at most (a token covers >= 1 byte).
    short = budget.reservation(frames["short"]) - image
    assert short == most - (tokens.max_input_tokens - 10) * tokens.input_usd_per_million / 10**6
    assert short >= Decimal("0.6") * image  # the ~60 % thinking adds on Pro is inside the bound


def test_the_cap_holds_the_tokens_back(tmp_path):
    """Two Pro images at 0.134 fit a 0.30 cap by image price; with what their tokens may bill,
    not even one does (the measure of what is spent stays the image's list price)."""
    frame = _frames(tmp_path, "gemini-3-pro-image")["short"]
    budget = Budget(Decimal("0.30"), builtin())
    assert not budget.reserve(frame) and budget.refused == ["short"]
    assert budget.measure(frame) == Decimal("0.134")
    roomy = Budget(budget.reservation(frame), builtin())
    assert roomy.reserve(frame) and not roomy.reserve(frame)


def test_neither_pricing_nor_trust_waives_the_tokens(tmp_path):
    cheap = "pricing: {gemini: {gemini-3.1-flash-image: 0.001}}\n"
    frames = _frames(tmp_path, "gemini-3.1-flash-image", cheap)
    trusting = Budget(None, builtin(), trust=True)
    short = frames["short"]
    assert trusting.reservation(short) == Decimal("0.001") + trusting.tokens(short)
    assert trusting.tokens(frames["short"]) > Decimal("0.05")


def test_free_and_per_image_backends_reserve_no_tokens(tmp_path):
    preview = _frames(tmp_path, "gemini-3-pro-image", backend="preview")
    assert Budget(None, builtin()).reservation(preview["long"]) == 0
    (tmp_path / "nbpipe.yaml").write_text("version: 1\ndefaults: {backend: hiapi}\n"
                                          "targets:\n  a: {prompt: a red kite}\n")
    frame = open_project(tmp_path).frames["a"]
    assert Budget(None, builtin()).reservation(frame) == Decimal("0.05")


def test_plan_shows_the_token_reserve(tmp_path, run):
    (tmp_path / "nbpipe.yaml").write_text(
        "version: 1\ndefaults: {backend: gemini, model: gemini-3-pro-image}\n"
        "targets:\n  a: {prompt: a red kite}\n")
    out = run("-C", str(tmp_path), "plan").out.splitlines()
    assert out[-1].startswith("budget: --max-cost counts USD 0.5")
    assert "of input and thinking tokens billed on top of the image prices" in out[-1]
