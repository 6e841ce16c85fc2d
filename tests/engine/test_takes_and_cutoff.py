"""Builds with substitute backends (same interface as the real ones): early cutoff, takes, gc."""

from __future__ import annotations

import io
from decimal import Decimal
from pathlib import Path

from PIL import Image

from nbpipe.backends.base import Rendered
from nbpipe.engine.build import Build, BuildOptions
from nbpipe.events import Summary
from nbpipe.ops.maintain import gc
from nbpipe.plan.planner import open_project
from nbpipe.query.inspect import explain, list_takes, pin
from nbpipe.store.cache import Cache
from nbpipe.store.journal import Journal
from nbpipe.store.lock import Lock
from nbpipe.store.state import State


def png(seed: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (seed % 256, 0, 0)).save(out, "PNG")
    return out.getvalue()


class CountingBackend:
    """Renders `bytes_for(request, call number)`; records the prompt of each render (a backend
    sees only the Request, never the frame's name)."""

    name = "preview"
    account = None

    def __init__(self, bytes_for):
        self.bytes_for = bytes_for
        self.calls: list[str] = []

    async def render(self, request, inputs, sink, job):
        self.calls.append(request.prompt)
        sink.write(self.bytes_for(request, len(self.calls)))
        return Rendered(f"task-{len(self.calls)}")

    async def aclose(self):
        pass


class Quiet:
    def emit(self, event):
        pass


def build(root: Path, backend, **options) -> Summary:
    project = open_project(root, "preview")
    cache = Cache(root / ".nbpipe")
    try:
        journal = Journal(root / ".nbpipe" / "journal.jsonl")
        b = Build(project, cache, Lock.load(root), State(root), journal, Quiet(),
                  BuildOptions(**options), backends={"preview": backend})
        return b.run()
    finally:
        journal.close()
        cache.close()


CHAIN = """\
version: 1
defaults: {{model: Nano-Banana-2}}
targets:
  base: {{prompt: "{base}"}}
  golden: {{prompt: golden hour, inputs: [base]}}
"""


def test_early_cutoff_when_upstream_rerenders_to_identical_bytes(make_project):
    root = make_project(CHAIN.format(base="a cabin"))
    same_bytes = CountingBackend(lambda request, n: png(1 if "cabin" in request.prompt else n + 10))
    assert build(root, same_bytes).rendered == 2
    (root / "nbpipe.yaml").write_text(CHAIN.format(base="a cabin, again"))
    summary = build(root, same_bytes)
    # golden was not rendered again
    assert same_bytes.calls == ["a cabin", "golden hour", "a cabin, again"]
    assert (summary.rendered, summary.fresh) == (1, 1)


def test_spend_and_savings_are_counted(make_project):
    # a build prices each render by the catalogue (or the manifest's `pricing:`), never by
    # what a backend says it cost: the preview lane is priced here so there is money to count
    priced = CHAIN.replace("targets:", "pricing: {{preview: {{Nano-Banana-2: 0.05}}}}\ntargets:")
    root = make_project(priced.format(base="a cabin"))
    backend = CountingBackend(lambda request, n: png(n))
    first = build(root, backend)
    assert (first.spent, first.saved) == (Decimal("0.10"), Decimal(0))
    (root / "out" / "golden.png").unlink()
    second = build(root, backend)
    assert (second.rendered, second.restored, second.saved) == (0, 1, Decimal("0.05"))


def test_force_adds_a_take_and_pin_goes_back_for_free(make_project):
    root = make_project(CHAIN.format(base="a cabin"))
    backend = CountingBackend(lambda request, n: png(n))
    build(root, backend)
    first = (root / "out" / "base.png").read_bytes()
    build(root, backend, force=True, patterns=("base",))
    assert (root / "out" / "base.png").read_bytes() != first
    assert build(root, backend).rendered == 1  # golden, from take 2 of base
    project = open_project(root, "preview")
    listing = list_takes(project, root / ".nbpipe", "base")
    assert listing.splitlines()[1].startswith("  1  sha256:")
    assert listing.splitlines()[2].startswith("* 2  sha256:")
    calls = len(backend.calls)
    assert pin(project, root / ".nbpipe", "base", "1", force=False).startswith("pinned base")
    assert (root / "out" / "base.png").read_bytes() == first
    assert len(backend.calls) == calls
    why = explain(open_project(root, "preview"), root / ".nbpipe", "golden")
    assert "(the upstream's pinned image changed: re-rendered or re-pinned)" in why
    assert "the upstream re-rendered" not in why
    # golden was made from take 2; with take 1 pinned again its old take is restored, free
    summary = build(root, backend)
    assert (summary.rendered, summary.restored) == (0, 1)


def test_gc_never_removes_pinned_takes(make_project):
    root = make_project(CHAIN.format(base="a cabin"))
    backend = CountingBackend(lambda request, n: png(n))
    build(root, backend)
    build(root, backend, force=True, patterns=("base",))
    cache, lock = Cache(root / ".nbpipe"), Lock.load(root)
    try:
        lines = gc(cache, lock, max_size=0, older_than=None, dry_run=False)
        remaining = {t.digest for k in cache.index.keys() for t in cache.takes(k)}
    finally:
        cache.close()
    assert lock.pinned() <= remaining
    assert "removed base, superseded take 1 (sha256 " in "\n".join(lines)
    after = build(root, backend)  # base is still pinned and present; golden follows the new take
    assert (after.fresh, after.rendered, backend.calls[-1]) == (1, 1, "golden hour")


def test_explain_json_prompt_field_diff(make_project):
    manifest = """\
version: 1
templates:
  product:
    subject: {name: shoe, color: "{{ color }}"}
    camera: {angle: eye-level}
targets:
  shoe:
    template: product
    vars: {color: red}
"""
    root = make_project(manifest)
    build(root, CountingBackend(lambda request, n: png(n)))
    (root / "nbpipe.yaml").write_text(manifest.replace("color: red", "color: blue"))
    text = explain(open_project(root, "preview"), root / ".nbpipe", "shoe")
    lines = text.splitlines()
    assert lines[:3] == ["shoe: render · var 'color' changed",
                         "  var 'color': \"red\" → \"blue\"",
                         "  prompt subject.color: \"red\" → \"blue\""]
    assert lines[3].startswith("  key: ") and "(locked) →" in lines[3]
    assert lines[4] == "  no take of this key in the cache: renders on preview Nano-Banana " \
                       "for USD 0.00"


def test_explain_names_bible_template_and_upstream(make_project):
    manifest = """\
version: 1
defaults: {model: Nano-Banana-2}
bibles: {mira: "Mira, a field engineer."}
templates: {scene: "{{ bible }} | Scene: {{ scene }}"}
targets:
  shot: {template: scene, bible: mira, vars: {scene: a workshop}}
  edit: {prompt: golden hour, inputs: [shot]}
"""
    root = make_project(manifest)
    build(root, CountingBackend(lambda request, n: png(n)))
    (root / "nbpipe.yaml").write_text(manifest.replace("a field engineer", "an engineer"))
    text = explain(open_project(root, "preview"), root / ".nbpipe", "shot")
    assert text.splitlines()[:3] == [
        "shot: render · bible 'mira' changed",
        "  bible 'mira' changed",
        "  prompt: Mira, [-a field-] {+an+} engineer. | Scene: a workshop"]
    edit = explain(open_project(root, "preview"), root / ".nbpipe", "edit")
    assert edit.splitlines()[:2] == ["edit: blocked · waits on shot",
                                     "  because upstream shot: render · bible 'mira' changed"]


def test_gc_says_its_policy_names_frames_and_has_a_default(make_project, run):
    root = make_project(CHAIN.format(base="a cabin"))
    backend = CountingBackend(lambda request, n: png(n))
    build(root, backend)
    build(root, backend, force=True, patterns=("base",))  # base: take 1 superseded by take 2
    (root / "nbpipe.yaml").write_text(CHAIN.format(base="a barn"))
    build(root, backend)  # base's cabin request is now an earlier request
    build(root, backend, force=True, patterns=("golden",))  # with base: its take 1 superseded
    default = run("-C", str(root), "gc", "--dry-run")
    assert default.out.splitlines() == [
        "gc: removes takes no lock pins, older than 30d (the default: choose with --older-than "
        "AGE or --max-size SIZE); pinned takes always stay",
        "gc: 0 take(s), 0 bytes to free; 2 pinned image(s) kept"]
    lines = run("-C", str(root), "gc", "--older-than", "0s").out.splitlines()
    assert lines[0] == "gc: removes takes no lock pins, older than 0s; pinned takes always stay"
    removed = sorted(line.split(" (")[0] for line in lines[1:-1])
    assert removed == ["removed base, superseded take 1",
                       "removed base, take 1 of an earlier request",
                       "removed base, take 2 of an earlier request",
                       "removed golden, take 1 of an earlier request",
                       "removed golden, take 1 of an earlier request"]
    assert lines[-1].startswith("gc: 5 take(s), ")


def test_gc_keeps_takes_pinned_by_the_lock_of_another_branch(make_project, run):
    """A plain `gc` (30 days by default) must not delete the image another branch's committed
    lock pins: checking that branch out again would pay to render it again."""
    import subprocess

    root = make_project(CHAIN.format(base="a cabin"))

    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@t",
                        *args], check=True, capture_output=True)

    backend = CountingBackend(lambda request, n: png(n))
    git("init", "-q", "-b", "main")
    build(root, backend)
    first = Lock.load(root).entries["base"].digest
    git("add", "nbpipe.lock", "nbpipe.yaml")
    git("commit", "-qm", "take 1")
    git("checkout", "-qb", "retake")
    build(root, backend, force=True, patterns=("base",))  # this branch pins take 2
    assert Lock.load(root).entries["base"].digest != first
    result = run("-C", str(root), "gc", "--older-than", "0s")
    assert result.code == 0, result.err
    assert "base, superseded take 1" not in result.out
    cache = Cache(root / ".nbpipe")
    try:
        assert first in {t.digest for t in cache.takes(Lock.load(root).entries["base"].key)}
        assert cache.read_verified(first) is not None
    finally:
        cache.close()
