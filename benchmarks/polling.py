"""Polling against tasks of a known latency: how close a build comes to the ideal wall time.

    python benchmarks/polling.py                    # 80 frames, -j 16, 10 s tasks, median of 1
    python benchmarks/polling.py --runs 3 --before /tmp/old   # and another copy of nbpipe

The fake HiAPI finishes each task `--latency` seconds after its create. nbpipe runs with its
default polling (first poll after NBPIPE_HIAPI_POLL_DELAY, then every
NBPIPE_HIAPI_POLL_INTERVAL, adapted to the task duration it learns). Reports the wall time
against the ideal ceil(frames / jobs) × latency, the creates per frame the server saw (must be
exactly 1.00) and the polls per task. Each run is a fresh project: its first build learns
the duration from its own finished tasks; then every prompt is changed and the same project is
built again ("second build"), starting from the durations the first kept in its state.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _tiles import tiles

from tests.fakes.hiapi import FakeHiApi


Run = tuple[float, int, int]  # wall seconds, creates, polls


def two_builds(frames: int, jobs: int, latency: float, code: str | None) -> tuple[Run, Run]:
    """A first build and a second one of changed prompts in the same project; `code`: the
    folder of the nbpipe to run (None: this checkout's)."""
    with FakeHiApi(latency=latency) as fake, tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith("NBPIPE_HIAPI_POLL")}
        env.update({"HIAPI_API_KEY": fake.key, "HIAPI_BASE_URL": fake.url})
        if code:
            env["PYTHONPATH"] = code
        runs = []
        for prompt in ("tile", "tile again"):
            (root / "nbpipe.yaml").write_text(tiles(frames).replace("tile {{", prompt + " {{"))
            creates, polls = fake.counts["creates"], fake.counts["polls"]
            start = time.perf_counter()
            # cwd: `python -m` puts the working folder first on sys.path, before PYTHONPATH
            subprocess.run([sys.executable, "-m", "nbpipe", "-C", str(root), "build", "-j",
                            str(jobs)], env=env, check=True, stdout=subprocess.DEVNULL, cwd=root)
            runs.append((time.perf_counter() - start, fake.counts["creates"] - creates,
                         fake.counts["polls"] - polls))
        return runs[0], runs[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=80)
    parser.add_argument("--jobs", type=int, default=16)
    parser.add_argument("--latency", type=float, default=10.0)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--before", help="a folder holding another nbpipe package (an earlier "
                        "commit's, from `git archive`), timed the same way in the same run")
    args = parser.parse_args()
    codes = {"nbpipe": None, **({"--before": args.before} if args.before else {})}
    results: dict[str, list[Run]] = {}
    for _ in range(args.runs):
        for name, code in codes.items():
            first, second = two_builds(args.frames, args.jobs, args.latency, code)
            results.setdefault(name, []).append(first)
            results.setdefault(f"{name}, second build", []).append(second)
    ideal = math.ceil(args.frames / args.jobs) * args.latency
    print(f"{args.frames} frames, -j {args.jobs}, task latency {args.latency:g} s, ideal "
          f"{ideal:.1f} s, median of {args.runs}")
    for name, runs in results.items():
        wall = statistics.median(r[0] for r in runs)
        creates = statistics.median(r[1] for r in runs)
        polls = statistics.median(r[2] for r in runs)
        print(f"  {name:<24} wall {wall:6.1f} s   ratio {wall / ideal:.3f} (goal <= 1.10)   "
              f"creates/frame {creates / args.frames:.2f}   polls/task {polls / creates:.2f}")


if __name__ == "__main__":
    main()
