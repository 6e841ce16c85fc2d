"""The offline, free preview backend: a deterministic placeholder image drawn locally.

The image has the request's aspect ratio, resolution tier (its long side from the catalogue) and
output format, shows the model and params, the end of the prompt (where frames differ; the
fields of a JSON prompt) and thumbnails of the input images, on a colour derived from the frame
key, and a forced take's number. It is drawn from the Request and the take number alone: same
key, same take, same bytes.
"""

from __future__ import annotations

import asyncio
import colorsys
import io
import json
import textwrap
from collections.abc import Iterator
from typing import TYPE_CHECKING

from nbpipe.backends.base import InputData, Job, Rendered, Sink
from nbpipe.backends.registry import BackendSpec, Inputs, Lane
from nbpipe.catalog import builtin
from nbpipe.plan.frame import Request

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

PAYLOAD_STYLE = "thumbnail"
UNTIERED_PX = 1024  # the long side for a model without resolution tiers (about a megapixel)
_ASCII_DASHES = str.maketrans({"\u2013": "-", "\u2014": "-"})


def render_request(request: Request, images: list[str],
                   mimes: list[str] | None = None) -> dict[str, object]:
    """What the preview renderer draws from: nothing leaves the machine."""
    return {"model": request.model, "prompt": request.prompt, "params": request.params,
            "images": list(images)}


def image_size(params: dict[str, str]) -> tuple[int, int]:
    width, _, height = params.get("size", "").partition("x")
    if width.isdigit() and height.isdigit() and 0 < int(width) * int(height) <= 1 << 24:
        return int(width), int(height)  # the exact size a model is sent (OpenAI's)
    long_side = builtin().tiers.get(params.get("resolution", ""), UNTIERED_PX)
    ratio = params.get("aspect_ratio", "auto")
    w, _, h = ratio.partition(":")
    rw, rh = (int(w), int(h)) if ratio != "auto" else (1, 1)  # the model's choice: square
    if rw >= rh:
        return long_side, max(1, round(long_side * rh / rw))
    return max(1, round(long_side * rw / rh)), long_side


def output_format(request: Request) -> str:
    return {"jpeg": "jpeg", "jpg": "jpeg", "webp": "webp"}.get(
        request.params.get("output_format", ""), "png")


def prompt_lines(prompt: str, columns: int, rows: int) -> list[str]:
    """What of the prompt fits: the leaves of a JSON prompt (`subject.color: red`), else the
    END of a text prompt, where frames differ (the bible comes first and is the same)."""
    prompt = prompt.translate(_ASCII_DASHES)  # the embedded font has no en/em dash
    try:
        tree = json.loads(prompt)
    except ValueError:
        tree = None
    if isinstance(tree, dict):
        leaves = [f"{path}: {value}" for path, value in _leaves(tree, "")]
        return [textwrap.shorten(leaf, columns, placeholder="...") for leaf in leaves][:rows]
    lines = textwrap.wrap(prompt, columns) or [""]
    if len(lines) <= rows:
        return lines
    return ["... " + lines[-rows][:columns - 4], *lines[1 - rows:]] if rows > 1 else lines[-1:]


def _leaves(node: object, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _leaves(value, f"{path}[{i}]")
    else:
        yield path, node if isinstance(node, str) else json.dumps(node)


def draw(request: Request, inputs: list[bytes], take: int = 1) -> bytes:
    """The preview image's bytes: a pure function of the request (and of the take, so that
    `build --force` makes a new take that differs; take 1 is the one a normal build makes)."""
    from PIL import Image, ImageDraw, ImageFont

    width, height = image_size(request.params)
    hue = int((request.key or "0" * 8)[:8], 16) / 0xFFFFFFFF
    background = tuple(round(c * 255) for c in colorsys.hsv_to_rgb(hue, 0.35, 0.85))
    image = Image.new("RGB", (width, height), background)
    pen = ImageDraw.Draw(image)
    unit = max(8, min(width, height) // 24)
    big, small = ImageFont.load_default(size=unit * 2), ImageFont.load_default(size=unit)
    x, y = unit, unit
    pen.text((x, y), "PREVIEW" + (f" · take {take}" if take > 1 else ""), fill="black", font=big)
    y += unit * 3
    params = " · ".join(f"{k} {v}" for k, v in sorted(request.params.items()))
    pen.text((x, y), f"{request.model} · {params}" if params else request.model,
             fill="black", font=small)
    y += unit * 2
    columns = max(10, int(width / (unit * 0.55)))
    room = height - y - (unit * 7 if inputs else unit)  # leave the thumbnails their strip
    for line in prompt_lines(request.prompt, columns, max(1, room // int(unit * 1.3))):
        pen.text((x, y), line, fill=(40, 40, 40), font=small)
        y += int(unit * 1.3)
    _thumbnails(image, inputs, unit)
    out = io.BytesIO()
    if output_format(request) == "jpeg":
        image.save(out, "JPEG", quality=85)
    elif output_format(request) == "webp":
        image.save(out, "WEBP", quality=85)
    else:
        image.save(out, "PNG", compress_level=6)
    return out.getvalue()


def _thumbnails(image: PILImage, inputs: list[bytes], unit: int) -> None:
    from PIL import Image, UnidentifiedImageError

    side = unit * 5
    x = unit
    for data in inputs:
        try:
            thumb = Image.open(io.BytesIO(data)).convert("RGB")
        except (UnidentifiedImageError, OSError, ValueError):
            continue
        thumb.thumbnail((side, side))
        image.paste(thumb, (x, image.height - thumb.height - unit))
        x += thumb.width + unit


class PreviewBackend:
    """Renders in a worker thread (Pillow releases the GIL while encoding)."""

    name = "preview"
    account: str | None = None  # free: nothing to collect, nobody pays

    async def render(self, request: Request, inputs: list[InputData], sink: Sink,
                     job: Job) -> Rendered:
        images = [i.data for i in inputs if i.data is not None]
        sink.write(await asyncio.to_thread(draw, request, images, job.take))
        return Rendered(task_id=None)

    async def aclose(self) -> None:
        return None


SPEC = BackendSpec(name="preview", lanes=(Lane.CALL,), inputs=Inputs.LOCAL, key_env=(),
                   base_url_env=None, payload_style=PAYLOAD_STYLE,
                   open=lambda jobs, rpm, settings: PreviewBackend(), describe=render_request,
                   endpoint=lambda model: "local preview renderer (offline)", paid=False)
