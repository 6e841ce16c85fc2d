"""The Files API of the fake Gemini, as the Batch API uses it (api-facts.md, "Gemini Batch API").

A resumable upload is two requests or more: `POST /upload/{v}/files` with
`X-Goog-Upload-Protocol: resumable` and `X-Goog-Upload-Command: start` (the size and type in
`X-Goog-Upload-Header-Content-Length` / `-Content-Type`, the file's metadata as
`{"file": {...}}`) answers an upload URL in `X-Goog-Upload-URL`; then the bytes go to that URL
with `X-Goog-Upload-Command: upload, finalize` and `X-Goog-Upload-Offset` (each chunk but the
last: `upload`, answered `X-Goog-Upload-Status: active`). The finalize answers `final` and
`{"file": File}`. A File's `sizeBytes` is an int64, so a JSON string.

Only files the service made (a batch's results, `source: GENERATED`) download: at
`/download/{v}/files/{id}:download?alt=media` (the REST docs) and at
`/{v}/files/{id}:download?alt=media` (what google-genai 3.x requests). Uploads are kept
`retention_hours` (48) of the fake clock, then answer 404; `cap` bounds an upload's size
(2 GB for real; set it small to test the refusal).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tests.fakes.server import Handler

if TYPE_CHECKING:
    from tests.fakes.gemini_batch import FakeGeminiBatch

UPLOAD = re.compile(r"^/upload/(v1beta|v1)/files$")
FILE = re.compile(r"^/(v1beta|v1)/files/([a-z0-9]+)$")
DOWNLOAD = re.compile(r"^(?:/download)?/(v1beta|v1)/files/([a-z0-9]+):download$")


@dataclass
class StoredFile:
    """One file the fake keeps: uploaded by a client, or generated (a batch's results)."""

    id: str
    mime: str
    created: float  # the fake clock, hours
    display_name: str = ""
    source: str = "UPLOADED"  # or GENERATED: only these download
    data: bytearray = field(default_factory=bytearray)

    @property
    def name(self) -> str:
        return f"files/{self.id}"


@dataclass
class Upload:
    """An upload session between its start and its finalize."""

    file: StoredFile
    size: int  # what the start declared: the finalize must have brought exactly this


class FakeFiles:
    """The Files API routes, served on the batch fake's port with its key, clock and lock."""

    def __init__(self, owner: FakeGeminiBatch) -> None:
        self.owner = owner
        self.files: dict[str, StoredFile] = {}
        self.uploads: dict[str, Upload] = {}
        self.cap = 2 * 1024 ** 3
        self.retention_hours = 48.0
        self._made = 0

    def serve(self, request: Handler, method: str, path: str) -> bool:
        """Answer `request` if it is a Files API call (the key already checked)."""
        if method == "POST" and UPLOAD.match(path):
            if request.headers.get("X-Goog-Upload-Command", "").strip() == "start":
                self._start(request)
            else:
                self._chunk(request)
            return True
        found = FILE.match(path) or DOWNLOAD.match(path)
        if found is None or method not in ("GET", "DELETE"):
            return False
        stored = self.files.get(found.group(2))
        if stored is None:
            self.owner.refuse(request, 404, "NOT_FOUND",
                              f"File files/{found.group(2)} does not exist.")
        elif method == "DELETE" and found.re is FILE:
            del self.files[stored.id]
            request.send(200, {})
        elif found.re is FILE:
            request.send(200, self.resource(stored))
        else:
            self._download(request, stored)
        return True

    def _start(self, request: Handler) -> None:
        raw = request.body()
        if request.headers.get("X-Goog-Upload-Protocol") != "resumable":
            return self.owner.refuse(request, 400, "INVALID_ARGUMENT",
                                     "the fake takes resumable uploads only")
        try:
            meta = (json.loads(raw or b"{}").get("file") or {})
            size = int(request.headers.get("X-Goog-Upload-Header-Content-Length", ""))
        except (ValueError, AttributeError):
            return self.owner.refuse(request, 400, "INVALID_ARGUMENT", "bad upload start")
        if size > self.cap:
            return self.owner.refuse(request, 400, "INVALID_ARGUMENT",
                                     f"File size {size} exceeds the limit of {self.cap} bytes.")
        # google-genai sends the metadata in snake_case (display_name, mime_type, size_bytes):
        # proto JSON takes a field's proto name as well as its lowerCamel one
        mime = (request.headers.get("X-Goog-Upload-Header-Content-Type") or meta.get("mimeType")
                or meta.get("mime_type") or "application/octet-stream")
        stored = StoredFile(self._id("upload"), mime, self.owner.hours, display_name=str(
            meta.get("displayName") or meta.get("display_name") or ""))
        with self.owner.lock:
            self.uploads[stored.id] = Upload(stored, size)
        url = (f"{self.owner.url}/upload/v1beta/files?upload_id={stored.id}"
               "&upload_protocol=resumable")
        request.send(200, raw=b"", headers={"X-Goog-Upload-URL": url,
                                            "X-Goog-Upload-Status": "active"})

    def _chunk(self, request: Handler) -> None:
        data = request.body()
        upload = self.uploads.get(request.query().get("upload_id", ""))
        if upload is None:
            return self._refuse(request, 404, "NOT_FOUND", "no such upload")
        command = {c.strip() for c in request.headers.get("X-Goog-Upload-Command", "").split(",")}
        offset = request.headers.get("X-Goog-Upload-Offset", "")
        if "upload" not in command or offset != str(len(upload.file.data)):
            return self._refuse(request, 400, "INVALID_ARGUMENT",
                                     f"bad upload command {sorted(command)} at offset {offset}")
        upload.file.data += data
        if len(upload.file.data) > min(upload.size, self.cap):
            del self.uploads[upload.file.id]
            return self._refuse(request, 400, "INVALID_ARGUMENT",
                                     "more bytes than the upload declared")
        if "finalize" not in command:
            return request.send(200, raw=b"", headers={"X-Goog-Upload-Status": "active"})
        del self.uploads[upload.file.id]
        if len(upload.file.data) != upload.size:
            return self._refuse(request, 400, "INVALID_ARGUMENT",
                                     "the upload ended short of its declared size")
        with self.owner.lock:
            self.files[upload.file.id] = upload.file
        self.owner.count("uploads")
        request.send(200, {"file": self.resource(upload.file)},
                     headers={"X-Goog-Upload-Status": "final"})

    @staticmethod
    def _refuse(request: Handler, status: int, kind: str, message: str) -> None:
        """A refused chunk. The SDK resends a chunk whose reply lacks X-Goog-Upload-Status
        (after 1, 2, 4 s): the service's own replies always carry it."""
        request.send(status, {"error": {"code": status, "message": message, "status": kind}},
                     headers={"X-Goog-Upload-Status": "final"})

    def _download(self, request: Handler, stored: StoredFile) -> None:
        if request.query().get("alt") != "media":
            return self.owner.refuse(request, 400, "INVALID_ARGUMENT", "download needs alt=media")
        if stored.source != "GENERATED":  # as the SDK's docstring says: uploads never download
            return self.owner.refuse(request, 400, "INVALID_ARGUMENT",
                                     "Only generated files can be downloaded.")
        self.owner.count("downloads")
        request.send(200, raw=bytes(stored.data), content_type=stored.mime)

    def generated(self, data: bytes, mime: str, display_name: str) -> StoredFile:
        """Keep a file the service wrote (a batch's responses file)."""
        stored = StoredFile(self._id("generated"), mime, self.owner.hours, display_name,
                            source="GENERATED", data=bytearray(data))
        with self.owner.lock:
            self.files[stored.id] = stored
        return stored

    def expire(self) -> None:
        """Forget uploads older than the retention (the fake clock has moved)."""
        with self.owner.lock:
            for stored in list(self.files.values()):
                if (stored.source == "UPLOADED"
                        and self.owner.hours - stored.created > self.retention_hours):
                    del self.files[stored.id]

    def resource(self, stored: StoredFile) -> dict:
        """The File as the API writes it (camelCase, int64 as a string)."""
        api = f"{self.owner.url}/v1beta/{stored.name}"
        made = self.owner.stamp(stored.created)
        return {"name": stored.name, "displayName": stored.display_name,
                "mimeType": stored.mime, "sizeBytes": str(len(stored.data)),
                "createTime": made, "updateTime": made,
                "expirationTime": self.owner.stamp(stored.created + self.retention_hours),
                "sha256Hash": base64.b64encode(
                    hashlib.sha256(stored.data).hexdigest().encode()).decode(),
                "uri": api, "state": "ACTIVE", "source": stored.source,
                **({"downloadUri": f"{self.owner.url}/download/v1beta/{stored.name}:download"
                                   "?alt=media"} if stored.source == "GENERATED" else {})}

    def _id(self, kind: str) -> str:
        with self.owner.lock:
            self._made += 1
            return hashlib.sha256(f"{kind}{self._made}".encode()).hexdigest()[:12]
