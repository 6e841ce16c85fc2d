"""What the static pages (`report`, `review`) share: thumbnails kept by image digest, the
autoescaping template environment, inline assets allowed by a hash-based Content-Security-Policy,
and the atomic write of the page.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path

from jinja2 import Environment, PackageLoader, select_autoescape

from nbpipe.errors import UsageError
from nbpipe.files import atomic_write, is_sha256
from nbpipe.projectfile import inside
from nbpipe.store import gitref

THUMB_PX = 360
Source = Callable[[], bytes | None]


class Thumbs:
    """JPEG thumbnails in `folder`, named by the image's digest, so a rebuilt page only makes
    the new ones. `of` answers a link relative to the page, or a data: URI when `inline`."""

    folder: Path
    page_dir: Path
    px: int  # the longer side of a thumbnail
    inline: bool
    reuse: bool  # a thumbnail already there is trusted (not when git tracks the folder)

    def __init__(self, folder: Path, page_dir: Path, px: int = THUMB_PX, inline: bool = False,
                 reuse: bool = True):
        """`reuse=False`: remake every thumbnail (the folder may hold files nbpipe did not make,
        and a thumbnail cannot be checked against the image's digest)."""
        self.folder, self.page_dir, self.px, self.inline = folder, page_dir, px, inline
        self.reuse = reuse
        folder.mkdir(parents=True, exist_ok=True)

    def of(self, digest: str, source: Path | Source) -> str | None:
        """The thumbnail of the image `digest`; `source` (a file, or a function answering the
        bytes) is read only when the thumbnail is not made yet. None if it is not an image."""
        if not is_sha256(digest):  # it names the thumbnail's file
            return None
        target = self.folder / f"{digest[:24]}.jpg"
        if not (self.reuse and target.exists()) and not self._make(target, source):
            return None
        if self.inline:
            return "data:image/jpeg;base64," + base64.b64encode(target.read_bytes()).decode()
        return os.path.relpath(target, self.page_dir)

    def _make(self, target: Path, source: Path | Source) -> bool:
        from PIL import Image, UnidentifiedImageError

        try:
            data = source.read_bytes() if isinstance(source, Path) else source()
            if data is None:
                return False
            with Image.open(io.BytesIO(data)) as image:
                if image.width * image.height > max_pixels():
                    return False  # no model makes it: a decode would cost gigabytes, not a page
                image.thumbnail((self.px, self.px))
                out = io.BytesIO()
                image.convert("RGB").save(out, "JPEG", quality=82)
        except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError):
            return False
        _publish(target, out.getvalue())
        return True


def max_pixels() -> int:
    """The most pixels an image a page shows may have: a square of the catalogue's largest
    tier (4K: 4096 x 4096). Pillow's own bound is about 179 million, 1.4 GB to decode."""
    from nbpipe.catalog import builtin

    side = max(builtin().tiers.values(), default=4096)
    return side * side


def project_thumbs(root: Path, folder: Path, page_dir: Path, px: int = THUMB_PX,
                   inline: bool = False) -> Thumbs:
    """Thumbnails in `folder` for a page in `page_dir`, with the guards every page of the
    project needs: neither folder leads out of the project through a symbolic link (a pull
    request commits `out -> ~/.ssh`), and thumbnails git tracks there are remade, never shown
    (a pull request committed them: they would stand for the images it changed)."""
    for place in (page_dir, folder):
        refuse_outside(root, place)
    committed = _in_repository(root) and gitref.tracks(root, folder)
    return Thumbs(folder, page_dir, px, inline, reuse=not committed)


def _in_repository(root: Path) -> bool:
    """Whether a git checkout holds `root` (no commit can have put files in one that is not;
    gitref.tracks answers "maybe" when git will not say, e.g. a checkout another user owns)."""
    here = Path(os.path.abspath(root))
    return any((folder / ".git").exists() for folder in (here, *here.parents))


def refuse_outside(root: Path, folder: Path) -> None:
    """UsageError when `folder` is in the project by its name but leads out of it through a
    symbolic link. A folder the user names outside the project is theirs to choose."""
    named = os.path.abspath(folder)
    base = os.path.abspath(root)
    if (named == base or named.startswith(base.rstrip(os.sep) + os.sep)) \
            and not inside(root, folder):
        raise UsageError(f"{folder} leads out of the project through a symbolic link: "
                         "nbpipe writes no page there",
                         "remove the link, or name a folder outside the project with --out")


def environment() -> Environment:
    return Environment(loader=PackageLoader("nbpipe", "data"), autoescape=select_autoescape(
        default_for_string=True, default=True))


def asset(name: str) -> tuple[str, str]:
    """A CSS or JS file of the package, and the CSP source that allows it inline."""
    text = files("nbpipe").joinpath(f"data/{name}").read_text("utf-8")
    digest = base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()
    return text, f"'sha256-{digest}'"


def csp(styles: list[str], scripts: list[str], images: str) -> str:
    """A strict policy: nothing loads but the page's own images; only hashed inline code runs."""
    return (f"default-src 'none'; img-src {images}; style-src {' '.join(styles)}; "
            f"script-src {' '.join(scripts)}; base-uri 'none'; form-action 'none'")


def write_page(page: Path, html: str) -> Path:
    _publish(page, html.encode("utf-8"))
    return page


def _publish(path: Path, data: bytes) -> None:
    """Atomically, and readable like any file the user makes (a page is meant to be shared:
    atomic_write gives it the mode a plain open() would)."""
    atomic_write(path, data)
