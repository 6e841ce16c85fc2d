"""How fast `nbpipe review` writes the page of a big pull request.

    python benchmarks/review_scale.py      # 1,000 frames, 100 changed, preview backend

main (1,000 frames: 900 tiles and 100 heroes) is built and committed in a throwaway git
repository; then the heroes' prompt changes and they are built (100 before/after pairs). `review` runs once to make the thumbnails, then is timed (median of 3) with
the thumbnails cached, in both the folder and the --self-contained form, and `diff` beside it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _tiles import PREVIEW_SMALL


def manifest(frames: int, changed: int, hero: str) -> str:
    tiles = ", ".join(f"t{i}" for i in range(frames - changed))
    heroes = ", ".join(f"h{i}" for i in range(changed))
    return (f"version: 1\ndefaults: {PREVIEW_SMALL}\ntargets:\n"
            f"  tile: {{prompt: \"tile {{{{ v }}}}\", matrix: {{v: [{tiles}]}}}}\n"
            f"  hero: {{prompt: \"{hero} {{{{ v }}}}\", matrix: {{v: [{heroes}]}}}}\n")


def timed(command: list[str], runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--changed", type=int, default=100)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="nbpipe-review-"))
    env = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@example.com",
           "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@example.com"}
    try:
        def git(*a: str) -> None:
            subprocess.run(["git", "-C", str(root), *a], check=True, env=env,
                           stdout=subprocess.DEVNULL)

        (root / "nbpipe.yaml").write_text(manifest(args.frames, args.changed, "hero"))
        (root / ".gitignore").write_text(".nbpipe/\nout/review/\n")
        nbpipe = [sys.executable, "-m", "nbpipe", "-C", str(root)]
        git("init", "-q", "-b", "main")
        subprocess.run([*nbpipe, "build", "-j", "4"], check=True, stdout=subprocess.DEVNULL)
        git("add", ".")
        git("commit", "-q", "-m", "main")
        (root / "nbpipe.yaml").write_text(manifest(args.frames, args.changed, "hero at dusk"))
        subprocess.run([*nbpipe, "build", "-j", "4"], check=True, stdout=subprocess.DEVNULL)
        subprocess.run([*nbpipe, "review", "main"], check=True, stdout=subprocess.DEVNULL)
        subprocess.run([*nbpipe, "review", "main", "--self-contained", "-o", "out/review-one"],
                       check=True, stdout=subprocess.DEVNULL)
        folder = timed([*nbpipe, "review", "main"])
        single = timed([*nbpipe, "review", "main", "--self-contained", "-o", "out/review-one"])
        diff = timed([*nbpipe, "diff", "main"])
        size = (root / "out" / "review-one" / "index.html").stat().st_size
        print(f"review of {args.frames} frames, {args.changed} changed, thumbnails cached, "
              f"median of 3:\n"
              f"  review (folder)           {folder:.2f} s\n"
              f"  review --self-contained   {single:.2f} s  ({size / 2**20:.1f} MiB page)\n"
              f"  diff                      {diff:.2f} s")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
