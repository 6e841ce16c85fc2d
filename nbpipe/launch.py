"""The process entry point: a no-op `nbpipe build` is answered before the CLI library loads.

`nbpipe build` with nothing changed is the command CI and editors run most, and its answer
should cost little more than the interpreter's start; importing click and the command
definitions costs about as much as the check itself. So the plainest command lines,
`[-C DIR] build [--check] [--json]`, try the fast path (engine/noop.py) here. Anything else, and
any doubt (an unknown flag, a directory that is not one, no standard output, the check saying
no or failing), goes to the full CLI, which gives the same answer for these command lines by
the same function, and says any error in its own words and exit codes.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from nbpipe.backends.names import NAMES

FLAGS = {"--check": "check", "--json": "as_json"}
BACKENDS = NAMES  # the built-in backends (registry.names() adds installed ones): --backend


def cache_dir(root: Path) -> Path:
    """The local cache: $NBPIPE_CACHE_DIR (shared by projects), else the project's .nbpipe/.
    Here, not in cli.py, so the early path needs no click; cli.py adds its check."""
    shared = os.environ.get("NBPIPE_CACHE_DIR")
    return Path(shared) if shared else root / ".nbpipe"


def plain_build(argv: list[str]) -> tuple[Path, dict] | None:
    """(project directory, flags) when argv is a plain no-argument build, else None."""
    args = list(argv)
    root = Path(".")
    if args[:1] == ["-C"] and len(args) >= 2:
        root, args = Path(args[1]), args[2:]
    if args[:1] != ["build"] or len(set(args[1:])) != len(args[1:]):
        return None
    if any(arg not in FLAGS for arg in args[1:]):
        return None
    return root, {name: flag in args for flag, name in FLAGS.items()}


def early_summary(argv: list[str]) -> str | None:
    """What a provably fresh plain build prints, or None: the CLI is to answer."""
    plain = plain_build(argv)
    backend = os.environ.get("NBPIPE_BACKEND") or None
    if plain is None or (backend is not None and backend not in BACKENDS):
        return None
    root, flags = plain
    if not os.path.isdir(root):
        return None
    from nbpipe.engine.noop import answer

    try:
        return answer(root, cache_dir(root), backend, os.environ.get("NBPIPE_PROFILE") or None,
                      **flags)
    except Exception:
        return None


def fast_noop(argv: list[str]) -> int | None:
    """The exit code of a provably fresh plain build (after printing its summary), or None."""
    if sys.stdout is None:  # started with no standard output: click knows what to do
        return None
    summary = early_summary(argv)
    if summary is None:
        return None
    sys.stdout.write(summary + "\n")
    sys.stdout.flush()
    return 0


def entry() -> None:
    """The console script and `python -m nbpipe`: the early answer, else the CLI's."""
    try:
        from nbpipe import interrupts  # (importing `signal` takes a while: a Ctrl-C may land)

        interrupts.install()
        code = fast_noop(sys.argv[1:])
        if code is None:
            from nbpipe.cli import main

            code = main()
    except KeyboardInterrupt:  # Ctrl-C before the CLI's handler was in place
        sys.stderr.write("interrupted\n")
        code = 130
    except BrokenPipeError:
        # Exit as the CLI does (click exits 1): the answer never reached its reader, and a
        # gate piped into `head` must not pass by losing its output. Stdout goes to devnull
        # so the interpreter's last flush does not complain a second time.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 1
    sys.exit(code)
