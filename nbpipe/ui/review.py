"""`nbpipe review`: a static before/after page of the frames `nbpipe diff` lists.

Each frame shows the image BASE pinned beside the one the working tree holds (side by side,
swipe or onion skin), the prompt diff, the reason, the model and the cost; a frame still to
render says so. BASE's image comes from the local cache, else the output file committed at BASE
(gitref.Committed: two git processes for all of them), else the remote cache; every one is
used only if its bytes hash to the pinned digest. Thumbnails are kept by digest (report's
code), so a rebuilt page only makes new ones. `--self-contained` inlines them: one HTML file
to upload as a CI artifact.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from nbpipe.files import is_sha256
from nbpipe.money import fmt_usd
from nbpipe.plan.frame import Frame
from nbpipe.plan.planner import Project
from nbpipe.plan.reasons import word_ops
from nbpipe.projectfile import inside
from nbpipe.query.diff import Diff, FrameDiff, diff_project
from nbpipe.store import gitref
from nbpipe.store.cache import Cache
from nbpipe.store.remote import Remote
from nbpipe.store.state import file_sha256
from nbpipe.store.workspace import open_remote
from nbpipe.ui.diff_format import anchor, model_label, summary_line
from nbpipe.ui.page import Thumbs, asset, csp, environment, project_thumbs, write_page

REVIEW_PX = 768


@dataclass
class Side:
    digest: str | None
    thumb: str | None
    model: str
    note: str  # why there is no image, when there is none


@dataclass
class Entry:
    id: str
    name: str
    status: str
    state: str
    reason: str
    causes: tuple[str, ...]
    details: tuple[str, ...]
    cost: str
    before: Side | None
    after: Side | None
    prompt: list[tuple[str, str]] = field(default_factory=list)
    prompt_note: str = ""
    replaces: str | None = None


class _Images:
    """Where an image of a digest can be read from, cheapest first; every source verified."""

    root: Path
    committed: gitref.Committed  # the files committed at BASE
    cache: Cache
    remote: Remote | None

    def __init__(self, project: Project, cache_dir: Path, commit: str, offline: bool):
        self.root = project.loaded.root
        self.committed = gitref.Committed(self.root, commit)
        self.cache = Cache(cache_dir, create=False)
        self.remote = open_remote(project, offline)

    def before(self, digest: str, output: str):
        return lambda: (self._local(digest)
                        or self.committed.image(output, digest)
                        or self._remote(digest))

    def after(self, digest: str, output: str):
        def read() -> bytes | None:
            data = self._local(digest)
            if data is None and gitref.safe_relative(output):
                path = self.root / output
                if inside(self.root, path) and file_sha256(path) == digest:
                    data = path.read_bytes()
            return data or self._remote(digest)
        return read

    def _local(self, digest: str) -> bytes | None:
        # a digest from a pull request's lock names a blob path: only a real digest may
        return self.cache.read_verified(digest) if is_sha256(digest) else None

    def _remote(self, digest: str) -> bytes | None:
        return self.remote.read_verified(digest) if self.remote and is_sha256(digest) else None

    def close(self) -> None:
        self.committed.close()
        self.cache.close()


def write_review(project: Project, cache_dir: Path, base: str | None, out: Path,
                 self_contained: bool, offline: bool = False,
                 preview: bool = False) -> tuple[Path, int]:
    """Write the review page into folder `out` (index.html, thumbs/); the page and how many
    frames it shows. With `preview`, a frame still to render shows the preview backend's
    placeholder of its request (drawn here: nothing is sent, paid, cached or pinned)."""
    root = project.loaded.root
    folder = out if out.is_absolute() else root / out
    diff = diff_project(project, cache_dir, base, offline)
    kept = cache_dir / "thumbs" if self_contained else folder / "thumbs"
    thumbs = project_thumbs(root, kept, folder, REVIEW_PX, inline=self_contained)
    images = _Images(project, cache_dir, diff.commit, offline)
    try:
        entries = [_entry(f, thumbs, images, preview) for f in diff.frames]
    finally:
        images.close()
    return write_page(folder / "index.html", _html(project, diff, entries, self_contained)), \
        len(entries)


def _html(project: Project, diff: Diff, entries: list[Entry], self_contained: bool) -> str:
    css, css_source = asset("review.css")
    js, js_source = asset("review.js")
    policy = csp([css_source], [js_source], "data:" if self_contained else "'self' data:")
    name = project.loaded.manifest.name or project.loaded.root.resolve().name
    return environment().get_template("review.html.j2").render(
        name=name, ref=diff.ref, commit=diff.commit[:12], summary=summary_line(diff),
        entries=entries, css=css, js=js, policy=policy)


def _entry(f: FrameDiff, thumbs: Thumbs, images: _Images, preview: bool) -> Entry:
    before = after = None
    if f.before is not None:
        source = images.before(f.before.digest, f.before.output)
        thumb = thumbs.of(f.before.digest, source)
        before = Side(f.before.digest, thumb, f.before.model,
                      "" if thumb else "not in the caches nor committed at BASE")
    if f.after is not None:
        model = model_label(f.after)
        if f.digest is None:
            note = f"still to render · USD {fmt_usd(f.after.cost)}" if f.state == "render" \
                else f"{f.state}: {f.reason}"
            after = _preview(f.after, thumbs, model, note) if preview \
                else Side(None, None, model, note)
        else:
            thumb = thumbs.of(f.digest, images.after(f.digest, f.output or f.after.output))
            after = Side(f.digest, thumb, model, "" if thumb else "image not found")
    prompt, note = _prompt(f)
    return Entry(anchor(f.name), f.name, f.status, f.state, f.reason, f.causes, f.details,
                 fmt_usd(f.cost), before, after, prompt, note, f.replaces)


def _preview(frame: Frame, thumbs: Thumbs, model: str, note: str) -> Side:
    """The preview backend's placeholder of a frame still to render (offline and free)."""
    from nbpipe.backends.preview import draw

    identity = hashlib.sha256(f"preview:{frame.name}:{frame.key}".encode()).hexdigest()
    thumb = thumbs.of(identity, lambda: draw(frame.request, []))
    return Side(None, thumb, f"{model} · preview, not rendered", note)


def _prompt(f: FrameDiff) -> tuple[list[tuple[str, str]], str]:
    old = f.previous.get("prompt") if isinstance(f.previous, dict) else None
    old = old if isinstance(old, str) else None
    new = f.after.prompt if f.after is not None else None
    if new is None:
        return ([("delete", old)] if old else []), "removed"
    if f.status == "added" and old is None:
        return [("insert", new)], "new frame"
    if old is None:
        return [("equal", new)], "BASE's prompt is in neither cache: the current prompt"
    return word_ops(old, new), ""
