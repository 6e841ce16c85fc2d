"""How planning scales with frames: a generated N×M matrix manifest, planned end to end.

    python benchmarks/plan_scale.py            # 1k, 10k, 100k frames, median of 5 runs each

Reports the wall time of `nbpipe plan --json` as a fresh process (what a user waits for), its
peak RSS, and the in-process load+expand+resolve (what the code costs), plus µs per frame, so
linearity is visible at a glance. Goals: 10,000 frames in under 1.5 s wall; 100,000 frames
within 11x the wall of 10,000 and within 1 GiB of RSS (issue 26).
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


def time_cli(root: Path) -> tuple[float, float]:
    """(wall seconds, peak RSS in MiB) of one `nbpipe plan --json`."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "nbpipe", "-C", str(root), "plan", "--json"],
                            stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0, proc.returncode
    return time.perf_counter() - start, usage.ru_maxrss / 1024  # KiB on Linux


def time_inprocess(root: Path) -> float:
    from nbpipe.plan.planner import make_plan, open_project

    start = time.perf_counter()
    make_plan(open_project(root).frames.values())
    return time.perf_counter() - start


def main() -> None:
    print(f"{'frames':>8}  {'cli wall (s)':>12}  {'peak RSS (MiB)':>14}  {'in-process (s)':>14}"
          f"  {'µs/frame':>9}")
    walls = {}
    for rows, cols in SIZES:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            write_project(root, rows, cols)
            runs = [time_cli(root) for _ in range(RUNS)]
            cli = statistics.median(r[0] for r in runs)
            rss = max(r[1] for r in runs)
            inproc = statistics.median(time_inprocess(root) for _ in range(RUNS))
            frames = rows * cols
            walls[frames] = cli
            print(f"{frames:>8,}  {cli:>12.3f}  {rss:>14.0f}  {inproc:>14.3f}  "
                  f"{inproc / frames * 1e6:>9.1f}")
    if 10_000 in walls and 100_000 in walls:
        print(f"100,000 / 10,000 frames: {walls[100_000] / walls[10_000]:.1f}x (goal <= 11)")


if __name__ == "__main__":
    main()
