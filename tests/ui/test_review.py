"""`nbpipe review` in headless Chromium: the right before/after pairs, images that load, the
compare modes and keyboard, a Content-Security-Policy that holds, hostile text kept as text."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from tests.engine.test_prloop import MANIFEST, identity  # noqa: F401 - a fixture
from tests.ui.test_report import browser, open_page, run  # noqa: F401 - fixtures

HOSTILE = '</pre><script>window.pwned = 1</script><img src=x onerror="window.pwned = 2">'
PAIRS_JS = """[...document.querySelectorAll('section.frame')].map(s => [s.dataset.frame,
  s.dataset.before, s.dataset.after,
  [...s.querySelectorAll('img')].map(i => [i.closest('figure').className, i.naturalWidth > 0]),
  s.querySelector('figure.after .noimage')?.textContent.trim() ?? null])"""


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True,
                          text=True).stdout


@pytest.fixture
def project(tmp_path, run, identity):
    """main built on the preview backend and committed (outputs too); then a bible, a matrix
    value and a var change, the last two rendered, the bible's frames still to render."""
    root = tmp_path / "project"
    root.mkdir()
    (root / "nbpipe.yaml").write_text(MANIFEST.replace("backend: hiapi", "backend: preview"))
    (root / ".gitignore").write_text(".nbpipe/\nout/review/\n")
    git(root, "init", "-q", "-b", "main")
    assert run("-C", str(root), "build").code == 0
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "main")
    text = (root / "nbpipe.yaml").read_text().replace("blue,", "teal,") \
        .replace("a rainy street", "a rainy street at night")
    (root / "nbpipe.yaml").write_text(text)
    assert run("-C", str(root), "build").code == 0
    (root / "nbpipe.yaml").write_text(text.replace("rust-orange beanie", "green beanie"))
    return root


def locks(root: Path) -> tuple[dict, dict]:
    base = json.loads(git(root, "show", "HEAD:nbpipe.lock"))["frames"]
    return base, json.loads((root / "nbpipe.lock").read_text())["frames"]


def pairs(root: Path) -> list:
    base, now = locks(root)
    fig = {"workshop": [["before", True]], "rooftop": [["before", True]],
           "street": [["before", True], ["after", True]],
           "shoe/teal": [["before", True], ["after", True]],
           "shoe/blue": [["before", True]]}
    todo = "still to render · USD 0.00"
    return [["workshop", base["workshop"]["digest"], "", fig["workshop"], todo],
            ["rooftop", base["rooftop"]["digest"], "", fig["rooftop"], todo],
            ["street", base["street"]["digest"], now["street"]["digest"], fig["street"], None],
            ["shoe/teal", base["shoe/blue"]["digest"], now["shoe/teal"]["digest"],
             fig["shoe/teal"], None],
            ["shoe/blue", base["shoe/blue"]["digest"], "", fig["shoe/blue"], "removed"]]


@pytest.mark.parametrize("self_contained", [False, True])
def test_every_pair_is_the_right_pair_and_loads(project, run, browser, self_contained):
    args = ["--self-contained"] if self_contained else []
    result = run("-C", str(project), "review", "HEAD", *args)
    assert result.code == 0, result.err
    assert result.out.endswith("out/review/index.html (5 changed frames)\n")
    page_path = project / "out" / "review" / "index.html"
    errors: list[str] = []
    page = browser.new_page()
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(page_path.as_uri())
    page.wait_for_load_state("load")
    assert page.evaluate(PAIRS_JS) == pairs(project)
    sources = page.evaluate("[...document.images].map(i => i.getAttribute('src'))")
    page.close()
    assert errors == []  # no image, style or script refused by the policy
    if self_contained:
        assert all(s.startswith("data:image/jpeg;base64,") for s in sources)
        assert sorted(p.name for p in page_path.parent.iterdir()) == ["index.html"]
    else:
        assert all(s.startswith("thumbs/") for s in sources)


def test_before_comes_from_git_when_no_cache_has_it_and_only_if_it_is_the_pinned_image(
        project, run, browser):
    import shutil

    shutil.rmtree(project / ".nbpipe")
    assert run("-C", str(project), "review", "HEAD").code == 0
    page = open_page(browser, project / "out" / "review" / "index.html")
    got = page.evaluate(PAIRS_JS)
    page.close()
    assert [row[:4] for row in got][:2] == [row[:4] for row in pairs(project)][:2]
    # a committed output that is not the pinned image is never shown as BASE's image
    base, _ = locks(project)
    (project / "out" / "workshop.png").write_bytes((project / "out" / "rooftop.png").read_bytes())
    git(project, "commit", "-q", "-am", "swap an image")
    shutil.rmtree(project / "out" / "review")
    assert run("-C", str(project), "review", "HEAD").code == 0
    page = open_page(browser, project / "out" / "review" / "index.html")
    workshop = page.evaluate("[...document.querySelectorAll('#frame-workshop figure.before')]"
                             ".map(f => f.textContent.trim())")
    page.close()
    assert workshop[0].startswith("not in the caches nor committed at BASE")


def test_compare_modes_and_keyboard(project, run, browser):
    assert run("-C", str(project), "review", "HEAD").code == 0
    page = open_page(browser, project / "out" / "review" / "index.html")
    current = "document.querySelector('section.current')?.dataset.frame ?? null"
    assert page.evaluate(current) is None
    page.keyboard.press("j")
    page.keyboard.press("j")
    page.keyboard.press("j")
    assert page.evaluate(current) == "street"
    page.keyboard.press("k")
    assert page.evaluate(current) == "rooftop"
    page.keyboard.press("j")
    after = "#frame-street figure.after"
    page.keyboard.press("w")
    assert page.evaluate(f"getComputedStyle(document.querySelector('{after}')).clipPath") == \
        "inset(0px 0px 0px 50%)"
    page.fill("#frame-street .slider", "80")
    assert page.evaluate(f"getComputedStyle(document.querySelector('{after}')).clipPath") == \
        "inset(0px 0px 0px 80%)"
    page.keyboard.press("o")
    assert page.evaluate(f"getComputedStyle(document.querySelector('{after}')).opacity") == "0.8"
    page.keyboard.press("s")
    assert page.evaluate("document.querySelector('#frame-street .control').hidden")
    page.close()


def test_hostile_text_stays_text_and_the_policy_blocks_what_was_not_hashed(
        project, run, browser, tmp_path):
    manifest = (project / "nbpipe.yaml").read_text()
    (project / "nbpipe.yaml").write_text(manifest.replace("a city rooftop",
                                                          json.dumps(HOSTILE)))
    assert run("-C", str(project), "review", "HEAD", "--self-contained").code == 0
    page_path = project / "out" / "review" / "index.html"
    page = open_page(browser, page_path)
    assert page.evaluate("window.pwned") is None
    assert HOSTILE in page.evaluate("document.querySelector('#frame-rooftop pre').textContent")
    assert page.evaluate("document.scripts.length") == 1
    page.close()
    # the same page with one byte of its script changed: the policy refuses to run it
    html = page_path.read_text()
    tampered = tmp_path / "tampered.html"
    tampered.write_text(html.replace('bar.hidden = false;', 'bar.hidden = !true;'))
    page = open_page(browser, tampered)
    assert page.evaluate("document.querySelector('.modes').hidden") is True
    page.close()


def test_the_policy_names_the_hash_of_the_inline_code(project, run):
    import base64
    import re

    assert run("-C", str(project), "review", "HEAD").code == 0
    html = (project / "out" / "review" / "index.html").read_text()
    policy = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html).group(1)
    assert "default-src &#39;none&#39;" in policy and "unsafe-inline" not in policy
    for tag in ("style", "script"):
        body = re.search(rf"<{tag}>(.*?)</{tag}>", html, re.S).group(1)
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        assert f"sha256-{digest}" in policy


@pytest.mark.parametrize("self_contained", [False, True])
def test_thumbnails_a_pull_request_committed_are_not_shown(project, run, self_contained):
    """Thumbnails are kept by digest and were reused unchecked: a pull request that committed
    `.nbpipe/thumbs/<digest>.jpg` (or into the page's thumbs/) made the page show its picture as
    the image it changed."""
    import base64
    import io

    from PIL import Image

    args = ["--self-contained"] if self_contained else []
    assert run("-C", str(project), "review", "HEAD", *args).code == 0
    kept = project / (".nbpipe/thumbs" if self_contained else "out/review/thumbs")
    spoof = io.BytesIO()
    Image.new("RGB", (8, 8), (0, 255, 0)).save(spoof, "JPEG")
    for thumb in kept.glob("*.jpg"):
        thumb.write_bytes(spoof.getvalue())
    git(project, "add", "-f", str(kept))
    git(project, "commit", "-q", "-m", "spoofed thumbnails")
    result = run("-C", str(project), "review", "HEAD", *args)
    if self_contained:  # anything committed into .nbpipe/ is refused outright
        assert result.code == 2
        assert result.err.startswith(f"error: git tracks files in {project}/.nbpipe/ (")
        return
    assert result.code == 0
    page = (project / "out" / "review" / "index.html").read_text()
    assert base64.b64encode(spoof.getvalue()).decode() not in page
    assert not any(t.read_bytes() == spoof.getvalue() for t in kept.glob("*.jpg"))


REMOVED = 2000


def removed_frames_at_base(root: Path, run, repo: Path | None = None) -> list[bytes]:
    """BASE pins `hero` and REMOVED frames the manifest no longer declares; three of them have
    their image committed, a fourth a file that is not its pinned image. The working tree pins
    `hero` only, and no cache holds the removed frames' images. The repository is `repo`
    (default: the project)."""
    import io

    from PIL import Image

    root.mkdir(parents=True)
    (root / "nbpipe.yaml").write_text(
        "version: 1\ndefaults: {backend: preview}\n"
        "targets:\n  hero: {prompt: a red kite, output: out/hero.png}\n")
    (root / ".gitignore").write_text(".nbpipe/\nout/review/\n")
    git(repo or root, "init", "-q", "-b", "main")
    assert run("-C", str(root), "build").code == 0
    now = json.loads((root / "nbpipe.lock").read_text())
    images = []
    for i, colour in enumerate([(200, 30, 30), (30, 200, 30), (30, 30, 200), (9, 9, 9)]):
        data = io.BytesIO()
        Image.new("RGB", (16, 16), colour).save(data, "PNG")
        images.append(data.getvalue())
        (root / "out" / f"old-{i}.png").write_bytes(images[-1])
    base = dict(now["frames"])
    for i in range(REMOVED):
        digest = hashlib.sha256(images[i] if i < 3 else b"other %d" % i).hexdigest()
        base[f"old-{i}"] = {**now["frames"]["hero"], "output": f"out/old-{i}.png",
                            "key": hashlib.sha256(b"key %d" % i).hexdigest(), "digest": digest}
    (root / "nbpipe.lock").write_text(json.dumps({**now, "frames": base}))
    git(root, "add", ".")
    git(root, "-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-qm", "base")
    (root / "nbpipe.lock").write_text(json.dumps(now))
    return images


@pytest.mark.parametrize("nested", [False, True])
def test_git_runs_a_bounded_number_of_times_whatever_the_size_of_base(tmp_path, run,
                                                                      monkeypatch, nested):
    """BASE's committed image was read with two git processes per frame (`rev-parse`, `show`):
    a BASE lock of thousands of removed frames ran thousands of them. Now two in all read
    BASE's files; the page is the same."""
    import os
    import re
    import shutil
    import stat

    root = tmp_path / "project" / ("art" if nested else "")
    removed_frames_at_base(root, run, tmp_path / "project")
    calls = tmp_path / "git-calls"
    wrapper = tmp_path / "bin" / "git"
    wrapper.parent.mkdir()
    wrapper.write_text(f'#!/bin/sh\necho "$*" >> {calls}\nexec {shutil.which("git")} "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{wrapper.parent}{os.pathsep}{os.environ['PATH']}")
    result = run("-C", str(root), "review", "HEAD")
    assert result.code == 0, result.err
    assert result.out.endswith(f"out/review/index.html ({REMOVED} changed frames)\n")
    ran = calls.read_text().splitlines()
    assert len(ran) <= 20, ran[:30]  # a constant (12 today); it was 4,000 and more
    html = (root / "out" / "review" / "index.html").read_text()
    shown = set(re.findall(r'alt="(old-\d+) before"', html))
    assert shown == {"old-0", "old-1", "old-2"}  # old-3's committed file is not its image
    assert html.count('<section class="frame"') == REMOVED
