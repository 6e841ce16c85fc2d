"""The HTML report, checked in a real headless browser (Debian's chromium via Playwright)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import copy_example, on_preview

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
NO_BROWSER = "chromium is not installed (scripts/test installs it)"

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
EXAMPLES = ["mira-storyboard", "aria-lookbook", "sneaker-colorways", "golden-hour-edit"]


@pytest.fixture
def run():
    """nbpipe as a subprocess: Playwright's sync API keeps an event loop in this thread."""
    import subprocess
    import sys
    from types import SimpleNamespace

    def _run(*args: str):
        done = subprocess.run([sys.executable, "-m", "nbpipe", *args], capture_output=True,
                              text=True)
        return SimpleNamespace(code=done.returncode, out=done.stdout, err=done.stderr)
    return _run


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM:
        # Each browser test skips on its own (its reason in the summary); CI must not skip.
        assert not os.environ.get("CI"), "chromium must be installed in CI"
        pytest.skip(NO_BROWSER)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield instance
        instance.close()


def built(name: str, tmp_path: Path, run) -> Path:
    root = tmp_path / name
    # its default section: `--backend preview` below changes nothing
    on_preview(copy_example(name, root))
    result = run("-C", str(root), "build", "--backend", "preview", "--report")
    assert result.code == 0, result.err
    return root


def open_page(browser, page_path: Path):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(page_path.as_uri())
    page.wait_for_load_state("load")
    return page


@pytest.mark.parametrize("name", EXAMPLES)
def test_report_images_all_load_and_a_screenshot_is_taken(name, browser, tmp_path, run):
    root = built(name, tmp_path, run)
    page = open_page(browser, root / "out" / "index.html")
    images = page.evaluate("document.images.length")
    broken = page.evaluate(
        "[...document.images].filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src)")
    assert images > 0 and broken == []
    sections = page.evaluate("[...document.querySelectorAll('section')].map(s => s.id)")
    assert sections == list(_targets(root))
    page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)
    assert (tmp_path / f"{name}.png").stat().st_size > 10_000
    page.close()


def _targets(root: Path) -> list[str]:
    from nbpipe.plan.planner import open_project

    return open_project(root, "preview").targets()


def test_matrix_grid_has_its_axes_as_headers(browser, tmp_path, run):
    root = built("sneaker-colorways", tmp_path, run)
    page = open_page(browser, root / "out" / "index.html")
    grid = page.locator("#shoe table.grid")
    assert grid.locator("thead th").all_inner_texts() == ["", "red", "blue", "green", "yellow"]
    assert grid.locator("tbody tr").count() == 1
    assert grid.locator("tbody th").all_inner_texts() == ["color"]
    assert grid.locator("tbody td .card").count() == 4
    assert page.locator("#shoe-finish .card").count() == 2  # variants side by side


def test_two_axis_grid_rows_and_columns(browser, make_project, run):
    root = make_project("""\
version: 1
defaults: {backend: preview}
targets:
  tile:
    prompt: "a {{ glaze }} tile, {{ size }}"
    matrix: {glaze: [matte, gloss], size: [small, large, huge]}
""")
    assert run("-C", str(root), "build", "--report").code == 0
    page = open_page(browser, root / "out" / "index.html")
    grid = page.locator("#tile table.grid")
    assert grid.locator("thead th").all_inner_texts() == ["glaze \\ size", "small", "large", "huge"]
    assert grid.locator("tbody th").all_inner_texts() == ["matte", "gloss"]
    assert grid.locator("tbody td .card").count() == 6


def test_edit_chain_strip_bible_markers_takes_and_states(browser, tmp_path, run):
    root = built("golden-hour-edit", tmp_path, run)
    page = open_page(browser, root / "out" / "index.html")
    assert page.locator("#evening-mist .strip .card .name").all_inner_texts() == [
        "base", "golden-hour", "evening-mist"]
    mira = built("mira-storyboard", tmp_path, run)
    (mira / "out" / "cover.png").unlink()
    (mira / "nbpipe.yaml").write_text((mira / "nbpipe.yaml").read_text()
                                      .replace("kneeling to bolt", "kneeling to weld"))
    assert run("-C", str(mira), "report", "--backend", "preview").code == 0
    page = open_page(browser, mira / "out" / "index.html")
    assert page.locator("#workshop .bible input[type=checkbox]").count() == 3
    assert page.locator("#cover .state").inner_text() == "missing"
    assert page.locator("#rooftop .state").inner_text() == "stale"
    assert page.locator("#rooftop .meta").nth(1).inner_text() == "var 'scene' changed"
    assert page.locator("#workshop .state").inner_text() == "fresh"
    page.locator("button[data-filter='state:missing']").click()  # the little JS filter
    visible = page.evaluate("[...document.querySelectorAll('.card')]"
                            ".filter(c => c.style.display !== 'none').length")
    assert visible == 1


def test_thumbnails_are_cached_by_digest(tmp_path, run):
    root = built("aria-lookbook", tmp_path, run)
    thumbs = sorted((root / "out" / "report-thumbs").iterdir())
    stamps = [t.stat().st_mtime_ns for t in thumbs]
    assert run("-C", str(root), "report", "--backend", "preview").code == 0
    assert [t.stat().st_mtime_ns for t in sorted((root / "out" / "report-thumbs").iterdir())] \
        == stamps

