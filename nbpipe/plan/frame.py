"""A Frame is one concrete render, fully resolved; its key is what decides the image.

The frame key policy (KEY_SCHEMA 1):

    key = sha256(canonical_json({
        "v": KEY_SCHEMA, "backend", "model",
        "prompt":  the prompt text exactly as sent,
        "params":  the request parameters exactly as sent (wire values; absent ones omitted),
        "inputs":  [sha256 of each input image's bytes, in the order sent],
    }))

canonical_json = UTF-8, sorted keys, no insignificant white space. An input given as an https://
URL is keyed on the SHA-256 of "url:" + the URL (its bytes are fetched by the backend, not by
nbpipe), so such an input is assumed immutable: change the URL to change the image. Never in the
key: the output path, the target or frame name (renaming is free), credentials, callback or base
URLs, times.
An edit is keyed on the bytes of the upstream image actually pinned, not on the upstream's
prompt, so an upstream that re-renders to identical bytes leaves its dependants fresh.
Bump KEY_SCHEMA whenever the meaning of any field changes; old cache entries then just miss.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any, Literal

from nbpipe.plan import KEY_SCHEMA

IMAGE_EXTENSIONS = {"png": "png", "jpg": "jpeg", "jpeg": "jpeg", "webp": "webp"}
FORMAT_EXTENSIONS = {"png": "png", "jpeg": "jpg", "webp": "webp"}


def format_of_path(path: str) -> str | None:
    return IMAGE_EXTENSIONS.get(path.rpartition(".")[2].lower())


# One encoder for every call: json.dumps builds a new one whenever it is given options.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_json(value: Any) -> bytes:
    return _CANONICAL.encode(value).encode()


def url_digest(url: str) -> str:
    return hashlib.sha256(f"url:{url}".encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Request:
    """Exactly what is sent for one render, and so exactly what decides its image.

    The frame key is the hash of this value and of nothing else, and a backend receives only a
    Request (plus the bytes or URLs of the images its `inputs` name by digest), so nothing
    outside the key can reach an image. `inputs` holds the SHA-256 of each input image in the
    order sent (`url_digest` for an https URL); None while an upstream has not rendered yet.
    """

    backend: str
    model: str
    prompt: str
    params: dict[str, str]
    inputs: tuple[str | None, ...] = ()

    @property
    def key(self) -> str | None:
        return frame_key(self)


def frame_key(request: Request) -> str | None:
    """The frame key: the only function that computes one (see the module docstring); None
    while an input's digest is unknown (an edit waiting on its upstream)."""
    if any(d is None for d in request.inputs):
        return None
    document = {"v": KEY_SCHEMA, "backend": request.backend, "model": request.model,
                "prompt": request.prompt, "params": request.params,
                "inputs": list(request.inputs)}
    return hashlib.sha256(canonical_json(document)).hexdigest()


@dataclass(frozen=True, slots=True)
class InputImage:
    """An input image of a frame: an upstream frame's pinned output, or a project file.

    `digest` is the SHA-256 of the image bytes; None while an upstream has not rendered yet.
    `role` is "input" for the target's own inputs, "reference" for its bible's identity anchors.
    """

    kind: Literal["frame", "file", "url"]
    ref: str  # frame name, project-relative file path, or https URL
    digest: str | None
    role: Literal["input", "reference"] = "input"


@dataclass(frozen=True, slots=True)
class Frame:
    """One concrete render: everything the request holds, where it goes, what it costs."""

    name: str
    target: str
    backend: str
    model: str
    # The prompt as sent, in pieces joined on use: a long piece many frames repeat (a bible's
    # text) is one object shared by all of them, so memory grows with the frames, not with
    # frames × prompt length (12,000 frames × a 119k-character bible took 1.47 GB).
    parts: tuple[str, ...]
    params: dict[str, str]
    inputs: tuple[InputImage, ...]
    output: str  # project-relative POSIX path
    cost: Decimal  # USD per image on its lane
    # How the request is sent (standard, batch, flex): not in the key, since the request is
    # the same and so is the image; it changes only the price and the wait.
    lane: str = "standard"
    is_json: bool = False  # a JSON-structured prompt: the text is its mapping as JSON
    bible: str | None = None
    template: str | None = None
    vars: dict[str, Any] = field(default_factory=dict)
    markers: tuple[str, ...] = ()
    sources: dict[str, str] = field(default_factory=dict)  # "bible"/"template" → SHA-256 of text
    key: str | None = None

    @property
    def prompt(self) -> str:
        """The prompt text exactly as sent (built from `parts` on each use, never kept)."""
        return self.parts[0] if len(self.parts) == 1 else "".join(self.parts)

    @property
    def prompt_json(self) -> dict[str, Any] | None:
        """The rendered mapping of a JSON-structured prompt, read back from the text sent."""
        if not self.is_json:
            return None
        value = json.loads(self.prompt)
        return value if isinstance(value, dict) else None

    @property
    def request(self) -> Request:
        """What this frame sends: the one value its key hashes and its backend receives."""
        return Request(self.backend, self.model, self.prompt, self.params,
                       tuple(i.digest for i in self.inputs))

    def record(self) -> dict[str, Any]:
        """The request as stored beside its takes, so `explain` can diff a later request
        (`frame` only names it, for gc: the key never depends on names)."""
        prompt = self.prompt
        return {"frame": self.name, "backend": self.backend, "model": self.model,
                "prompt": prompt, "prompt_json": json.loads(prompt) if self.is_json else None,
                "params": self.params,
                "inputs": [{"kind": i.kind, "ref": i.ref, "role": i.role, "digest": i.digest}
                           for i in self.inputs],
                "bible": self.bible, "template": self.template, "vars": self.vars,
                "sources": self.sources}

    def output_for(self, fmt: str) -> str:
        """The output path for an image of format `fmt`: the extension follows the bytes
        (Gemini chooses its own format; a JPEG is never written under a .png name). A format
        it does not know (a take read from a shared cache or a remote is untrusted) keeps the
        declared output: never a name made of that text."""
        stem, dot, ext = self.output.rpartition(".")
        known = IMAGE_EXTENSIONS.get(ext.lower())
        if not dot or known is None or known == fmt or fmt not in FORMAT_EXTENSIONS:
            return self.output
        return f"{stem}.{FORMAT_EXTENSIONS[fmt]}"

    @property
    def upstreams(self) -> tuple[str, ...]:
        return tuple(i.ref for i in self.inputs if i.kind == "frame")

    def keyed(self, upstream_digests: dict[str, str] | None = None) -> Frame:
        """This frame with its key, once every input's digest is known (else key stays None)."""
        inputs = tuple(replace(i, digest=upstream_digests.get(i.ref, i.digest))
                       if i.kind == "frame" and upstream_digests else i for i in self.inputs)
        keyed = replace(self, inputs=inputs)
        return replace(keyed, key=keyed.request.key)
