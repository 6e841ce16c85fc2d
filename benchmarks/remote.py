"""Restoring from the shared remote cache: a clone with an empty local cache pulls every frame.

    python benchmarks/remote.py            # 1,000 frames from moto's S3 server on loopback

A first clone builds on the preview backend and pushes to the bucket; a second clone of the
manifest alone then builds: every frame is a restore from the remote (downloaded, verified by
digest, written). Reports frames per second for that second build.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _tiles import PREVIEW_SMALL, tiles


def main() -> None:
    import s3fs
    from moto.server import ThreadedMotoServer

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1000)
    args = parser.parse_args()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    credentials = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                   "AWS_DEFAULT_REGION": "us-east-1"}
    os.environ.update(credentials)
    env = {**os.environ, "NBPIPE_REMOTE": "s3://bench/cache", "NBPIPE_REMOTE_ENDPOINT": endpoint}
    s3fs.S3FileSystem(client_kwargs={"endpoint_url": endpoint}).mkdir("bench")
    base = Path(tempfile.mkdtemp(prefix="nbpipe-remote-"))
    try:
        manifest = tiles(args.frames, PREVIEW_SMALL)
        for name in ("first", "second"):
            (base / name).mkdir()
            (base / name / "nbpipe.yaml").write_text(manifest)
        nbpipe = [sys.executable, "-m", "nbpipe"]
        subprocess.run([*nbpipe, "-C", str(base / "first"), "build", "-j", "4"], env=env,
                       check=True, stdout=subprocess.DEVNULL)
        start = time.perf_counter()
        done = subprocess.run([*nbpipe, "-C", str(base / "second"), "build", "--json"], env=env,
                              check=True, capture_output=True, text=True)
        wall = time.perf_counter() - start
        summary = json.loads(done.stdout.splitlines()[-1])
        assert summary["restored"] == args.frames and summary["rendered"] == 0, summary
        size = sum(p.stat().st_size for p in (base / "second" / "out").rglob("*.png"))
        print(f"restored {args.frames} frames ({size / 1e6:.0f} MB) from the remote in "
              f"{wall:.1f} s: {args.frames / wall:.0f} frames/s (0 rendered)")
    finally:
        shutil.rmtree(base, ignore_errors=True)
        server.stop()


if __name__ == "__main__":
    main()
