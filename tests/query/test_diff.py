"""`nbpipe diff`: golden text, Markdown and JSON, and BASE's lock as untrusted input."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.engine.test_prloop import MANIFEST, identity  # noqa: F401 - a fixture

GOLDEN = Path(__file__).parent / "golden"


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True,
                          text=True).stdout


def normalised(text: str) -> str:
    """Digests and keys depend on the fake's random task ids: number them in order."""
    seen: dict[str, str] = {}
    text = re.sub(r"\b[0-9a-f]{64}\b",
                  lambda m: seen.setdefault(m.group(), f"<sha256 {len(seen) + 1}>"), text)
    text = re.sub(r"\b[0-9a-f]{40}\b", "<commit>", text)
    return re.sub(r"\(([0-9a-f]{12})\)", "(<commit>)", text)


@pytest.fixture
def changed(make_project, fake_hiapi, run, identity) -> Path:
    """main built and committed; then a bible, a matrix value and a model change, and one of
    the changed frames already rendered."""
    root = make_project(MANIFEST, {".gitignore": b".nbpipe/\n"})
    git(root, "init", "-q", "-b", "main")
    assert run("-C", str(root), "build").code == 0
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "main")
    text = MANIFEST.replace("rust-orange beanie", "green beanie").replace("blue,", "teal,")
    text = text.replace("{scene: a rainy street}}",
                        "{scene: a rainy street}, model: Nano-Banana-2}")
    (root / "nbpipe.yaml").write_text(text)
    assert run("-C", str(root), "build", "workshop").code == 0
    assert fake_hiapi.counts["creates"] == 7
    return root


@pytest.mark.parametrize("fmt,name", [("text", "diff.txt"), ("markdown", "diff.md"),
                                      ("json", "diff.json")])
def test_golden(changed, run, fmt, name):
    result = run("-C", str(changed), "diff", "main", "--format", fmt,
                 "--review-url", "https://example.com/review/")
    assert result.code == 0, result.err
    assert normalised(result.out) == (GOLDEN / name).read_text()


def test_the_json_document_says_what_the_text_says(changed, run):
    doc = json.loads(run("-C", str(changed), "diff", "main", "--format", "json").out)
    lock = json.loads((changed / "nbpipe.lock").read_text())["frames"]
    base = json.loads(git(changed, "show", "main:nbpipe.lock"))["frames"]
    frames = {f["frame"]: f for f in doc["frames"]}
    assert frames["workshop"]["after"]["digest"] == lock["workshop"]["digest"]
    assert frames["workshop"]["before"]["digest"] == base["workshop"]["digest"]
    assert frames["rooftop"]["after"]["digest"] is None  # still to render
    assert doc["summary"]["cost_usd"] == sum(f["cost_usd"] for f in doc["frames"])


def test_default_base_is_head_and_a_clean_tree_differs_in_nothing(changed, run):
    git(changed, "checkout", "-q", "--", "nbpipe.yaml", "nbpipe.lock")
    result = run("-C", str(changed), "diff")
    assert result.code == 0, result.err
    assert re.fullmatch(r"diff against HEAD \([0-9a-f]{12}\): no frame differs\n", result.out)


def test_default_base_is_the_merge_base_with_the_upstream(changed, run):
    git(changed, "checkout", "-q", "-b", "feature", "--track", "main")
    git(changed, "add", ".")
    git(changed, "commit", "-q", "-m", "change")
    doc = json.loads(run("-C", str(changed), "diff", "--format", "json").out)
    assert doc["base"]["commit"] == git(changed, "rev-parse", "main").strip()
    assert doc["summary"]["changed"] == 3


@pytest.mark.parametrize("entry,problem", [
    ({"digest": "../../../etc/passwd"}, "has a digest that is not a SHA-256"),
    ({"key": "x" * 64}, "has a key that is not a SHA-256"),
    ({"output": "../../outside.png"}, "has an output path outside the project"),
    ({"output": "/etc/passwd"}, "has an output path outside the project"),
    ({"cost_usd": -1}, "has an impossible cost"),
])
def test_a_hostile_lock_at_base_is_refused_before_use(changed, run, entry, problem):
    doc = json.loads((changed / "nbpipe.lock").read_text())
    doc["frames"]["workshop"].update(entry)
    (changed / "nbpipe.lock").write_text(json.dumps(doc))
    git(changed, "commit", "-q", "-am", "hostile")
    for command in ("diff", "review"):
        result = run("-C", str(changed), command, "HEAD")
        assert result.code == 2, result.err
        assert f"nbpipe.lock at {git(changed, 'rev-parse', 'HEAD')[:12]}: frame 'workshop' " \
               f"{problem}" in result.err
        assert "Traceback" not in result.err


@pytest.mark.parametrize("text", ["{", "[]", '{"version": 1, "frames": []}',
                                  '{"version": 1, "frames": {"a": {"key": 1}}}'])
def test_a_malformed_lock_at_base_is_a_usage_error(changed, run, text):
    (changed / "nbpipe.lock").write_text(text)
    git(changed, "commit", "-q", "-am", "broken")
    result = run("-C", str(changed), "diff", "HEAD")
    assert result.code == 2 and "is not a valid lock file" in result.err, result.err


def test_a_lock_nested_too_deeply_is_a_usage_error_at_base_and_here(changed, run):
    """json.loads raised RecursionError (exit 3) for diff, review, build and gc --remote."""
    (changed / "nbpipe.lock").write_text("[" * 100_000 + "]" * 100_000)
    git(changed, "commit", "-q", "-am", "deep")
    for args in (("diff", "HEAD"), ("review", "HEAD"), ("gc", "--remote", "--dry-run")):
        result = run("-C", str(changed), *args)
        assert "RecursionError" not in result.err and result.code != 3, (args, result.err)
    result = run("-C", str(changed), "diff", "HEAD")
    assert result.code == 2 and "nested too deeply" in result.err, result.err
    result = run("-C", str(changed), "build", "--check")
    assert result.code == 2 and "nested too deeply" in result.err, result.err


def test_an_unpaired_surrogate_at_base_is_a_usage_error_not_a_crash(changed, run):
    """A removed frame named "\\ud800" crashed diff's Markdown and JSON and review (exit 3):
    no UTF-8 writer can print it."""
    doc = json.loads((changed / "nbpipe.lock").read_text())
    doc["frames"]["gone\ud800"] = doc["frames"]["workshop"]
    (changed / "nbpipe.lock").write_text(json.dumps(doc))
    git(changed, "commit", "-q", "-am", "surrogate")
    for args in (("diff", "--format", "markdown"), ("diff", "--format", "json"), ("review",)):
        result = run("-C", str(changed), *args, "HEAD")
        assert result.code == 2 and "unpaired surrogate" in result.err, (args, result.err)


def test_unknown_ref_and_no_repository_are_usage_errors(changed, run, make_project, tmp_path):
    result = run("-C", str(changed), "diff", "no-such-branch")
    assert result.code == 2 and "unknown git ref 'no-such-branch'" in result.err
    result = run("-C", str(changed), "diff", "--", "--output=/tmp/x")
    assert result.code == 2 and "is not a git ref" in result.err
    alone = tmp_path / "alone"
    alone.mkdir()
    (alone / "nbpipe.yaml").write_text(MANIFEST)
    result = run("-C", str(alone), "diff", "HEAD")
    assert result.code == 2 and "is not in a git repository" in result.err, result.err


def test_without_git_the_error_says_so(changed, run, monkeypatch, tmp_path):
    """It said the project "is not in a git repository"."""
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    result = run("-C", str(changed), "diff", "main")
    assert result.code == 2 and "git is not installed" in result.err, result.err


def test_markdown_keeps_hostile_text_as_text():
    from nbpipe.ui.diff_format import _md, anchor

    assert _md("<img src=x onerror=alert(1)>|[a](javascript:x)") == \
        r"&lt;img src=x onerror=alert(1)&gt;\|\[a\](javascript:x)"
    assert anchor("shoe/teal") != anchor("shoe.2f.teal")
    assert re.fullmatch(r"[A-Za-z0-9_.-]+", anchor("<script>/ü"))


def test_review_url_must_be_http(changed, run):
    result = run("-C", str(changed), "diff", "main", "--format", "markdown",
                 "--review-url", "javascript:alert(1)")
    assert result.code == 2 and "--review-url must be an http(s) URL" in result.err


def test_only_real_digests_name_files(tmp_path):
    from nbpipe.files import is_sha256
    from nbpipe.ui.page import Thumbs

    assert is_sha256("a" * 64) and not is_sha256("a" * 64 + "\n") and not is_sha256("A" * 64)
    thumbs = Thumbs(tmp_path / "thumbs", tmp_path)
    hostile = "../../" + "a" * 58
    assert thumbs.of(hostile, lambda: (_ for _ in ()).throw(AssertionError("read"))) is None
    assert list(tmp_path.rglob("*.jpg")) == []


def test_a_malformed_recorded_request_is_a_miss_not_a_crash():
    from nbpipe.query.diff import _usable

    assert _usable(["not", "a", "dict"]) is None
    assert _usable({"vars": ["x"], "prompt": "p"}) is None
    assert _usable({"params": "1K"}) is None
    assert _usable({"prompt": "x\ud800"}) is None  # a remote record no page could print
    good = {"prompt": "p", "vars": {"a": 1}, "params": {}, "inputs": [], "sources": {}}
    assert _usable(good) is good


def test_text_output_has_no_control_characters():
    from nbpipe.ui.diff_format import _printable

    assert _printable("shoe/\x1b[31mred\x07\nnext") == "shoe/?[31mred?\nnext"


def test_markdown_of_a_huge_diff_fits_a_github_job_summary():
    from nbpipe.query.diff import Diff, FrameDiff
    from nbpipe.store.lock import LockEntry
    from nbpipe.ui.diff_format import diff_markdown

    entry = LockEntry("a" * 64, "out/x.png", "b" * 64, "hiapi", "Nano-Banana", 0.05)
    frames = [FrameDiff(f"tile/{'v' * 60}{i}", "removed", "removed", "no longer declared",
                        before=entry) for i in range(30_000)]
    text = diff_markdown(Diff("main", "c" * 40, frames), "https://example.com/review/")
    assert len(text.encode()) < 1 << 20 and "data:" not in text
    last = text.splitlines()[-1]
    shown = text.count("| removed | removed |")
    assert last == f"| … {30_000 - shown} more | | | | | |" and shown > 1000


def test_gc_remote_pins_skip_a_ref_whose_lock_is_not_a_lock(changed):
    from nbpipe.ops.maintain import pins_in_git

    locked = json.loads(git(changed, "show", "main:nbpipe.lock"))["frames"]
    pinned = {e["digest"] for e in locked.values()}
    git(changed, "checkout", "-q", "-b", "odd")
    for text in ("[]", '{"frames": [1], "profiles": []}', "not json"):
        (changed / "nbpipe.lock").write_text(text)
        git(changed, "commit", "-q", "-am", f"lock {text}")
        found, refs = pins_in_git(changed, ())
        assert found == pinned and refs == ["refs/heads/main", "refs/heads/odd"]


@pytest.mark.parametrize("name,detail,count", [("靴" * 60, "prompt changed", 30_000),
                                               ("shoe", "prompt: " + "靴" * 300, 2_000)])
def test_the_markdown_budget_counts_bytes_not_characters(name, detail, count):
    """Non-ASCII names or prompts made a summary the budget passed up to three times 1 MiB."""
    from nbpipe.query.diff import Diff, FrameDiff
    from nbpipe.store.lock import LockEntry
    from nbpipe.ui.diff_format import diff_markdown

    entry = LockEntry("a" * 64, "out/x.png", "b" * 64, "hiapi", "Nano-Banana", 0.05)
    frames = [FrameDiff(f"tile/{name}{i}", "changed", "render", "prompt changed",
                        ("prompt changed",), (detail,), before=entry) for i in range(count)]
    text = diff_markdown(Diff("main", "c" * 40, frames))
    assert len(text.encode()) < 1 << 20


@pytest.fixture
def previewed(make_project, run, identity) -> Path:
    """main built and committed on the preview lane only (the free, offline trial of the PR
    loop); then one frame's scene changed."""
    root = make_project(MANIFEST, {".gitignore": b".nbpipe/\n"})
    git(root, "init", "-q", "-b", "main")
    assert run("-C", str(root), "build", "--backend", "preview").code == 0
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "main")
    text = MANIFEST.replace("a city rooftop", "a city rooftop at dusk")
    (root / "nbpipe.yaml").write_text(text)
    return root


@pytest.mark.parametrize("lane", [("--backend", "preview"), ("env",)])
def test_the_preview_lane_compares_with_bases_preview_section(previewed, run, monkeypatch, lane):
    """Every frame was "added": the default section of BASE's lock is empty on this lane."""
    args = list(lane)
    if lane == ("env",):
        monkeypatch.setenv("NBPIPE_BACKEND", "preview")
        args = []
    doc = json.loads(run("-C", str(previewed), "diff", "main", "--format", "json", *args).out)
    assert [(f["frame"], f["status"]) for f in doc["frames"]] == [("rooftop", "changed")]
    text = run("-C", str(previewed), "diff", "main", *args).out
    assert "rooftop" in text and "workshop" not in text


def test_review_on_the_preview_lane_shows_only_the_changed_frame(previewed, run):
    result = run("-C", str(previewed), "review", "main", "--backend", "preview")
    assert result.code == 0, result.err
    assert result.out.endswith("(1 changed frame)\n")
def test_names_and_text_like_addresses_are_no_links_in_markdown():
    """Issue #22, finding 12: a target named like a domain is no link in a job summary."""
    from nbpipe.query.diff import Diff, FrameDiff
    from nbpipe.ui.diff_format import _md, diff_markdown

    frame = FrameDiff("www.pay-here.example", "removed", "removed", "no longer declared")
    text = diff_markdown(Diff("main", "c" * 40, [frame]))
    assert "| `www.pay-here.example` |" in text
    said = _md("see https://evil.example or www.evil.example, ask me@evil.example")
    assert not re.search(r"https?://|www\.|@", said)
    assert said.replace("&#46;", ".").replace("&#58;", ":").replace("&#64;", "@") == \
        "see https://evil.example or www.evil.example, ask me@evil.example"


def test_diff_counts_what_is_left_to_pay_at_the_lanes_price(make_project, run, identity):
    from decimal import Decimal

    from nbpipe.catalog import builtin

    flash = builtin().get("gemini", "gemini-3.1-flash-image")
    root = make_project("version: 1\ndefaults: {backend: gemini, model: gemini-3.1-flash-image,"
                        " lane: batch}\ntargets:\n  a: {prompt: x}\n  b: {prompt: y}\n",
                        {".gitignore": b".nbpipe/\n"})
    git(root, "init", "-q", "-b", "main")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "main")
    doc = json.loads(run("-C", str(root), "diff", "main", "--format", "json").out)
    assert Decimal(str(doc["summary"]["cost_usd"])) == 2 * flash.price("1K", "batch")
    doc = json.loads(run("-C", str(root), "diff", "main", "--format", "json",
                         "--lane", "standard").out)
    assert Decimal(str(doc["summary"]["cost_usd"])) == 2 * flash.price("1K")
