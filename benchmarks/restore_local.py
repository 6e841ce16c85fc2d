"""Restoring deleted outputs from the local cache, side by side with `cp -r` of their blobs.

    python benchmarks/restore_local.py                # 2,000 frames, median of 5
    python benchmarks/restore_local.py --before /tmp/old   # also time another copy of nbpipe

A project on the preview backend is built once; then, each run, its outputs are deleted and
`nbpipe build` restores every one from the local cache (read, verified by digest, written
atomically, made durable before the lock is saved), and `cp -r` copies the same blobs to a
fresh folder, timed alone and again followed by `sync` (nbpipe's restores are durable when it
returns). Each run times all three, in alternation, as fresh processes; the goal (<= 4x) is
against the plain `cp -r`.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _compare import arguments, code_env
from _tiles import PREVIEW_SMALL, tiles


def _timed(cmd: list[str], cwd: Path, code: str | None = None) -> tuple[float, str]:
    """`code`: the folder holding the nbpipe package to run (None: this checkout's)."""
    env = code_env(code)
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True, env=env)
    return time.perf_counter() - start, done.stdout


def main() -> None:
    args = arguments(__doc__, frames=2000, runs=5)
    base = Path(tempfile.mkdtemp(prefix="nbpipe-restore-"))
    try:
        root = base / "project"
        root.mkdir()
        (root / "nbpipe.yaml").write_text(tiles(args.frames, PREVIEW_SMALL))
        nbpipe = [sys.executable, "-m", "nbpipe", "-C", str(root)]
        subprocess.run([*nbpipe, "build", "-j", "4"], check=True, stdout=subprocess.DEVNULL)
        blobs = root / ".nbpipe" / "blobs"
        size = sum(p.stat().st_size for p in blobs.rglob("*") if p.is_file())
        ours, before, copies, synced = [], [], [], []
        for run in range(args.runs):
            for code, times in ((None, ours), (args.before, before)):
                if times is before and not code:
                    continue
                shutil.rmtree(root / "out")
                os.sync()
                took, out = _timed([*nbpipe, "build", "--json"], root, code)
                summary = json.loads(out.splitlines()[-1])
                assert summary["restored"] == args.frames and summary["rendered"] == 0, summary
                times.append(took)
            for durable, times in ((False, copies), (True, synced)):
                os.sync()  # each copy starts with no one else's dirty pages to write
                dest = base / f"copy{run}"
                start = time.perf_counter()
                subprocess.run(["cp", "-r", str(blobs), str(dest)], check=True)
                if durable:
                    os.sync()
                times.append(time.perf_counter() - start)
                shutil.rmtree(dest)
            os.sync()
        nb, cp = statistics.median(ours), statistics.median(copies)
        cps = statistics.median(synced)
        print(f"local restore of {args.frames:,} outputs ({size / 1e6:.0f} MB), "
              f"median of {args.runs}:")
        print(f"  nbpipe build (restores)   {nb * 1000:8.0f} ms")
        if before:
            old = statistics.median(before)
            print(f"  --before (restores)       {old * 1000:8.0f} ms  ({old / cp:.2f}x cp -r)")
        print(f"  cp -r blobs               {cp * 1000:8.0f} ms")
        print(f"  cp -r blobs, then sync    {cps * 1000:8.0f} ms")
        print(f"  ratio to cp -r (goal <= 4) {nb / cp:7.2f}x")
        print(f"  ratio to cp -r + sync     {nb / cps:8.2f}x")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
