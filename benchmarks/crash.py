"""Crash survival: kill -9 a build at random moments, build again until done, count payments.

    python benchmarks/crash.py                 # 20 trials of a 100-frame build

Each trial starts a fresh project against a fresh fake HiAPI (task latency 0.5 s), kills the
build with SIGKILL at 1-4 random moments, then builds again until one exits 0. It checks that
the server created exactly one task per frame key (never a second payment), that every output
decodes and the lock lists every frame, and that no partial file is left in the outputs or the
cache. The small version of this runs in the test suite (tests/engine/test_scale.py).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _tiles import tiles

from tests.fakes.hiapi import FakeHiApi


def build(root: Path, fake: FakeHiApi) -> subprocess.Popen:
    env = {**os.environ, "HIAPI_API_KEY": fake.key, "HIAPI_BASE_URL": fake.url,
           "NBPIPE_HIAPI_POLL_DELAY": "0.1", "NBPIPE_HIAPI_POLL_INTERVAL": "0.1"}
    return subprocess.Popen([sys.executable, "-m", "nbpipe", "-C", str(root), "build", "-j", "8"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def trial(seed: int, frames: int) -> dict:
    rng = random.Random(seed)
    root = Path(tempfile.mkdtemp(prefix="nbpipe-crash-"))
    (root / "nbpipe.yaml").write_text(tiles(frames))
    kills = rng.randint(1, 4)
    try:
        with FakeHiApi(latency=0.5) as fake:
            for _ in range(kills):
                proc = build(root, fake)
                time.sleep(rng.uniform(0.3, 4.0))
                proc.send_signal(signal.SIGKILL)
                proc.wait()
            for attempt in range(5):
                proc = build(root, fake)
                _, err = proc.communicate(timeout=300)
                if proc.returncode == 0:
                    break
            else:
                raise AssertionError(f"seed {seed}: no build completed: {err[-500:]}")
            lock = json.loads((root / "nbpipe.lock").read_text())["frames"]
            for entry in lock.values():
                Image.open(root / entry["output"]).load()
            partial = [p for p in root.rglob("*")
                       if p.name.endswith(".part") or (p.parent.name == "tmp" and p.is_file())]
            return {"seed": seed, "kills": kills, "creates": fake.counts["creates"],
                    "keys": len(set(fake.created_keys)), "replays": fake.counts["replays"],
                    "locked": len(lock), "partial": len(partial)}
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--frames", type=int, default=100)
    args = parser.parse_args()
    ok = 0
    for seed in range(args.trials):
        r = trial(seed, args.frames)
        good = r["creates"] == r["keys"] == r["locked"] == args.frames and r["partial"] == 0
        ok += good
        print(f"trial {seed:2}: {r['kills']} kill(s) · {r['creates']} creates for {args.frames} "
              f"frames · {r['replays']} idempotent replays · lock {r['locked']} · "
              f"partial files {r['partial']} · {'ok' if good else 'FAILED'}", flush=True)
    print(f"{ok}/{args.trials} trials complete with exactly one create per frame key")


if __name__ == "__main__":
    main()
