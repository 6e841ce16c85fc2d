"""Gemini's generateContent: one text part plus inlineData parts; images come back inline."""

from __future__ import annotations

import mimetypes

from nbpipe.plan.frame import Frame

PAYLOAD_STYLE = "base64 data"


def generate_body(frame: Frame, image_data: list[str]) -> dict:
    """The POST /v1beta/models/{model}:generateContent body (the model is in the URL)."""
    parts: list[dict] = [{"text": frame.prompt}]
    for image, data in zip(frame.inputs, image_data):
        mime = mimetypes.guess_type(image.ref)[0] if image.kind == "file" else None
        parts.append({"inlineData": {"mimeType": mime or "image/png", "data": data}})
    image_config = {}
    if "aspect_ratio" in frame.params:
        image_config["aspectRatio"] = frame.params["aspect_ratio"]
    if "resolution" in frame.params:
        image_config["imageSize"] = frame.params["resolution"]
    config: dict = {"responseModalities": ["IMAGE"]}
    if image_config:
        config["imageConfig"] = image_config
    return {"contents": [{"role": "user", "parts": parts}], "generationConfig": config}
