"""Every setting nbpipe takes from the environment, read once at the edge (launch, cli).

One parser per kind (number, date, flag, choice); a bad value is a usage error (exit 2) that
names the variable and what it takes, whichever command runs and whatever reads the field. An
empty variable is an unset one. API keys are `Secret`s: their text is never in a repr, a log
line or the no-op fingerprint.

`Settings` is a NamedTuple, not a dataclass, and errors.py is imported only to say an error:
the no-op fast path makes one, and importing dataclasses (it pulls in inspect) costs about as
much as that whole check's reading of files.
"""

# No `from __future__ import annotations`: NamedTuple would compile each field's annotation
# string (a ForwardRef) at import, which the fast path pays for.
import datetime as dt
import math
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, TypeVar

from nbpipe.backends.names import NAMES

if TYPE_CHECKING:
    from nbpipe.errors import UsageError

BACKENDS = NAMES  # --backend's choices and NBPIPE_BACKEND's: the built-in backends
# --lane's choices and NBPIPE_LANE's, standard first (the catalogue says which model takes which)
LANES = ("standard", "batch", "flex")
FLAGS = {**dict.fromkeys(("1", "true", "yes", "on"), True),
         **dict.fromkeys(("0", "false", "no", "off"), False)}
T = TypeVar("T")


class Secret:
    """An API key: `reveal()` gives its text; printing or formatting it gives `***`."""

    __slots__ = ("_text",)
    _text: str

    def __init__(self, text: str):
        self._text = text

    def reveal(self) -> str:
        return self._text

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._text == self._text

    def __hash__(self) -> int:
        return hash(self._text)


class Shard(NamedTuple):
    """`--shard K/N` (or NBPIPE_SHARD): the K-th of N shares of a build's frames, 1-based as
    Playwright spells it. Which frames a share holds: nbpipe/plan/shards.py."""

    number: int  # K, from 1
    total: int  # N

    def __str__(self) -> str:
        return f"{self.number}/{self.total}"


SHARD_WANTS = "must be K/N, whole numbers with 1 <= K <= N (like 2/3)"


def parse_shard(raw: str) -> Shard | None:
    """The one reader of K/N; None for anything else (0/3, 4/3, 1/0, -1/2, 1.5/2, 2)."""
    k, slash, n = raw.strip().partition("/")
    parts = (k.strip(), n.strip())
    # ASCII digits only (int() takes other scripts' digits), and few: a count past a million
    # shards is no matrix a CI runs, and a long run of digits is slow to convert
    if not slash or not all(p.isascii() and p.isdigit() and len(p) <= 6 for p in parts):
        return None
    index, count = int(parts[0]), int(parts[1])
    return Shard(index, count) if 1 <= index <= count else None


class Settings(NamedTuple):
    """The environment, parsed. None for a backend's own default (HiAPI and Gemini differ)."""

    # where and what: the edge (launch, cli) and the planner
    cache_dir: Path | None = None  # NBPIPE_CACHE_DIR: a cache shared by projects
    backend: str | None = None  # NBPIPE_BACKEND: --backend's default
    profile: str | None = None  # NBPIPE_PROFILE: --profile's default
    lane: str | None = None  # NBPIPE_LANE: --lane's default (None: the manifest's lanes)
    remote: str | None = None  # NBPIPE_REMOTE: over the manifest's cache.remote
    remote_endpoint: str | None = None  # NBPIPE_REMOTE_ENDPOINT: over cache.endpoint_url
    max_frames: int | None = None  # NBPIPE_MAX_FRAMES: how far a manifest may raise max_frames
    today: dt.date | None = None  # NBPIPE_TODAY: the date lifecycles are judged on
    explain: bool = False  # NBPIPE_EXPLAIN: say on stderr why the no-op fast path missed
    shard: Shard | None = None  # NBPIPE_SHARD: --shard's default (build, plan)
    warm: bool = False  # NBPIPE_WARM: commands run by a warm server's child (nbpipe/warm)
    warm_idle: float = 900.0  # NBPIPE_WARM_IDLE: a warm server exits after this long unused
    # maintenance and the engine
    gc_grace: float = 3600.0  # NBPIPE_GC_GRACE: a blob younger than this is never collected
    recover_timeout: float = 300.0  # NBPIPE_RECOVER_TIMEOUT: collecting what builds left
    interrupt_grace: float = 10.0  # NBPIPE_INTERRUPT_GRACE: after Ctrl-C, for tasks in flight
    batch_poll_interval: float = 30.0  # NBPIPE_BATCH_POLL_INTERVAL: seconds between job polls
    batch_settle: float = 600.0  # NBPIPE_BATCH_SETTLE: how long an unlisted job may still show
    claim_lease: float = 60.0  # NBPIPE_CLAIM_LEASE: a claim on the remote lapses unrenewed
    # backends
    hiapi_key: Secret | None = None  # HIAPI_API_KEY, else HIAPI_TOKEN
    gemini_key: Secret | None = None  # GEMINI_API_KEY, else GOOGLE_API_KEY
    hiapi_base_url: str | None = None  # HIAPI_BASE_URL
    gemini_base_url: str | None = None  # GOOGLE_GEMINI_BASE_URL
    gemini_api_version: str | None = None  # NBPIPE_GEMINI_API_VERSION
    openai_key: Secret | None = None  # OPENAI_API_KEY
    openai_base_url: str | None = None  # OPENAI_BASE_URL, as the official SDK reads it
    pricing_url: str | None = None  # NBPIPE_PRICING_URL: HiAPI's public price list
    hiapi_poll_delay: float = 5.0  # NBPIPE_HIAPI_POLL_DELAY
    hiapi_poll_interval: float = 3.0  # NBPIPE_HIAPI_POLL_INTERVAL
    hiapi_timeout: float = 600.0  # NBPIPE_HIAPI_TIMEOUT: one task, then resumed next build
    fal_key: Secret | None = None  # FAL_KEY
    fal_base_url: str | None = None  # FAL_BASE_URL: the queue's root (https://queue.fal.run)
    fal_poll_interval: float = 1.0  # NBPIPE_FAL_POLL_INTERVAL
    fal_timeout: float = 600.0  # NBPIPE_FAL_TIMEOUT: one request, then collected next build
    call_timeout: float | None = None  # NBPIPE_CALL_TIMEOUT: HiAPI 60 s, Gemini 300 s
    download_timeout: float = 300.0  # NBPIPE_DOWNLOAD_TIMEOUT
    max_image_bytes: int = 64 << 20  # NBPIPE_MAX_IMAGE_BYTES
    retry_base: float = 1.0  # NBPIPE_RETRY_BASE
    retry_deadline: float = 300.0  # NBPIPE_RETRY_DEADLINE

    def planned(self) -> dict[str, object]:
        """What the planner reads from here, for the no-op fingerprint: a build with other
        values may plan otherwise (a remote lets HiAPI take file inputs; a lower frame limit is
        an error). Backend and profile are the build's options, fingerprinted beside it."""
        return {"NBPIPE_REMOTE": self.remote, "NBPIPE_REMOTE_ENDPOINT": self.remote_endpoint,
                "NBPIPE_MAX_FRAMES": self.max_frames}

    @staticmethod
    def from_env(env: Mapping[str, str] | None = None) -> "Settings":
        """The settings in `env` (default: this process's environment); UsageError names the
        first variable with a bad value."""
        read = _Reader(os.environ if env is None else env)
        return Settings(
            cache_dir=read.path("NBPIPE_CACHE_DIR"),
            backend=read.backend("NBPIPE_BACKEND"),
            profile=read.text("NBPIPE_PROFILE"),
            lane=read.choice("NBPIPE_LANE", LANES),
            remote=read.text("NBPIPE_REMOTE"),
            remote_endpoint=read.text("NBPIPE_REMOTE_ENDPOINT"),
            max_frames=read.whole("NBPIPE_MAX_FRAMES", least=1),
            today=read.date("NBPIPE_TODAY"),
            explain=read.flag("NBPIPE_EXPLAIN"),
            shard=read.shard("NBPIPE_SHARD"),
            warm=read.flag("NBPIPE_WARM"),
            warm_idle=read.number("NBPIPE_WARM_IDLE", 900.0),
            gc_grace=read.number("NBPIPE_GC_GRACE", 3600.0),
            recover_timeout=read.number("NBPIPE_RECOVER_TIMEOUT", 300.0),
            interrupt_grace=read.number("NBPIPE_INTERRUPT_GRACE", 10.0),
            batch_poll_interval=read.number("NBPIPE_BATCH_POLL_INTERVAL", 30.0),
            batch_settle=read.number("NBPIPE_BATCH_SETTLE", 600.0),
            claim_lease=read.number("NBPIPE_CLAIM_LEASE", 60.0),
            hiapi_key=read.secret("HIAPI_API_KEY", "HIAPI_TOKEN"),
            gemini_key=read.secret("GEMINI_API_KEY", "GOOGLE_API_KEY"),
            hiapi_base_url=read.text("HIAPI_BASE_URL"),
            gemini_base_url=read.text("GOOGLE_GEMINI_BASE_URL"),
            gemini_api_version=read.text("NBPIPE_GEMINI_API_VERSION"),
            openai_key=read.secret("OPENAI_API_KEY"),
            openai_base_url=read.text("OPENAI_BASE_URL"),
            pricing_url=read.text("NBPIPE_PRICING_URL"),
            hiapi_poll_delay=read.number("NBPIPE_HIAPI_POLL_DELAY", 5.0),
            hiapi_poll_interval=read.number("NBPIPE_HIAPI_POLL_INTERVAL", 3.0),
            hiapi_timeout=read.number("NBPIPE_HIAPI_TIMEOUT", 600.0),
            fal_key=read.secret("FAL_KEY"),
            fal_base_url=read.text("FAL_BASE_URL"),
            fal_poll_interval=read.number("NBPIPE_FAL_POLL_INTERVAL", 1.0),
            fal_timeout=read.number("NBPIPE_FAL_TIMEOUT", 600.0),
            call_timeout=read.maybe_number("NBPIPE_CALL_TIMEOUT"),
            download_timeout=read.number("NBPIPE_DOWNLOAD_TIMEOUT", 300.0),
            max_image_bytes=read.whole("NBPIPE_MAX_IMAGE_BYTES", least=1) or 64 << 20,
            retry_base=read.number("NBPIPE_RETRY_BASE", 1.0),
            retry_deadline=read.number("NBPIPE_RETRY_DEADLINE", 300.0),
        )


class _Reader:
    """The one parser of each kind."""

    __slots__ = ("env",)
    env: Mapping[str, str]

    def __init__(self, env: Mapping[str, str]):
        self.env = env

    def text(self, name: str) -> str | None:
        return self.env.get(name) or None

    def path(self, name: str) -> Path | None:
        value = self.text(name)
        return Path(value) if value else None

    def secret(self, *names: str) -> Secret | None:
        value = next((self.env[name] for name in names if self.env.get(name)), None)
        return Secret(value) if value else None

    def _parsed(self, name: str, parse: Callable[[str], T | None], wants: str) -> T | None:
        """None when unset; a usage error naming the variable when `parse` refuses it."""
        raw = self.text(name)
        if raw is None:
            return None
        value = parse(raw.strip())
        if value is None:
            raise _usage(f"{name} {wants}, not {raw!r}", f"unset {name} for the default")
        return value

    def number(self, name: str, default: float) -> float:
        """A finite number of 0 or more (a NaN timeout would never expire)."""
        value = self.maybe_number(name)
        return default if value is None else value

    def maybe_number(self, name: str) -> float | None:
        return self._parsed(name, _finite, "must be a number of 0 or more")

    def whole(self, name: str, least: int) -> int | None:
        def parse(raw: str) -> int | None:
            value = _finite(raw)
            return int(value) if value is not None and value == int(value) and value >= least \
                else None
        return self._parsed(name, parse, f"must be a whole number of {least} or more")

    def date(self, name: str) -> dt.date | None:
        raw = self.text(name)
        if raw is None:
            return None
        try:
            return dt.date.fromisoformat(raw)
        except ValueError:  # the message the catalogue has always given
            raise _usage(f"{name}={raw!r} is not a date", "use YYYY-MM-DD") from None

    def flag(self, name: str) -> bool:
        said = self._parsed(name, lambda raw: FLAGS.get(raw.lower()), "must be 1 or 0")
        return bool(said)

    def shard(self, name: str) -> Shard | None:
        return self._parsed(name, parse_shard, SHARD_WANTS)

    def choice(self, name: str, choices: tuple[str, ...]) -> str | None:
        return self._parsed(name, lambda raw: raw if raw in choices else None,
                            f"must be one of {', '.join(choices)}")

    def backend(self, name: str) -> str | None:
        """A backend's name: a built-in one costs nothing; any other is looked for among those
        installed packages register (entry points, read only then)."""
        raw = self.text(name)
        if raw is None or raw.strip() in BACKENDS:
            return self.choice(name, BACKENDS)
        from nbpipe.backends.registry import names

        return self.choice(name, names())


def _usage(message: str, hint: str) -> "UsageError":
    from nbpipe.errors import UsageError

    return UsageError(message, hint)


def _finite(raw: str) -> float | None:
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


_installed: list[Settings] = []


@contextmanager
def using(settings: Settings) -> Iterator[Settings]:
    """Make `settings` the ones `current()` gives while a command runs (the edge installs them,
    so code below that is not handed them reads the same values, parsed once)."""
    _installed.append(settings)
    try:
        yield settings
    finally:
        _installed.pop()


def current() -> Settings:
    """The settings of the command running; outside one (a library call, a test), the
    environment's as it is now."""
    return _installed[-1] if _installed else Settings.from_env()
