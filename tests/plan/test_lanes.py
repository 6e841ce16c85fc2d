"""Lanes as declared and planned (issue #24): `lane:` in defaults, a target, a variant and a
profile; --lane and NBPIPE_LANE over them all; a model that does not take the lane is a
located error; the lane is priced, but never keyed."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from nbpipe.catalog import builtin
from nbpipe.errors import ManifestError, UsageError
from nbpipe.plan.budget import Budget
from nbpipe.plan.planner import open_project

PRO = builtin().get("gemini", "gemini-3-pro-image")
MANIFEST = """\
version: 1
defaults: {backend: gemini, model: gemini-3-pro-image, lane: batch}
profiles:
  now: {lane: standard}
  rush: {lane: flex, wins: true}
targets:
  catalogue: {prompt: a shoe}
  hero:
    prompt: a hero shot
    lane: standard
    variants:
      tall: {aspect_ratio: "9:16"}
      cheap: {lane: flex}
"""


def _lanes(root, **how) -> dict[str, tuple[str, Decimal]]:
    return {n: (f.lane, f.cost) for n, f in open_project(root, **how).frames.items()}


def test_defaults_target_variant_and_profile_each_set_the_lane(make_project):
    root = make_project(MANIFEST)
    assert _lanes(root) == {"catalogue": ("batch", PRO.price("1K", "batch")),
                            "hero/tall": ("standard", PRO.price("1K")),
                            "hero/cheap": ("flex", PRO.price("1K", "flex"))}
    assert {n: lane for n, (lane, _) in _lanes(root, profile="now").items()} == \
        {"catalogue": "standard", "hero/tall": "standard", "hero/cheap": "flex"}
    assert {lane for lane, _ in _lanes(root, profile="rush").values()} == {"flex"}


def test_the_lane_flag_wins_over_the_manifest_and_moves_no_output(make_project):
    root = make_project(MANIFEST)
    usual = open_project(root)
    forced = open_project(root, lane="standard", profile="rush")
    assert {f.lane for f in forced.frames.values()} == {"standard"}
    assert forced.flags == " --profile rush --lane standard"
    # The lane changes the price, never the key or where the image goes.
    assert [(f.key, f.output) for f in usual.frames.values()] == \
        [(f.key, f.output) for f in open_project(root, lane="flex").frames.values()]


def test_nbpipe_lane_is_the_flags_default(make_project, run, monkeypatch):
    root = make_project(MANIFEST)
    monkeypatch.setenv("NBPIPE_LANE", "flex")
    planned = json.loads(run("-C", str(root), "plan", "--json").out)["frames"]
    assert {f["lane"] for f in planned} == {"flex"}
    planned = json.loads(run("-C", str(root), "plan", "--json", "--lane", "batch").out)["frames"]
    assert {f["lane"] for f in planned} == {"batch"}
    monkeypatch.setenv("NBPIPE_LANE", "overnight")
    result = run("-C", str(root), "plan")
    assert result.code == 2 and "NBPIPE_LANE must be one of standard, batch, flex" in result.err


def test_a_model_that_does_not_take_the_lane_is_a_located_error(make_project):
    root = make_project("version: 1\ndefaults: {backend: hiapi, model: Nano-Banana}\n"
                        "profiles:\n  nightly: {lane: batch}\n"
                        "targets:\n  a: {prompt: x}\n  b: {prompt: y, lane: flex}\n")
    with pytest.raises(ManifestError) as info:
        open_project(root)
    (diag,) = info.value.diagnostics
    text = diag.render()
    assert "nbpipe.yaml:7:" in text and "model 'Nano-Banana' does not take the flex lane" in text
    assert "Nano-Banana takes standard; models that take flex: gemini-3-pro-image" in text
    with pytest.raises(ManifestError) as info:
        open_project(root, profile="nightly")
    assert "nbpipe.yaml:4:" in info.value.diagnostics[0].render()
    assert "`targets:`" in info.value.diagnostics[0].render()
    with pytest.raises(ManifestError) as info:
        open_project(root, lane="batch")
    rendered = [d.render() for d in info.value.diagnostics]
    assert any("--lane batch: model 'Nano-Banana' does not take the batch lane" in r
               for r in rendered)
    with pytest.raises(UsageError):
        open_project(root, lane="overnight")


def test_the_preview_backend_takes_the_standard_lane_only(make_project):
    root = make_project(MANIFEST)
    with pytest.raises(ManifestError) as info:
        open_project(root, backend="preview")
    assert "does not take the batch lane" in info.value.diagnostics[0].render()
    assert {f.lane for f in open_project(root, backend="preview",
                                         lane="standard").frames.values()} == {"standard"}


def test_the_budget_measures_the_lane_and_pricing_moves_the_standard_lane_only(make_project):
    cheap = "pricing: {gemini: {gemini-3-pro-image: 0.01}}\n"
    root = make_project(MANIFEST + cheap)
    frames = open_project(root).frames
    budget = Budget(None, builtin())
    assert budget.measure(frames["catalogue"]) == PRO.price("1K", "batch")
    assert budget.measure(frames["hero/cheap"]) == PRO.price("1K", "flex")
    assert frames["hero/tall"].cost == Decimal("0.01")  # the manifest's standard price...
    assert budget.measure(frames["hero/tall"]) == PRO.price("1K")  # ...never below the list
    assert Budget(None, builtin(), trust=True).measure(frames["hero/tall"]) == Decimal("0.01")
    assert frames["catalogue"].cost == PRO.price("1K", "batch")  # untouched by `pricing:`


def test_plan_text_shows_a_lane_column_only_where_a_lane_is_not_standard(make_project, run):
    root = make_project(MANIFEST)
    text = run("-C", str(root), "plan").out
    header, first = text.splitlines()[:2]
    assert header.split() == ["FRAME", "ACTION", "REASON", "BACKEND", "MODEL", "LANE", "COST"]
    assert first.split()[0] == "catalogue" and "batch" in first.split()
    assert f"USD {PRO.price('1K', 'batch') + PRO.price('1K') + PRO.price('1K', 'flex')}" in text
    plain = run("-C", str(root), "plan", "--lane", "standard").out
    assert "LANE" not in plain.splitlines()[0]
