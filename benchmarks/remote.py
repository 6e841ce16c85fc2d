"""Restoring from the shared remote cache, side by side with a plain download of its objects.

    python benchmarks/remote.py                    # 1,000 frames from moto's S3 server, median of 3
    python benchmarks/remote.py --before /tmp/old  # also time another copy of nbpipe

A first clone builds on the preview backend and pushes to the bucket. Then, each run, two
fresh clones with an empty local cache build (every frame a restore from the remote: downloaded,
verified by digest, written): one with the manifest and the committed lock ("with the lock",
the CI case), one with the manifest alone. Beside them, the same run times a plain download of
the very blobs the lock pins with boto3 on 16 threads (one client, a pool of 16 connections,
get_object of each name, bytes read into memory): the floor any client pays for those objects.
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _compare import arguments, code_env
from _tiles import PREVIEW_SMALL, tiles

BUCKET, PREFIX = "bench", "cache"


def clone_build(base: Path, name: str, manifest: str, lock: str | None, env: dict[str, str],
                frames: int, code: str | None) -> float:
    root = base / name
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir()
    (root / "nbpipe.yaml").write_text(manifest)
    if lock is not None:
        (root / "nbpipe.lock").write_text(lock)
    run_env = code_env(code, env)
    start = time.perf_counter()
    # cwd: `python -m` puts the working folder first on sys.path, before PYTHONPATH
    done = subprocess.run([sys.executable, "-m", "nbpipe", "-C", str(root), "build", "--json"],
                          env=run_env, check=True, capture_output=True, text=True, cwd=root)
    wall = time.perf_counter() - start
    summary = json.loads(done.stdout.splitlines()[-1])
    assert summary["restored"] == frames and summary["rendered"] == 0, summary
    shutil.rmtree(root)
    return wall


def boto3_download(endpoint: str, names: list[str]) -> float:
    import boto3
    from botocore.config import Config

    client = boto3.client("s3", endpoint_url=endpoint,
                          config=Config(max_pool_connections=16))
    client.list_buckets()  # the client's own start-up is not the download's

    def get(name: str) -> int:
        return len(client.get_object(Bucket=BUCKET, Key=name)["Body"].read())
    start = time.perf_counter()
    with ThreadPoolExecutor(16) as pool:
        total = sum(pool.map(get, names))
    assert total > 0
    return time.perf_counter() - start


def main() -> None:
    import logging

    import s3fs
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per S3 request

    args = arguments(__doc__, frames=1000, runs=3)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    credentials = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                   "AWS_DEFAULT_REGION": "us-east-1"}
    os.environ.update(credentials)
    env = {**os.environ, "NBPIPE_REMOTE": f"s3://{BUCKET}/{PREFIX}",
           "NBPIPE_REMOTE_ENDPOINT": endpoint}
    s3fs.S3FileSystem(client_kwargs={"endpoint_url": endpoint}).mkdir(BUCKET)
    base = Path(tempfile.mkdtemp(prefix="nbpipe-remote-"))
    try:
        manifest = tiles(args.frames, PREVIEW_SMALL)
        (base / "first").mkdir()
        (base / "first" / "nbpipe.yaml").write_text(manifest)
        subprocess.run([sys.executable, "-m", "nbpipe", "-C", str(base / "first"), "build",
                        "-j", "4"], env=env, check=True, stdout=subprocess.DEVNULL)
        lock = (base / "first" / "nbpipe.lock").read_text()
        pinned = sorted({e["digest"] for e in json.loads(lock)["frames"].values()})
        names = [f"{PREFIX}/blobs/{d}" for d in pinned]
        size = sum(p.stat().st_size for p in (base / "first" / "out").rglob("*.png"))
        codes = {"nbpipe": None, **({"--before": args.before} if args.before else {})}
        times: dict[str, list[float]] = {}
        for _ in range(args.runs):
            for name, code in codes.items():
                times.setdefault(f"{name}, with the lock", []).append(
                    clone_build(base, "clone", manifest, lock, env, args.frames, code))
                times.setdefault(f"{name}, manifest alone", []).append(
                    clone_build(base, "clone", manifest, None, env, args.frames, code))
            times.setdefault("boto3, 16 threads", []).append(boto3_download(endpoint, names))
        floor = statistics.median(times["boto3, 16 threads"])
        print(f"remote restore of {args.frames:,} frames ({size / 1e6:.0f} MB) from moto's S3 "
              f"on loopback, median of {args.runs}:")
        for name, walls in times.items():
            wall = statistics.median(walls)
            print(f"  {name:<28} {wall:6.2f} s  {args.frames / wall:6.0f} frames/s  "
                  f"{wall / floor:5.2f}x boto3 (goal <= 1.5 with the lock)")
    finally:
        shutil.rmtree(base, ignore_errors=True)
        server.stop()


if __name__ == "__main__":
    main()
