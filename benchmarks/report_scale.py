"""How fast `nbpipe report` is on a big project, the first time and after a small change.

    python benchmarks/report_scale.py          # 1,000 frames on the preview backend
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _tiles import PREVIEW_SMALL, tiles


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1000)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="nbpipe-report-"))
    try:
        manifest = tiles(args.frames, PREVIEW_SMALL)
        (root / "nbpipe.yaml").write_text(manifest)
        nbpipe = [sys.executable, "-m", "nbpipe", "-C", str(root)]
        subprocess.run([*nbpipe, "build", "-j", "4"], check=True, stdout=subprocess.DEVNULL)
        timings = []
        for change in (None, "v0,", "v1,"):
            if change:  # one frame changes: one new image, 999 thumbnails reused
                text = (root / "nbpipe.yaml").read_text().replace(change, f"{change[:-1]}x,", 1)
                (root / "nbpipe.yaml").write_text(text)
                subprocess.run([*nbpipe, "build"], check=True, stdout=subprocess.DEVNULL)
            start = time.perf_counter()
            subprocess.run([*nbpipe, "report"], check=True, stdout=subprocess.DEVNULL)
            timings.append(time.perf_counter() - start)
        print(f"report of {args.frames} frames: first {timings[0]:.1f} s (all thumbnails made); "
              f"after a one-frame change {min(timings[1:]):.1f} s")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
