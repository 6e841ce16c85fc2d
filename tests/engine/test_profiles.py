"""Quality profiles and price awareness."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from nbpipe.plan.planner import open_project
from tests.conftest import copy_example

MANIFEST = """\
version: 1
defaults: {backend: hiapi, model: Nano-Banana-2, resolution: 1K}
profiles:
  cheap: {model: Nano-Banana}
  boss: {model: Nano-Banana-Pro, resolution: 4K, wins: true}
  heroes: {targets: ["*-hero"], model: Nano-Banana-Pro, wins: true}
targets:
  shot: {prompt: a cabin}
  pinned: {prompt: a lake, model: Nano-Banana-2, resolution: 2K}
  shot-hero: {prompt: a cabin at dusk}
"""


def models(root, profile=None) -> dict[str, tuple]:
    frames = open_project(root, profile=profile).frames
    return {n: (f.model, f.params.get("resolution"), f.output) for n, f in frames.items()}


def test_profile_sits_between_defaults_and_targets_unless_it_wins(make_project):
    root = make_project(MANIFEST)
    assert models(root, "cheap") == {
        "shot": ("Nano-Banana", None, "out/cheap/shot.png"),   # resolution follows the model
        "pinned": ("Nano-Banana-2", "2K", "out/cheap/pinned.png"),  # the target's own choice
        "shot-hero": ("Nano-Banana", None, "out/cheap/shot-hero.png")}
    assert {n: m[:2] for n, m in models(root, "boss").items()} == {
        "shot": ("Nano-Banana-Pro", "4K"), "pinned": ("Nano-Banana-Pro", "4K"),
        "shot-hero": ("Nano-Banana-Pro", "4K")}


def test_profile_target_globs(make_project):
    found = models(make_project(MANIFEST), "heroes")
    assert found["shot-hero"][:2] == ("Nano-Banana-Pro", "1K")
    assert found["shot"][:2] == ("Nano-Banana-2", "1K")


def test_builtin_draft_picks_the_cheapest_model_that_takes_the_inputs(make_project):
    root = make_project("""\
version: 1
defaults: {backend: hiapi, model: Nano-Banana-Pro, resolution: 2K}
targets:
  base: {prompt: a cabin}
  edit: {prompt: golden hour, inputs: [base]}
""")
    assert models(root, "draft") == {
        "base": ("Nano-Banana", None, "out/draft/base.png"),
        "edit": ("Nano-Banana-2", "2K", "out/draft/edit.png")}


def test_unknown_profile_is_a_usage_error(make_project, run):
    root = make_project(MANIFEST)
    result = run("-C", str(root), "plan", "--profile", "chaep")
    assert (result.code, result.err) == (2, "error: unknown profile 'chaep'\n"
                                            "hint: did you mean 'cheap'?\n")
    bare = make_project("version: 1\ntargets: {a: {prompt: x}}\n")
    result = run("-C", str(bare), "plan", "--profile", "hero")
    assert result.err == ("error: unknown profile 'hero'\nhint: the manifest declares no "
                          "profiles: the built-in one is 'draft'\n")


def test_compare_table_is_exact(run, example):
    result = run("-C", str(example("mira-storyboard")), "plan", "--compare",
                 "draft,production,hero")
    assert result.out == """\
FRAME         draft  production  hero
cover          0.05       0.076  0.05
model-sheet    0.05       0.076  0.05
workshop       0.05       0.076  0.05
rooftop        0.05       0.076  0.05
rooftop-hero   0.00        0.00  0.17
TOTAL          0.20       0.304  0.37
"""


def test_cheaper_tier_hint(make_project, run):
    root = make_project("version: 1\ndefaults: {backend: hiapi, model: Nano-Banana-2}\n"
                        "targets:\n  a: {prompt: x}\n  b: {prompt: y}\n")
    lines = run("-C", str(root), "plan").out.splitlines()
    assert "hint: Nano-Banana-2 at 2K costs USD 0.076, less than at 1K (USD 0.085): " \
           "`resolution: 2K` would save USD 0.018 on 2 frames" in lines


def test_draft_default_draft_renders_nothing_the_second_time(fake_hiapi, run, tmp_path):
    root = tmp_path / "mira"
    copy_example("mira-storyboard", root)

    def build(*args):
        result = run("-C", str(root), "build", "--json", *args)
        assert result.code == 0, result.err
        return json.loads(result.out.splitlines()[-1])

    first = build("--profile", "draft")
    # rooftop-hero is the same request as rooftop in draft: sent once (issue 12.2)
    assert (first["rendered"], first["restored"], fake_hiapi.counts["creates"]) == (4, 1, 4)
    assert build()["rendered"] == 1  # four frames are the same request: restored, free
    creates = fake_hiapi.counts["creates"]
    again = build("--profile", "draft")
    assert (again["rendered"], fake_hiapi.counts["creates"]) == (0, creates)
    assert (root / "out" / "draft" / "workshop.png").is_file()
    assert (root / "out" / "workshop.png").is_file()
    lock = json.loads((root / "nbpipe.lock").read_text())
    assert set(lock["frames"]) == set(lock["profiles"]["draft"]) == {
        "cover", "model-sheet", "workshop", "rooftop", "rooftop-hero"}
    assert lock["profiles"]["draft"]["rooftop-hero"]["model"] == "Nano-Banana"
    assert lock["frames"]["rooftop-hero"]["model"] == "Nano-Banana-Pro"


PRICE_LIST = {"data": [
    {"model_name": "Nano-Banana", "base_usd_value": 0.04, "policies": []},
    {"model_name": "Nano-Banana-2", "base_usd_value": 0.08,
     "policies": [{"rule": {"resolution": {"match": "2K"}}, "usd_value": 0.07},
                  {"rule": {"resolution": {"match": "4K"}}, "usd_value": 0.11}]},
    {"model_name": "some-video-model", "base_usd_value": 1.5, "policies": []}]}


@pytest.fixture
def pricing_server(request):
    body = getattr(request, "param", json.dumps(PRICE_LIST)).encode()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            assert self.path == "/api/pricing" and "Authorization" not in self.headers
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_prices_refresh_from_the_public_catalogue(pricing_server, make_project, run, monkeypatch):
    import datetime as dt

    monkeypatch.setenv("NBPIPE_PRICING_URL", pricing_server)
    root = make_project("version: 1\ndefaults: {backend: hiapi}\ntargets:\n  a: {prompt: x}\n"
                        "  b: {prompt: y, model: Nano-Banana-2, resolution: 4K}\n")
    result = run("-C", str(root), "prices", "--refresh")
    today = dt.date.today().isoformat()
    assert result.out.startswith(f"refreshed 2 HiAPI model price(s) from {pricing_server} ({today})")
    row = next(line for line in result.out.splitlines() if " Nano-Banana-2 " in line)
    cells = [cell.strip() for cell in row.split("  ") if cell.strip()]
    assert cells[3:5] == ["1K 0.08 · 2K 0.07 · 4K 0.11", f"HiAPI catalogue fetched {today}"]
    plan = run("-C", str(root), "plan")
    assert plan.out.splitlines()[-2:] == [  # a refreshed price below the built-in one
        f"prices: HiAPI catalogue fetched {today}",
        "budget: --max-cost counts USD 0.164 for these renders, at list prices above the ones "
        "shown (--trust-manifest-prices counts the ones shown)"]
    assert json.loads(run("-C", str(root), "plan", "--json").out)["summary"]["cost_usd"] == 0.15
    (root / "nbpipe.yaml").write_text((root / "nbpipe.yaml").read_text()
                                      + "pricing: {hiapi: {Nano-Banana: 0.03}}\n")
    plan = run("-C", str(root), "plan")
    assert plan.out.splitlines()[-2:] == [
        f"prices: HiAPI catalogue fetched {today}; 1 model price(s) overridden by the manifest",
        "budget: --max-cost counts USD 0.164 for these renders, at list prices above the ones "
        "shown (--trust-manifest-prices counts the ones shown)"]


def test_refresh_failure_keeps_the_table(make_project, run, monkeypatch):
    monkeypatch.setenv("NBPIPE_PRICING_URL", "http://127.0.0.1:9")
    result = run("-C", str(make_project("version: 1\ntargets: {}\n")), "prices", "--refresh")
    assert result.code == 2 and "the table in use stays as it was" in result.err


@pytest.mark.parametrize("pricing_server", [
    "[]", '"prices"', '{"data": {"Nano-Banana": 1}}',
    '{"data": [{"model_name": "Nano-Banana", "base_usd_value": "NaN"}]}',
    '{"data": [{"model_name": "Nano-Banana", "base_usd_value": -0.05}]}',
    '{"data": [{"model_name": "Nano-Banana", "base_usd_value": 1e999}]}',
    ('{"data": [{"model_name": "Nano-Banana-2", "base_usd_value": 0.08, "policies": '
     '[{"rule": {"resolution": {"match": "2K"}}, "usd_value": "free"}]}]}'),
], indirect=True)
def test_a_price_list_of_the_wrong_shape_changes_nothing(pricing_server, make_project, run,
                                                        monkeypatch):
    monkeypatch.setenv("NBPIPE_PRICING_URL", pricing_server)
    root = make_project("version: 1\ntargets: {}\n")
    result = run("-C", str(root), "models", "--refresh")
    assert result.code == 2 and "the table in use stays as it was" in result.err, result.err
    assert not (root / ".nbpipe" / "prices.json").exists()
