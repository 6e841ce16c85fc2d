"""Rendering throughput against the fake HiAPI server with a fixed task latency.

    python benchmarks/throughput.py                  # 200 frames, -j 16, 2 s per task

Reports nbpipe's wall time against the ideal ceil(frames / jobs) × latency, the polls per task
and the creates per frame seen by the server (must be exactly 1.00), and the speed-up over the
seed workflow's client (submit one task, poll it every 6 s, then the next). That baseline is
strictly sequential, so it is timed on --baseline-frames frames and scaled linearly (printed).
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _tiles import tiles

from tests.fakes.hiapi import FakeHiApi


def run_nbpipe(fake: FakeHiApi, frames: int, jobs: int, poll: float) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "nbpipe.yaml").write_text(tiles(frames))
        env = {**os.environ, "HIAPI_API_KEY": fake.key, "HIAPI_BASE_URL": fake.url,
               "NBPIPE_HIAPI_POLL_DELAY": str(poll), "NBPIPE_HIAPI_POLL_INTERVAL": str(poll)}
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "nbpipe", "-C", str(root), "build", "-j", str(jobs)],
                       env=env, check=True, stdout=subprocess.DEVNULL)
        return time.perf_counter() - start


def run_seed_client(fake: FakeHiApi, frames: int) -> float:
    """The seed document's client: submit, poll at once, then every 6 s; download; next."""
    headers = {"Authorization": f"Bearer {fake.key}"}
    start = time.perf_counter()
    with httpx.Client(timeout=70) as client:
        for i in range(frames):
            body = {"model": "Nano-Banana", "input": {"prompt": f"seed {i}", "aspect_ratio": "1:1"}}
            task_id = client.post(f"{fake.url}/v1/tasks", json=body,
                                  headers=headers).json()["data"]["taskId"]
            while True:
                task = client.get(f"{fake.url}/v1/tasks/{task_id}", headers=headers).json()["data"]
                if task["status"] == "success":
                    client.get(task["output"][0]["url"])
                    break
                time.sleep(6)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=16)
    parser.add_argument("--latency", type=float, default=2.0)
    parser.add_argument("--poll", type=float, default=1.0,
                        help="first poll and poll interval nbpipe starts from (it then adapts "
                             "the first poll to the latency HiAPI reports)")
    parser.add_argument("--baseline-frames", type=int, default=10,
                        help="frames the seed's one-at-a-time client is timed on (0: skip it)")
    args = parser.parse_args()

    with FakeHiApi(latency=args.latency) as fake:
        wall = run_nbpipe(fake, args.frames, args.jobs, args.poll)
        creates, polls = fake.counts["creates"], fake.counts["polls"]
    ideal = math.ceil(args.frames / args.jobs) * args.latency
    print(f"{args.frames} frames, -j {args.jobs}, task latency {args.latency:g} s")
    print(f"  nbpipe wall            {wall:7.1f} s")
    print(f"  ideal ceil(n/j)×lat    {ideal:7.1f} s   ratio {wall / ideal:.3f} (goal ≤ 1.15)")
    print(f"  creates per frame      {creates / args.frames:7.2f}")
    print(f"  polls per task         {polls / creates:7.2f}")
    if args.baseline_frames > 0:
        with FakeHiApi(latency=args.latency) as fake:
            seed = run_seed_client(fake, args.baseline_frames)
        seed_total = seed / args.baseline_frames * args.frames
        print(f"  seed client            {seed_total:7.1f} s   (timed on {args.baseline_frames} "
              f"frames: {seed:.1f} s, scaled ×{args.frames / args.baseline_frames:g})")
        print(f"  speed-up over seed     {seed_total / wall:7.1f}×")


if __name__ == "__main__":
    main()
