"""How planning scales with frames: a generated N×M matrix manifest, planned end to end.

    python benchmarks/plan_scale.py            # 1k, 10k, 100k frames, median of 5 runs each

Reports the wall time of `nbpipe plan --json` as a fresh process (what a user waits for) and
of the in-process load+expand+resolve (what the code costs), plus µs per frame, so linearity
is visible at a glance. The issue's goal: 10,000 frames in under 1.5 s wall.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Past the 100,000 frames a manifest may ask for: the runner's choice (see SECURITY.md).
os.environ.setdefault("NBPIPE_MAX_FRAMES", "10000000")

SIZES = [(10, 100), (100, 100), (100, 1000)]  # 1k, 10k, 100k frames
RUNS = 5

MANIFEST = """\
version: 1
max_frames: 200000
defaults: {{backend: hiapi, model: Nano-Banana-2, resolution: 2K, aspect_ratio: "1:1"}}
templates:
  product:
    task: generate_image
    subject: {{type: product, name: "{{{{ name }}}}", color: "{{{{ color }}}}", size: "{{{{ size }}}}"}}
    style: {{primary: studio photorealistic, lighting: "softbox key light, fill light"}}
    environment: {{background: solid white cyc wall}}
    camera: {{angle: eye-level, lens: 85mm f/2.0}}
    negative_prompt: "text, watermark"
targets:
  shoe:
    template: product
    vars: {{name: running shoe}}
    matrix:
      color: [{colors}]
      size: [{sizes}]
"""


def write_project(root: Path, rows: int, cols: int) -> None:
    colors = ", ".join(f"c{i}" for i in range(rows))
    sizes = ", ".join(f"s{j}" for j in range(cols))
    (root / "nbpipe.yaml").write_text(MANIFEST.format(colors=colors, sizes=sizes))


def time_cli(root: Path) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "nbpipe", "-C", str(root), "plan", "--json"],
                   check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def time_inprocess(root: Path) -> float:
    from nbpipe.plan.planner import make_plan, open_project

    start = time.perf_counter()
    make_plan(open_project(root).frames.values())
    return time.perf_counter() - start


def main() -> None:
    print(f"{'frames':>8}  {'cli wall (s)':>12}  {'in-process (s)':>14}  {'µs/frame':>9}")
    for rows, cols in SIZES:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            write_project(root, rows, cols)
            cli = statistics.median(time_cli(root) for _ in range(RUNS))
            inproc = statistics.median(time_inprocess(root) for _ in range(RUNS))
            frames = rows * cols
            print(f"{frames:>8,}  {cli:>12.3f}  {inproc:>14.3f}  {inproc / frames * 1e6:>9.1f}")


if __name__ == "__main__":
    main()
