"""What the side-by-side benchmarks share (edit_one, restore_local, remote): the command line
that names another copy of nbpipe to time beside this one, and the environment each runs in."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping

# An installed nbpipe runs from bytecode: where writing it is turned off (this machine's
# environment), every run would time compiling nbpipe's own sources, which no user pays.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)


def arguments(doc: str, frames: int, runs: int) -> argparse.Namespace:
    """--frames, --runs and --before (a folder holding another nbpipe package)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--frames", type=int, default=frames)
    parser.add_argument("--runs", type=int, default=runs)
    parser.add_argument("--before", help="a folder holding another nbpipe package (an earlier "
                        "commit's, from `git archive`), timed the same way in the same run")
    return parser.parse_args()


def code_env(code: str | None, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment that runs the nbpipe in folder `code` (None: this checkout's). Run it
    with cwd in the project: `python -m` puts the working folder first on sys.path."""
    env = dict(os.environ if base is None else base)
    if code:
        env["PYTHONPATH"] = code
    return env
