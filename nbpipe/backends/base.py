"""The interface every backend implements, and the pieces all of them share.

A request body is built by a pure function of the Request and its input images, so `nbpipe show`
prints exactly what a build would send. Image payloads (URLs for HiAPI, base64 for Gemini) are
known only when sending; `show` passes descriptions in their place.

A backend renders one request at a time: `render(request, input images, sink, job)` streams the
image into the sink (a temp file in the cache that the caller commits) and says what it was.
It sees only the Request (what the frame key hashes), never the Frame (names, paths, bible
markers), so nothing outside the key can change an image.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from nbpipe.errors import BuildStopped, FrameFailed
from nbpipe.plan.frame import InputImage, Request


class TaskStillOut(FrameFailed):
    """A task is still running at its deadline: paid, not collected; any later build collects
    it for free (the frame ends `left`, not failed)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retry_later=True)


class StoppedMaybeSent(BuildStopped):
    """A refusal that stops the build (key refused, balance spent, model unknown) met by the
    retry of a create whose earlier attempt lost its reply: that attempt may have made a paid
    task, so its journal entry stays open and the next build resends the same body under the
    same Idempotency-Key, collecting that task (if it exists) without paying again."""


class Sink(Protocol):
    def write(self, chunk: bytes) -> None: ...


@dataclass(frozen=True)
class InputData:
    """An input image as a backend may send it: its bytes, and a URL where one is known."""

    image: InputImage
    data: bytes | None
    mime: str = "image/png"
    url: str | None = None  # an https reference, or an upstream HiAPI output URL
    url_expires: float | None = None  # Unix seconds


@dataclass(frozen=True)
class Job:
    """One render attempt: which take it is (for the Idempotency-Key), a task to re-attach to
    instead of creating one, where to report a task id the moment it is known, and the lane
    it goes on."""

    take: int = 1
    lane: str = "standard"  # how to send it (standard, batch, flex): not in the Request, since
    # the image is the same; the backend sends it as the provider asks (Gemini: serviceTier);
    # "batch" goes in a job (engine/batches.py)
    wait: bool = True  # batch: wait for the job to end (False: one look, then pending)
    resume_task: str | None = None
    body: str | None = None  # a create already sent (journalled): resend exactly these bytes
    on_send: Callable[[str], None] = lambda body: None  # journal the wire body before sending
    on_task: Callable[[str], None] = lambda task_id: None
    # A first create answered as a replay: the task is another build's (a clone on another
    # cache sent the same request under the same account), which pays for it and says so.
    on_replayed: Callable[[], None] = lambda: None
    # A create answered with a new task: billed now to this build's account, whatever an
    # (untrusted) journal says was reported before.
    on_created: Callable[[], None] = lambda: None
    on_finished: Callable[[], None] = lambda: None  # the remote work is done: only fetching is left


@dataclass(frozen=True)
class Rendered:
    """What a backend reports about an image it wrote into the sink. No price: the build
    prices every request itself, from the catalogue (`Renderer.owed`), so a backend (a
    plug-in among them) cannot make a build's numbers disagree."""

    task_id: str | None
    url: str | None = None  # where the output can be fetched again (HiAPI), until url_expires
    url_expires: float | None = None


class Backend(Protocol):
    """`account`: who pays for what this backend sends, as an opaque id (a digest of the API
    key, never the key): a task or idempotent create belongs to one account, so a journal
    shared by projects with different keys must not hand one account's work to another."""

    @property
    def name(self) -> str: ...

    @property
    def account(self) -> str | None: ...

    async def render(self, request: Request, inputs: list[InputData], sink: Sink,
                     job: Job) -> Rendered: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class LearnsDurations(Protocol):
    """A task-lane backend that polls around how long each model's tasks take: it learns the
    durations from its finished tasks (`durations`, model → recent seconds), and the build
    keeps them in the project's state for the next build to start from (`recall`), so even
    its first tasks are polled when they are likely done."""

    def durations(self) -> dict[str, list[float]]: ...

    def recall(self, durations: Mapping[str, Sequence[float]]) -> None: ...


def input_bytes(inputs: list[InputData], how: str) -> list[bytes]:
    """Each input's bytes, for a provider that takes them in the request (`how`, e.g. "Gemini
    takes input images inline"); FrameFailed naming the inputs that have none (a URL input)."""
    missing = [i.image.ref for i in inputs if i.data is None]
    if missing:
        raise FrameFailed(f"{how}; no bytes for " + ", ".join(missing))
    return [i.data for i in inputs if i.data is not None]


def describe_image(image: InputImage, style: str) -> str:
    """The stand-in `show` prints where an image payload will go (a URL goes as it is)."""
    if image.kind == "url":
        return image.ref
    digest = f"sha256:{image.digest[:12]}" if image.digest else "not rendered yet"
    what = f"frame '{image.ref}'" if image.kind == "frame" else f"file '{image.ref}'"
    return f"<{style} of {what} ({digest})>"
