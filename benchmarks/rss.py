"""Peak memory of a build whose images are large: downloads and copies must stream.

    python benchmarks/rss.py            # 500 frames of ~10 MB PNGs against the fake HiAPI

Every task answers a distinct ~10 MB PNG (one noise image, with the task id in a text chunk).
Reports the peak RSS of the nbpipe process (goal: under 250 MB) and the bytes moved.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _tiles import tiles

from tests.fakes.hiapi import FakeHiApi


def noise_png(megabytes: float) -> bytes:
    from PIL import Image

    side = int((megabytes * 1_000_000 / 3) ** 0.5)
    image = Image.frombytes("RGB", (side, side), os.urandom(side * side * 3))
    out = io.BytesIO()
    image.save(out, "PNG", compress_level=1)
    return out.getvalue()


def with_text(png: bytes, text: str) -> bytes:
    """The same image with a tEXt chunk: distinct bytes, still a valid PNG."""
    data = b"task\0" + text.encode()
    chunk = struct.pack(">I", len(data)) + b"tEXt" + data + \
        struct.pack(">I", zlib.crc32(b"tEXt" + data) & 0xFFFFFFFF)
    return png[:33] + chunk + png[33:]  # after the 8-byte signature and the IHDR chunk


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=500)
    parser.add_argument("--megabytes", type=float, default=10.0)
    parser.add_argument("--jobs", type=int, default=16)
    args = parser.parse_args()
    base = noise_png(args.megabytes)
    root = Path(tempfile.mkdtemp(prefix="nbpipe-rss-"))
    try:
        (root / "nbpipe.yaml").write_text(tiles(args.frames))
        with FakeHiApi(latency=0.2, make_image=lambda fmt, task_id: with_text(base, task_id)) as fake:
            env = {**os.environ, "HIAPI_API_KEY": fake.key, "HIAPI_BASE_URL": fake.url,
                   "NBPIPE_HIAPI_POLL_DELAY": "0.2", "NBPIPE_HIAPI_POLL_INTERVAL": "0.2"}
            start = time.perf_counter()
            proc = subprocess.Popen([sys.executable, "-m", "nbpipe", "-C", str(root), "build",
                                     "-j", str(args.jobs)], env=env, stdout=subprocess.DEVNULL)
            _, status, usage = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - start
            assert os.waitstatus_to_exitcode(status) == 0
            downloads = fake.counts["downloads"]
        peak = usage.ru_maxrss / 1024  # KiB on Linux
        print(f"{args.frames} frames of {len(base) / 1e6:.1f} MB ({args.frames * len(base) / 1e9:.1f} GB "
              f"downloaded, {downloads} downloads) in {wall:.0f} s")
        print(f"  peak RSS of nbpipe: {peak:.0f} MiB (goal < 250 MiB)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
