"""The offline, free preview backend: a deterministic placeholder image drawn locally.

The image has the request's aspect ratio, resolution tier (its long side from the catalogue) and
output format, shows the model, the start of the prompt and thumbnails of the input images, on
a colour derived from the frame key. It is drawn from the Request alone: same key, same bytes.
"""

from __future__ import annotations

import asyncio
import colorsys
import io
import textwrap
from decimal import Decimal

from nbpipe.backends.base import InputData, Job, Rendered, Sink
from nbpipe.catalog import builtin
from nbpipe.plan.frame import Request

PAYLOAD_STYLE = "thumbnail"
UNTIERED_PX = 1024  # the long side for a model without resolution tiers (about a megapixel)
_ASCII_DASHES = str.maketrans({"\u2013": "-", "\u2014": "-"})


def render_request(request: Request, images: list[str]) -> dict:
    """What the preview renderer draws from: nothing leaves the machine."""
    return {"model": request.model, "prompt": request.prompt, "params": request.params,
            "images": list(images)}


def image_size(params: dict[str, str]) -> tuple[int, int]:
    long_side = builtin().tiers.get(params.get("resolution", ""), UNTIERED_PX)
    ratio = params.get("aspect_ratio", "auto")
    w, _, h = ratio.partition(":")
    rw, rh = (int(w), int(h)) if ratio != "auto" else (1, 1)  # the model's choice: square
    if rw >= rh:
        return long_side, max(1, round(long_side * rh / rw))
    return max(1, round(long_side * rw / rh)), long_side


def output_format(request: Request) -> str:
    return "jpeg" if request.params.get("output_format") in ("jpeg", "jpg") else "png"


def draw(request: Request, inputs: list[bytes]) -> bytes:
    """The preview image's bytes (pure and deterministic)."""
    from PIL import Image, ImageDraw, ImageFont

    width, height = image_size(request.params)
    hue = int((request.key or "0" * 8)[:8], 16) / 0xFFFFFFFF
    background = tuple(round(c * 255) for c in colorsys.hsv_to_rgb(hue, 0.35, 0.85))
    image = Image.new("RGB", (width, height), background)
    pen = ImageDraw.Draw(image)
    unit = max(8, min(width, height) // 24)
    big, small = ImageFont.load_default(size=unit * 2), ImageFont.load_default(size=unit)
    x, y = unit, unit
    pen.text((x, y), "PREVIEW", fill="black", font=big)
    y += unit * 3
    resolution = request.params.get("resolution", "")
    pen.text((x, y), f"{request.model} {resolution}".rstrip(), fill="black", font=small)
    y += unit * 2
    columns = max(10, int(width / (unit * 0.55)))
    prompt = request.prompt.translate(_ASCII_DASHES)  # the embedded font has no en/em dash
    for line in textwrap.wrap(prompt, columns)[:6]:
        pen.text((x, y), line, fill=(40, 40, 40), font=small)
        y += int(unit * 1.3)
    _thumbnails(image, inputs, unit)
    out = io.BytesIO()
    if output_format(request) == "jpeg":
        image.save(out, "JPEG", quality=85)
    else:
        image.save(out, "PNG", compress_level=6)
    return out.getvalue()


def _thumbnails(image, inputs: list[bytes], unit: int) -> None:
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

    async def render(self, request: Request, inputs: list[InputData], sink: Sink,
                     job: Job) -> Rendered:
        images = [i.data for i in inputs if i.data is not None]
        sink.write(await asyncio.to_thread(draw, request, images))
        return Rendered(task_id=None, cost=Decimal(0))

    async def aclose(self) -> None:
        return None
