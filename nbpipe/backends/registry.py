"""One registry of backend specs: every fact about a provider the rest of nbpipe needs.

A provider is one module that defines `SPEC` (a `BackendSpec`) plus its models in the catalogue
data. The built-in ones are named in names.py (name → module), so their names cost no import
(the no-op fast path checks `--backend` against them); a spec is imported when first asked for.
A third-party package registers more through the entry-point group `nbpipe.backends`
(name = the backend's name, value = `package.module:SPEC`), read with importlib.metadata.

Lanes are how the engine talks to a provider, each with its journal protocol (DESIGN.md):
`call` (synchronous, not idempotent: the journal holds the exact body before sending; a lost
reply may be billed: announced, counted, never silently resent), `task` (an id to poll,
journalled the moment it is known and collected by any later build) and `batch` (many requests
under one job, journalled before it is created and found again by its name; engine/batches.py).
A provider's first lane is how a frame on the standard lane renders; `batch` is a lane a frame
may ask for (`lane: batch`).
A `task` lane's create is resent after a lost reply only where the provider makes that safe
(`BackendSpec.idempotent`: HiAPI's Idempotency-Key); where it cannot (fal's queue), a create
with no id known is treated as a call's lost reply (`unfindable`).
"""

from __future__ import annotations

import importlib
from collections import Counter
from collections.abc import Callable, Container, Iterable, Mapping, Sequence
from enum import StrEnum
from functools import cache
from typing import TYPE_CHECKING, Any, NamedTuple

from nbpipe.backends.names import BUILTIN, NAMES, installed

if TYPE_CHECKING:  # the specs' types only: importing them costs the provider modules

    from nbpipe.backends.base import Backend
    from nbpipe.backends.batch import Batches
    from nbpipe.plan.frame import Request
    from nbpipe.settings import Settings



class Lane(StrEnum):
    CALL = "call"  # one synchronous request; a lost reply may have been billed
    TASK = "task"  # an id to poll; resumable after a crash
    BATCH = "batch"  # many requests under one job id


class Inputs(StrEnum):
    """How input images travel."""

    INLINE = "inline"  # their bytes, in the request body
    URL = "url"  # URLs the provider fetches (nbpipe shares them from the remote cache)
    LOCAL = "local"  # nothing travels: rendered on this machine


def same_body(body: dict[str, object], lane: str) -> dict[str, object]:
    """A provider whose request names no lane: the body is the same on each."""
    return body


class BackendSpec(NamedTuple):  # not a dataclass: launch.py imports this module cheaply
    """A provider as nbpipe knows it. `open(jobs, rpm, settings)`: a ready backend, configured
    from the settings (UsageError when its key is missing); `describe(request, image
    stand-ins, media types)`: the exact body a build would send (the media types are each
    input's, by its bytes; a body that names none ignores them);
    `endpoint(model)`: what `show` says it calls. Default jobs come from the catalogue."""

    name: str
    lanes: tuple[Lane, ...]
    inputs: Inputs
    key_env: tuple[str, ...]  # the variables that may hold its API key, first wins
    base_url_env: str | None  # the variable that points nbpipe at another server
    payload_style: str  # what `show` prints where an image payload goes
    open: Callable[[int, int | None, Settings], Backend]
    describe: Callable[[Request, list[str], list[str] | None], dict[str, object]]
    endpoint: Callable[[str], str]
    paid: bool = True  # False: free (preview), nothing to collect or to count
    # whether a journalled create body is the one a build would send now for a request (byte
    # for byte, but for the inputs' URLs: each one of those this build would send for that
    # input, one container per input). Required of a `task` lane: without it a create whose
    # reply was lost is never resent, and its frame pays again. None: a body is never resent.
    would_send: Callable[[str, Request, Sequence[Container[str]]], bool] | None = None
    # A third-party backend's models, prices and limits: its entry in catalog.json's shape
    # (`backends.<name>`), merged into the catalogue; a built-in backend's live in catalog.json.
    catalog: Mapping[str, Any] | None = None
    # The batch lane's client over an opened backend (required of a spec that lists Lane.BATCH)
    batch: Callable[[Backend], Batches] | None = None
    # How the body of a call names its pricing lane (Gemini's flex: `serviceTier`), used both
    # when sending and by `show`, so what `show` prints is what is sent. The catalogue says
    # which lanes a model takes; a lane the body does not name leaves it as it is.
    on_lane: Callable[[dict[str, object], str], dict[str, object]] = same_body
    # Whether a create sent again after its reply was lost finds the request the first one
    # made (HiAPI's Idempotency-Key) instead of making, and billing, a new one. False (fal's
    # queue has no such key): a create whose id never came may have been billed and can never
    # be found again: it is announced, counted and closed, never resent (`unfindable`), so
    # `would_send` is not needed. A call lane resends nothing either way.
    idempotent: bool = True
    # Whether the provider bills a task that fails all the same. False (fal bills no failure
    # on its side, HiAPI no `fail`): a task still out when a build ends may yet fail and cost
    # nothing, so that build says its price as due and does not count it; the build that
    # collects its image counts it (`counted_on_landing`). True (the cautious default): it is
    # counted by the build that leaves it out. Only a `task` lane leaves tasks out.
    bills_failures: bool = True
    label: str = ""  # the service as messages name it ("OpenAI"); "" for its name

    @property
    def shown(self) -> str:
        """How messages name the provider."""
        return self.label or self.name

    @property
    def lane(self) -> Lane:
        """The lane a render goes by (the first the provider offers)."""
        return self.lanes[0]

    @property
    def resumable(self) -> bool:
        """Whether a paid request sent can be collected later instead of sent again."""
        return self.paid and self.lane is not Lane.CALL

    @property
    def unrepeatable(self) -> bool:
        """Whether a paid request sent is paid whatever happens to its reply (the call lane)."""
        return self.paid and self.lane is Lane.CALL

    @property
    def unfindable(self) -> bool:
        """Whether a paid create whose reply was lost (no id known) can never be found again,
        so may have been billed and is never resent: every call, and a `task` lane's create
        where the provider has no idempotency key (fal). Its journal entry holds the body it
        sent (a task lane) or only its intent (a call: nothing marks a call as not yet sent)."""
        return self.unrepeatable or (self.paid and self.lane is Lane.TASK and not self.idempotent)


    @property
    def counted_on_landing(self) -> bool:
        """Whether a task of this provider left out by a build is counted only once it lands
        (by the build that collects its image), not by the build that left it."""
        return self.resumable and self.lane is Lane.TASK and not self.bills_failures


def names() -> tuple[str, ...]:
    """Every backend's name: the built-in ones, then those of installed packages."""
    return NAMES + tuple(sorted(n for n in _plugins() if n not in BUILTIN))


@cache
def spec(name: str) -> BackendSpec:
    """The spec of backend `name` (KeyError if there is none; UsageError, naming the package,
    for a paid `task` lane with idempotent creates and no `would_send`)."""
    if name in BUILTIN:
        where = BUILTIN[name]
        found = importlib.import_module(where).SPEC
    else:
        point = _plugins()[name]
        where, found = point.value, point.load()
    if not isinstance(found, BackendSpec) or found.name != name:
        raise KeyError(f"{name}: not a backend spec")
    if found.paid and found.lane is Lane.TASK and found.idempotent and found.would_send is None:
        # without it a create whose reply was lost is never resent under its Idempotency-Key:
        # its frame pays for a new task, every time a build crashes mid-create
        from nbpipe.errors import UsageError

        raise UsageError(f"backend '{name}' of an installed package ({where}) cannot be "
                         "used: its lane is 'task' but its BackendSpec gives no would_send, "
                         "so a create whose reply was lost would be paid again",
                         "fix or uninstall that package")
    return found


def counted(backends: Iterable[str]) -> str:
    """'4 Gemini and 1 OpenAI': how many of each provider, as messages say it."""
    tally = Counter(spec(name).shown for name in backends)
    return " and ".join(f"{count} {label}" for label, count in sorted(tally.items()))


def resumable(name: str) -> bool:
    return spec(name).resumable


def unrepeatable(name: str) -> bool:
    return spec(name).unrepeatable


def unfindable(name: str) -> bool:
    return spec(name).unfindable


def counted_on_landing(name: str) -> bool:
    return spec(name).counted_on_landing


_plugins = installed  # the one lookup of installed backends (names.py)
