"""Editing one frame of a large project, side by side with the no-op fast path.

    python benchmarks/edit_one.py                 # 10,000 + 1 frames, median of 5
    python benchmarks/edit_one.py --before /tmp/old   # also time another copy of nbpipe

Each copy is timed cold (every command a fresh interpreter, as by default) and warm
(NBPIPE_WARM=1: a server that imported nbpipe once forks each command; started before the
timing, in a runtime folder of the benchmark's own, and stopped after).

A matrix of --frames tiles and one more target, `hero`, on the preview backend, built once.
Then, each run: the no-op build (nothing changed: the fast path), and a build after an edit of
hero's prompt (one frame renders, the other 10,000 are planned and found fresh), each a fresh
process. The goal of issue 26: the edit within 3x the no-op.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _compare import arguments, code_env
from noop import MANIFEST, shape

os.environ.setdefault("NBPIPE_MAX_FRAMES", "10000000")


def _build(root: Path, code: str | None, warm: dict[str, str] | None = None) -> float:
    env = {**code_env(code), **(warm or {"NBPIPE_WARM": "0"})}
    start = time.perf_counter()
    # cwd: `python -m` puts the working folder first on sys.path, before PYTHONPATH
    subprocess.run([sys.executable, "-m", "nbpipe", "-C", str(root), "build"], check=True,
                   stdout=subprocess.DEVNULL, env=env, cwd=root)
    return time.perf_counter() - start


def _serving(root: Path, code: str | None, warm: dict[str, str]) -> None:
    """A warm server for this copy is listening (the first warm command starts it)."""
    folder = Path(warm["XDG_RUNTIME_DIR"]) / "nbpipe"
    env = {**code_env(code), **warm, "NBPIPE_EXPLAIN": "1"}
    for _ in range(600):
        done = subprocess.run([sys.executable, "-m", "nbpipe", "--version"], env=env, cwd=root,
                              capture_output=True, text=True)
        if "warm server's process" in done.stderr:
            return
        time.sleep(0.1)
    raise SystemExit(f"no warm server came up in {folder}")


def _stop(folder: Path) -> None:
    for lock in (folder / "nbpipe").glob("*.lock"):
        text = lock.read_text().strip()
        if text.isdigit():
            try:
                os.kill(int(text), signal.SIGTERM)
            except ProcessLookupError:
                pass


def main() -> None:
    args = arguments(__doc__, frames=10000, runs=5)
    base = Path(tempfile.mkdtemp(prefix="nbpipe-edit-"))
    try:
        root = base / "project"
        root.mkdir()
        a, b = shape(args.frames)
        manifest = root / "nbpipe.yaml"
        manifest.write_text(MANIFEST.format(a=", ".join(a), b=", ".join(b)) +
                            '  hero:\n    prompt: "a hero tile, version 0"\n')
        subprocess.run([sys.executable, "-m", "nbpipe", "-C", str(root), "build", "-j", "4"],
                       check=True, stdout=subprocess.DEVNULL)
        codes = {"nbpipe": None, **({"--before": args.before} if args.before else {})}
        warm = {"NBPIPE_WARM": "1", "XDG_RUNTIME_DIR": str(base / "run")}
        (base / "run").mkdir(mode=0o700)
        modes = {"cold": None, "warm": warm}
        times: dict[str, list[float]] = {}
        edit = 0
        for _ in range(args.runs):
            for name, code in codes.items():
                for mode, env in modes.items():
                    if env is not None:
                        _serving(root, code, env)
                    _build(root, code, env)  # whatever the last edit left, settled
                    times.setdefault(f"{name} {mode}: no-op", []).append(
                        _build(root, code, env))
                    edit += 1
                    manifest.write_text(re.sub(r"version \d+", f"version {edit}",
                                               manifest.read_text()))
                    times.setdefault(f"{name} {mode}: one frame edited", []).append(
                        _build(root, code, env))
        _stop(base / "run")
        print(f"{args.frames + 1:,} frames, median of {args.runs}; x: ÷ the cold no-op (the "
              "fast path) of the same copy (goal <= 3 for the edit):")
        for name, walls in times.items():
            noop = statistics.median(times[name.split()[0] + " cold: no-op"])
            wall = statistics.median(walls)
            print(f"  {name:<34} {wall * 1000:7.0f} ms  {wall / noop:5.2f}x")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
