"""The JSON Schema of nbpipe.yaml, generated from the models (schemas/ holds a copy)."""

from __future__ import annotations

import json
from typing import Any

from nbpipe.manifest.models import Manifest


def manifest_schema() -> dict[str, Any]:
    schema = Manifest.model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "nbpipe.yaml", **{k: v for k, v in schema.items() if k != "title"}}


def schema_text() -> str:
    return json.dumps(manifest_schema(), indent=2, ensure_ascii=False) + "\n"
