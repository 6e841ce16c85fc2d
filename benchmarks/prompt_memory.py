"""Peak memory of `plan` and `push` when every frame shares one long bible (issue #22 item 9).

    python benchmarks/prompt_memory.py     # 12,000 frames × a ~118k-character bible

`--built N` first builds N of the frames on the preview backend, so `push` has images to send
(to a local folder as the remote). Reports each command's peak RSS and wall time.
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


def manifest(rows: int, cols: int, words: int) -> str:
    bible = " ".join(f"w{i} \"q\"\nl" for i in range(words))
    a = ", ".join(f"a{i}" for i in range(rows))
    b = ", ".join(f"b{i}" for i in range(cols))
    return ("version: 1\ndefaults: {backend: gemini, model: gemini-3-pro-image}\n"
            f"bibles:\n  mira: {json.dumps(bible)}\n"
            "templates:\n  t: '{{ bible }} | Scene: {{ a }} {{ b }}'\n"
            f"targets:\n  s:\n    template: t\n    bible: mira\n"
            f"    matrix: {{a: [{a}], b: [{b}]}}\n")


def peak(root: Path, env: dict[str, str], *args: str) -> tuple[float, float]:
    """(peak RSS in MiB, wall seconds) of `nbpipe ARGS` in `root`."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "nbpipe", "-C", str(root), *args], env=env,
                            stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, args
    return usage.ru_maxrss / 1024, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=120)
    parser.add_argument("--cols", type=int, default=100)
    parser.add_argument("--words", type=int, default=9_900)  # ~118k characters
    parser.add_argument("--built", type=int, default=0)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="nbpipe-prompt-memory-"))
    try:
        (root / "nbpipe.yaml").write_text(manifest(args.rows, args.cols, args.words))
        env = {**os.environ, "NBPIPE_REMOTE": str(root / "remote")}
        (root / "remote").mkdir()
        if args.built:
            rows = (args.built + args.cols - 1) // args.cols
            peak(root, env, "build", "--backend", "preview", *(f"s/a{i}-*" for i in range(rows)))
        for command in (("plan",), ("push",)):
            mib, wall = peak(root, env, *command)
            print(f"{command[0]:5} {args.rows * args.cols:,} frames: peak RSS {mib:,.0f} MiB, "
                  f"{wall:.1f} s")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
