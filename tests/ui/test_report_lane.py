"""Which lane a report shows, and where it goes: a profile's or a forced backend's report goes
beside its outputs and says so, never over the committed one (no browser needed)."""

from __future__ import annotations

import re

from tests.conftest import copy_example


def test_the_preview_lanes_report_is_its_own_and_labelled(tmp_path, run):
    root = copy_example("mira-storyboard", tmp_path / "mira")  # renders on hiapi
    assert run("-C", str(root), "report").code == 0
    committed = (root / "out" / "index.html").read_bytes()
    assert b"lock section" not in committed
    result = run("-C", str(root), "build", "--backend", "preview", "--report")
    assert result.code == 0, result.err
    lane = root / "out" / "@preview" / "index.html"
    assert f"wrote {lane}\n" in result.out
    assert (root / "out" / "index.html").read_bytes() == committed  # never replaced
    html = lane.read_text("utf-8")
    label = "backend preview (lock section @preview, not the committed images)"
    assert f"<title>mira-storyboard · {label} · nbpipe report</title>" in html
    assert re.search(rf"5 frames · {re.escape(label)} · pinned images worth USD 0\.00", html)
    assert run("-C", str(root), "report", "--profile", "draft").out == \
        f"wrote {root / 'out' / 'draft' / 'index.html'}\n"
    assert "5 frames · profile draft · " in (root / "out" / "draft" / "index.html").read_text()
    assert run("-C", str(root), "report", "--backend", "preview", "-o", "x.html").code == 0
    assert (root / "x.html").is_file()  # -o still says where
