"""Every string a pull request or a server controls is shown as text in the report, under a
strict Content-Security-Policy (SECURITY.md, "What a manifest can do": the report)."""

from __future__ import annotations

import json

from tests.ui.test_report import browser, open_page  # noqa: F401 - the fixture skips without chromium (fails in CI)

SCRIPT = "<script>window.pwned='script'</script>"
IMG = "<img src=x onerror=window.pwned=1>"  # no '/': it may be a matrix value or variant name
MANIFEST = f"""version: 1
name: "{SCRIPT}"
defaults: {{backend: preview}}
bibles:
  "{IMG}b":
    text: "{SCRIPT} bible text"
    markers: ["{IMG}m"]
templates:
  t: {{shot: "{{{{ bible }}}} {{{{ v }}}}", angle: front}}
targets:
  grid:
    bible: "{IMG}b"
    prompt: "{SCRIPT} {{{{ axis }}}} {{{{ other }}}}"
    matrix: {{"{IMG}x": ["{IMG}1"], axis: ["{IMG}2", plain], other: [o]}}
  vary:
    template: t
    bible: "{IMG}b"
    vars: {{v: "{SCRIPT}"}}
    variants: {{"{IMG}v": {{patch: {{angle: "{SCRIPT}"}}}}}}
"""


def test_hostile_strings_in_every_field_are_text_under_a_strict_policy(make_project, browser):
    import subprocess
    import sys

    root = make_project(MANIFEST)
    nbpipe = [sys.executable, "-m", "nbpipe", "-C", str(root)]
    assert subprocess.run([*nbpipe, "build"], capture_output=True).returncode == 0
    state = json.loads((root / ".nbpipe" / "state.json").read_text())
    frames = json.loads((root / "nbpipe.lock").read_text())["frames"]
    failed = next(name for name in frames if name.startswith("grid/"))
    (root / "out" / f"{failed}.png").unlink()
    state["failed"] = {failed: f"server said: {SCRIPT}{IMG}"}  # a server message, kept
    (root / ".nbpipe" / "state.json").write_text(json.dumps(state))
    done = subprocess.run([*nbpipe, "report"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    html = (root / "out" / "index.html").read_text()
    assert SCRIPT not in html and "<img src=x" not in html and "<script>window" not in html
    assert html.count("&lt;script&gt;") >= 4 and html.count("&lt;img src=x") >= 5
    from html import unescape

    policy = unescape(html.split('http-equiv="Content-Security-Policy" content="')[1].split('"')[0])
    assert "default-src 'none'" in policy and "unsafe-inline" not in policy
    page = open_page(browser, root / "out" / "index.html")
    assert page.evaluate("window.pwned === undefined")
    assert page.evaluate("document.querySelectorAll('script').length") == 1
    assert page.evaluate("[...document.images].every(i => i.complete && i.naturalWidth > 0)")
    assert not page.locator(".filters").get_attribute("hidden")  # the page's own script ran
    shown = page.locator("body").inner_text()
    assert SCRIPT in shown and IMG + "b" in shown and "server said: " + SCRIPT in shown
    page.close()
