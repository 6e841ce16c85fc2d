"""The process entry point: a no-op `nbpipe build` is answered before the CLI library loads.

`nbpipe build` with nothing changed is the command CI and editors run most, and its answer
should cost little more than the interpreter's start; importing click and the command
definitions costs about as much as the check itself. So the plainest command lines,
`[-C DIR] build [--check] [--json]`, try the fast path (engine/noop.py) here. Anything else, and
any doubt (an unknown flag, a directory that is not one, no standard output, the check saying
no or failing), goes to the full CLI, which gives the same answer for these command lines by
the same function, and says any error in its own words and exit codes. What was learnt on the
way (the parsed settings, the check's verdict) goes with it (`Early`): a miss is not checked
twice, nor the environment read twice.
"""

from __future__ import annotations

import gc
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from nbpipe.settings import BACKENDS, Settings

if TYPE_CHECKING:
    from nbpipe.engine.noop import Verdict

__all__ = ["BACKENDS", "Early", "cache_dir", "collect_less", "entry", "fast_noop", "plain_build",
           "probe", "project_root", "run"]
FLAGS = {"--check": "check", "--json": "as_json"}
MANIFEST = "nbpipe.yaml"


def project_root(directory: Path | None = None) -> Path:
    """`-C DIR` as given; else, as git finds .git, the nearest of the working directory and its
    ancestors that holds nbpipe.yaml, named relative to here ('.', '..', '../..': what messages
    print stays short); '.' when none does (`init` starts one there; others say none is).
    Here, with no imports, so the early path finds the project as the CLI does, for a few stats."""
    if directory is not None:
        return directory
    try:
        here = Path.cwd()
    except OSError:  # the working directory was removed: the CLI says so in its words
        return Path(".")
    for depth, folder in enumerate((here, *here.parents)):
        if os.path.isfile(os.path.join(folder, MANIFEST)):
            return Path(*[".."] * depth) if depth else Path(".")
    return Path(".")


def cache_dir(root: Path, settings: Settings) -> Path:
    """The local cache: $NBPIPE_CACHE_DIR (shared by projects), else the project's .nbpipe/.
    Here, not in the CLI, so the early path needs no click; the CLI adds its check."""
    return settings.cache_dir or root / ".nbpipe"


def plain_build(argv: list[str]) -> tuple[Path, dict[str, bool]] | None:
    """(project directory, flags) when argv is a plain no-argument build, else None."""
    args = list(argv)
    directory = None
    if args[:1] == ["-C"] and len(args) >= 2:
        directory, args = Path(args[1]), args[2:]
    if args[:1] != ["build"] or len(set(args[1:])) != len(args[1:]):
        return None
    if any(arg not in FLAGS for arg in args[1:]):
        return None
    return project_root(directory), {name: flag in args for flag, name in FLAGS.items()}


class Early(NamedTuple):
    """What the early path found, handed to the CLI so nothing is read or checked twice: the
    summary to print (a provably fresh build), the settings it parsed, the check's verdict."""

    summary: str | None = None
    settings: Settings | None = None
    verdict: Verdict | None = None


def probe(argv: list[str], settings: Settings | None = None) -> Early:
    """The early answer to argv, or as much as was learnt on the way to none. `settings`: the
    environment, if the entry point already parsed it."""
    plain = plain_build(argv)
    if plain is None:
        return Early()
    settings = settings or _settings()
    if settings is None:
        return Early()
    root, flags = plain
    if not os.path.isdir(root) or settings.shard is not None:  # NBPIPE_SHARD: a share, planned
        return Early(settings=settings)
    from nbpipe.engine.noop import noop_summary, verdict
    from nbpipe.settings import using

    try:
        with using(settings):
            found = verdict(root, cache_dir(root, settings), settings.backend, settings.profile,
                            settings)
    except Exception:  # the CLI runs the check again and says what went wrong
        return Early(settings=settings)
    if found.fresh is None:
        return Early(None, settings, found)
    return Early(noop_summary(found.fresh, **flags), settings, found)


def fast_noop(argv: list[str], found: Early | None = None) -> int | None:
    """The exit code of a provably fresh plain build (after printing its summary), or None."""
    if sys.stdout is None:  # started with no standard output: click knows what to do
        return None
    summary = (found or probe(argv)).summary
    if summary is None:
        return None
    sys.stdout.write(summary + "\n")
    sys.stdout.flush()
    return 0


def _tolerant_streams() -> None:
    """A console that cannot encode a character (ASCII, cp1252) shows it escaped: a frame
    named in another script must not end a paid build with exit 3 while printing its line."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            try:
                reconfigure(errors="backslashreplace")
            except (ValueError, OSError):  # a stream that cannot change its error handler
                pass


def collect_less() -> None:
    """Fewer passes of the cyclic garbage collector on the CLI's path. Planning makes a few
    objects a frame and keeps nearly all of them to the end, so at the default pace (a pass per
    700 new objects, a full pass whenever the heap grew by a quarter) the collector took a
    tenth of a 10,000-frame build and found next to nothing to free. What the imports made is
    never freed: frozen, it is left out of every pass."""
    gc.freeze()
    gc.set_threshold(50_000, 20, 10)


def _settings() -> Settings | None:
    try:
        return Settings.from_env()
    except Exception:  # a bad variable: the CLI says so in its words
        return None


def entry() -> None:
    """The console script and `python -m nbpipe`: a warm server's child runs the command when
    NBPIPE_WARM asks for one (nbpipe/warm); else it runs here."""
    from nbpipe import interrupts  # (importing `signal` takes a while: a Ctrl-C may land)

    argv = sys.argv[1:]
    try:
        interrupts.install()
        _tolerant_streams()
        settings = _settings()
        code = _warm(argv, settings) if settings is not None and settings.warm else None
    except KeyboardInterrupt:  # Ctrl-C before the command was handed over
        sys.stderr.write("interrupted\n")
        code = 130
    sys.exit(_run(argv, settings) if code is None else code)


def _warm(argv: list[str], settings: Settings) -> int | None:
    """The exit code of the command run by a warm server's child, or None to run it here."""
    from nbpipe.warm.client import run as run_warm

    return run_warm(argv, settings.warm_idle, settings.explain)


def run(argv: list[str]) -> int:
    """The exit code of the command argv, run in this process as entry() runs it (a warm
    server's child takes its caller's place, then this)."""
    from nbpipe import interrupts

    interrupts.install()
    _tolerant_streams()
    return _run(argv, None)


def _run(argv: list[str], settings: Settings | None) -> int:
    """The early answer, else the CLI's."""
    try:
        found = probe(argv, settings) if sys.stdout is not None else Early()
        code = fast_noop(argv, found)
        if code is None:
            from nbpipe.cli import main

            collect_less()
            code = main(argv, found)
    except KeyboardInterrupt:  # Ctrl-C before the CLI's handler was in place
        sys.stderr.write("interrupted\n")
        code = 130
    except BrokenPipeError:
        # Exit as the CLI does (click exits 1): the answer never reached its reader, and a
        # gate piped into `head` must not pass by losing its output. Stdout goes to devnull
        # so the interpreter's last flush does not complain a second time.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 1
    return code
