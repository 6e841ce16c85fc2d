"""Models have a lifecycle: a shutdown close ahead is a warning, a migration is explained and
priced, and `nbpipe models` shows every model with its status, dates, prices and limits."""

from __future__ import annotations

import json

import pytest

from nbpipe.catalog import builtin

PRO_PREVIEW = """\
version: 1
defaults: {backend: gemini, aspect_ratio: "1:1"}
targets:
  hero:
    prompt: a red running shoe
    model: gemini-3-pro-image-preview
    resolution: 2K
"""


def test_a_shutdown_within_30_days_warns_on_plan_and_build(make_project, run, monkeypatch):
    root = make_project(PRO_PREVIEW)
    monkeypatch.setenv("NBPIPE_TODAY", "2026-06-10")
    plan = run("plan", cwd=root)
    assert plan.code == 0
    assert plan.err == (
        "nbpipe.yaml:6:12: warning: model 'gemini-3-pro-image-preview' shuts down on 2026-06-25 "
        "(in 15 days)\n"
        "    6 |     model: gemini-3-pro-image-preview\n"
        "      |            ^\n"
        "hint: use 'gemini-3-pro-image' (its replacement)\n")
    assert "USD 0.134 to spend" in plan.out
    build = run("-C", str(root), "build", "--backend", "preview")
    assert build.code == 0 and "warning: model 'gemini-3-pro-image-preview'" in build.err
    again = run("-C", str(root), "build", "--backend", "preview")  # not the silent no-op path
    assert again.code == 0 and "warning: model 'gemini-3-pro-image-preview'" in again.err
    monkeypatch.setenv("NBPIPE_TODAY", "2026-05-20")  # 36 days ahead: quiet
    assert run("-C", str(root), "plan").err == ""
    monkeypatch.setenv("NBPIPE_TODAY", "2026-06-25")  # the day itself: an error
    late = run("-C", str(root), "plan")
    assert late.code == 2 and "was shut down on 2026-06-25" in late.err


def test_a_migrated_frame_is_explained_and_priced(fake_gemini, make_project, run, build,
                                                  monkeypatch):
    root = make_project(PRO_PREVIEW)
    monkeypatch.setenv("NBPIPE_TODAY", "2026-06-01")  # before the shutdown: it still renders
    assert build(root)["rendered"] == 1
    monkeypatch.delenv("NBPIPE_TODAY")
    assert run("-C", str(root), "plan").code == 2  # now shut down: the manifest must move
    (root / "nbpipe.yaml").write_text(PRO_PREVIEW.replace("image-preview", "image"))
    plan = json.loads(run("-C", str(root), "plan", "--json").out)
    (step,) = plan["frames"]
    assert (step["action"], step["reason"]) == \
        ("render", "model changed (gemini-3-pro-image-preview retired)")
    assert plan["summary"]["cost_usd"] == float(builtin().get("gemini", "gemini-3-pro-image")
                                                .price("2K")) == 0.134
    explained = run("-C", str(root), "explain", "hero").out.splitlines()
    assert explained[0] == "hero: render · model changed (gemini-3-pro-image-preview retired)"
    assert explained[1] == ("  model changed: gemini-3-pro-image-preview → gemini-3-pro-image "
                            "(gemini-3-pro-image-preview was shut down on 2026-06-25; "
                            "gemini-3-pro-image is its replacement)")
    again = build(root)
    assert (again["rendered"], again["spent_usd"]) == (1, 0.134)
    assert [b for b in fake_gemini.bodies if b] and fake_gemini.counts["generates"] == 2


def test_models_lists_status_dates_prices_and_limits(run, tmp_path):
    result = run("-C", str(tmp_path), "models")
    assert result.code == 0
    rows = {line.split()[1]: line for line in result.out.splitlines()[1:]
            if line.startswith(("hiapi", "gemini", "fal"))}
    assert set(rows) == {n for b in ("hiapi", "gemini", "fal") for n in builtin().models[b]}
    assert "ga since 2026-05-28" in rows["gemini-3-pro-image"]
    assert "1K 0.134 · 2K 0.134 · 4K 0.24" in rows["gemini-3-pro-image"]
    assert "≤14 images (inline)" in rows["gemini-3-pro-image"]
    assert "retired 2026-06-25 → gemini-3-pro-image " in rows["gemini-3-pro-image-preview"]
    assert "512 0.045 · 1K 0.067" in rows["gemini-3.1-flash-image"]
    assert "≤8? images (URLs)" in rows["Nano-Banana-2"]  # unconfirmed by HiAPI's docs
    assert "text only; prompt ≤5,000 chars" in rows["Nano-Banana"]
    assert all(" built-in " in row for row in rows.values())


def test_models_json_filters_by_backend_and_says_where_prices_come_from(run, make_project):
    root = make_project("version: 1\npricing: {gemini: {gemini-3-pro-image: {4K: 0.2}}}\n"
                        "targets: {}\n")
    doc = json.loads(run("-C", str(root), "models", "--backend", "gemini", "--json").out)
    by_name = {m["model"]: m for m in doc["models"]}
    assert {m["backend"] for m in doc["models"]} == {"gemini"}
    pro = by_name["gemini-3-pro-image"]
    assert pro["prices"] == {"1K": 0.134, "2K": 0.134, "4K": 0.2}
    assert pro["price_source"] == "nbpipe.yaml `pricing:`"
    assert (pro["status"], pro["released"], pro["shutdown"]) == ("ga", "2026-05-28", None)
    assert pro["inputs"]["max"] == 14 and "inputs" in pro["confirmed"]
    old = by_name["gemini-2.5-flash-image"]
    assert (old["lifecycle"], old["shutdown"], old["replacement"], old["prices"]) == \
        ("retired", "2026-10-02", "gemini-3.1-flash-image", 0.039)
    assert by_name["gemini-3.1-flash-image"]["price_source"] == "built-in"


def test_models_works_while_the_manifest_names_a_retired_model(run, make_project):
    root = make_project(PRO_PREVIEW)
    assert run("-C", str(root), "validate").code == 2
    assert run("-C", str(root), "models").code == 0


@pytest.mark.parametrize("args", [(), ("--json",), ("--backend", "preview")])
def test_prices_is_a_hidden_alias_of_models(run, tmp_path, args):
    assert run("-C", str(tmp_path), "prices", *args).out == \
        run("-C", str(tmp_path), "models", *args).out
    commands = [line.split()[0] for line in run("--help").out.split("Commands:")[1].splitlines()
                if line.startswith("  ")]
    assert "models" in commands and "prices" not in commands


def test_the_no_op_path_does_not_hide_a_shutdown_that_came_closer(make_project, run,
                                                                  monkeypatch):
    # Built long before the shutdown (no warning then, so the no-op fingerprint was written);
    # the calendar moves on while nothing in the project changes.
    root = make_project(PRO_PREVIEW.replace("backend: gemini", "backend: preview"))
    monkeypatch.setenv("NBPIPE_TODAY", "2026-04-01")
    assert run("-C", str(root), "build").code == 0
    assert run("-C", str(root), "build").out.startswith("nothing to do")  # the no-op path
    monkeypatch.setenv("NBPIPE_TODAY", "2026-06-10")
    near = run("-C", str(root), "build")
    assert near.code == 0 and "warning: model 'gemini-3-pro-image-preview' shuts down" in near.err
    monkeypatch.setenv("NBPIPE_TODAY", "2026-06-25")
    for args in (("build",), ("build", "--check"), ("build", "--json")):
        gone = run("-C", str(root), *args)
        assert gone.code == 2 and "was shut down on 2026-06-25" in gone.err, args


def test_a_catalogue_edit_ends_the_no_op_path(make_project, run, monkeypatch, tmp_path):
    # The next retirement is an edit of the catalogue alone (same nbpipe version): a project
    # that was fully fresh must hear of it at its next build.
    from nbpipe import catalog
    from nbpipe.engine import noop

    root = make_project(PRO_PREVIEW.replace("backend: gemini", "backend: preview")
                        .replace("image-preview", "image"))
    assert run("-C", str(root), "build").code == 0
    assert run("-C", str(root), "build").out.startswith("nothing to do")
    doc = json.loads(catalog.data_text())
    doc["backends"]["gemini"]["models"]["gemini-3-pro-image"]["shutdown"] = \
        (catalog.today() + __import__("datetime").timedelta(days=10)).isoformat()
    edited = tmp_path / "catalog.json"
    edited.write_text(json.dumps(doc), "utf-8")
    monkeypatch.setattr(noop, "CATALOGUE", edited, raising=False)
    monkeypatch.setattr(catalog, "data_text", edited.read_text)
    catalog.builtin.cache_clear()
    try:
        result = run("-C", str(root), "build")
    finally:
        catalog.builtin.cache_clear()
    assert result.code == 0 and "warning: model 'gemini-3-pro-image' shuts down" in result.err


def test_models_shows_each_models_lanes_and_their_prices(run, tmp_path):
    out = run("-C", str(tmp_path), "models").out
    rows = {line.split()[1]: line for line in out.splitlines() if line.startswith("gemini")}
    assert rows["gemini-3-pro-image"].endswith("standard · batch · flex?")  # flex unconfirmed
    assert all(line.rstrip().endswith("standard") for line in out.splitlines()
               if line.startswith("hiapi"))
    assert "  gemini-3-pro-image on batch: USD 1K 0.067 · 2K 0.067 · 4K 0.12 (24 h target" in out
    assert "gemini-3-pro-image on flex: USD 1K 0.067 · 2K 0.067 · 4K 0.12 (" in out
    assert "unconfirmed for this model)" in out.split("on flex:")[1].splitlines()[0]
    assert "preview-image on" not in out and "-preview on" not in out  # shut down: unsaid
    doc = json.loads(run("-C", str(tmp_path), "models", "--json").out)
    pro = next(m for m in doc["models"] if m["model"] == "gemini-3-pro-image")
    assert pro["lanes"]["batch"] == {"prices": {"1K": 0.067, "2K": 0.067, "4K": 0.12},
                                     "turnaround": "24 h target, most batches finish sooner",
                                     "confirmed": True}
    assert pro["lanes"]["flex"]["confirmed"] is False
    assert next(m for m in doc["models"] if m["model"] == "Nano-Banana")["lanes"] == {}
