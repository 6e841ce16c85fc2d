"""No-op build speed: nbpipe against GNU make, ninja, snakemake -n and dvc status, side by side.

    python benchmarks/noop.py                       # 1,000 and 10,000 frames
    python benchmarks/noop.py --sizes 1000 --tools-venv /tmp/tools   # reuse installed tools
    python benchmarks/noop.py --tools make,ninja    # no snakemake/dvc (nothing to install)

For each size: a matrix manifest on the preview backend is built once (all frames fresh), then
every tool is timed doing nothing on the equivalent graph (one output per frame, all up to date),
median of --runs runs, each as a fresh process. snakemake and dvc are installed from PyPI into a
temporary virtualenv (or --tools-venv); make and ninja come from the system if present.

nbpipe is timed twice: the fast path (nothing changed since the last build: read the state,
stat every file) and the full path (a comment in the manifest changed: load, expand, render
every prompt, key every frame, and compare with the lock, still writing nothing).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Past the 100,000 frames a manifest may ask for: the runner's choice (see SECURITY.md).
os.environ.setdefault("NBPIPE_MAX_FRAMES", "10000000")

MANIFEST = """\
version: 1
max_frames: 1000000
defaults: {{backend: preview, model: gemini-3.1-flash-image, resolution: "512",
           aspect_ratio: "1:1"}}
targets:
  tile:
    prompt: "a ceramic tile, glaze {{{{ a }}}}, pattern {{{{ b }}}}"
    matrix:
      a: [{a}]
      b: [{b}]
"""


def shape(frames: int) -> tuple[list[str], list[str]]:
    rows = 10 if frames <= 1000 else 100
    return [f"a{i}" for i in range(rows)], [f"b{j}" for j in range(frames // rows)]


def timed(cmd: list[str], cwd: Path, runs: int, timeout: float, env=None) -> float | None:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        try:
            subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=timeout, env=env)
        except subprocess.TimeoutExpired:
            return None
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def nbpipe_project(base: Path, frames: int) -> Path:
    root = base / "nbpipe"
    root.mkdir()
    a, b = shape(frames)
    (root / "nbpipe.yaml").write_text(MANIFEST.format(a=", ".join(a), b=", ".join(b)))
    subprocess.run([sys.executable, "-m", "nbpipe", "-C", str(root), "build", "-j", "4"],
                   check=True, stdout=subprocess.DEVNULL)
    return root


def outputs(frames: int) -> list[str]:
    a, b = shape(frames)
    return [f"out/tile/{x}-{y}.png" for x in a for y in b]


def tool_dir(base: Path, name: str, nb: Path, frames: int) -> Path:
    """A copy of nbpipe's outputs, made after the tool's one input (spec.txt), so all is fresh."""
    root = base / name
    root.mkdir()
    (root / "spec.txt").write_text("spec\n")
    past = time.time() - 3600
    os.utime(root / "spec.txt", (past, past))
    shutil.copytree(nb / "out", root / "out")
    return root


def setup_make(root: Path, outs: list[str]) -> None:
    rules = [f"{o}: spec.txt\n\ttouch $@\n" for o in outs]
    (root / "Makefile").write_text("all: " + " ".join(outs) + "\n\n" + "\n".join(rules))


def setup_ninja(root: Path, outs: list[str]) -> None:
    lines = ["rule touch\n  command = touch $out\n"]
    lines += [f"build {o}: touch spec.txt" for o in outs]
    (root / "build.ninja").write_text("\n".join(lines) + "\n")
    subprocess.run(["ninja", "-t", "restat"], cwd=root, stdout=subprocess.DEVNULL)
    subprocess.run(["ninja"], cwd=root, check=True, stdout=subprocess.DEVNULL)  # seeds .ninja_log


def setup_snakemake(root: Path, frames: int) -> None:
    a, b = shape(frames)
    (root / "Snakefile").write_text(f"""\
A = {a!r}
B = {b!r}
rule all:
    input: expand("out/tile/{{a}}-{{b}}.png", a=A, b=B)
rule render:
    input: "spec.txt"
    output: "out/tile/{{a}}-{{b}}.png"
    shell: "touch {{output}}"
""")


def setup_dvc(root: Path, frames: int, venv: Path) -> None:
    a, b = shape(frames)
    (root / "dvc.yaml").write_text(f"""\
stages:
  render:
    matrix:
      a: [{", ".join(a)}]
      b: [{", ".join(b)}]
    cmd: "touch out/tile/${{item.a}}-${{item.b}}.png"
    deps:
      - spec.txt
    outs:
      - "out/tile/${{item.a}}-${{item.b}}.png"
""")
    dvc = str(venv / "bin" / "dvc")
    subprocess.run([dvc, "init", "--no-scm", "-q"], cwd=root, check=True)
    subprocess.run([dvc, "commit", "-f", "-q"], cwd=root, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)


def tools_venv(path: str | None, base: Path) -> Path:
    if path:
        return Path(path)
    venv = base / "tools"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "snakemake", "dvc"], check=True)
    return venv


def measure(frames: int, runs: int, venv: Path | None, timeout: float,
            tools: set[str]) -> dict[str, float | None]:
    base = Path(tempfile.mkdtemp(prefix=f"nbpipe-noop-{frames}-"))
    try:
        nb = nbpipe_project(base, frames)
        cmd = [sys.executable, "-m", "nbpipe", "-C", str(nb), "build"]
        results = {"nbpipe (fast path)": timed(cmd, nb, runs, timeout)}
        outs = outputs(frames)
        if "make" in tools and shutil.which("make"):
            root = tool_dir(base, "make", nb, frames)
            setup_make(root, outs)
            results["GNU make"] = timed(["make", "-s", "all"], root, runs, timeout)
        if "ninja" in tools and shutil.which("ninja"):
            root = tool_dir(base, "ninja", nb, frames)
            setup_ninja(root, outs)
            results["ninja"] = timed(["ninja"], root, runs, timeout)
        if "snakemake" in tools:
            root = tool_dir(base, "snakemake", nb, frames)
            setup_snakemake(root, frames)
            results["snakemake -n"] = timed([str(venv / "bin" / "snakemake"), "-n", "--cores",
                                             "1", "--quiet", "all"], root, runs, timeout)
        if "dvc" in tools:
            root = tool_dir(base, "dvc", nb, frames)
            setup_dvc(root, frames, venv)
            results["dvc status"] = timed([str(venv / "bin" / "dvc"), "status", "-q"], root,
                                          runs, timeout)
        results["nbpipe (full path)"] = _full_path(nb, runs)
        # The floor under any Python tool on this machine: the interpreter and site start.
        results["python -c pass"] = timed([sys.executable, "-c", "pass"], nb, runs, timeout)
        return results
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _full_path(root: Path, runs: int) -> float:
    times = []
    for i in range(runs):
        with open(root / "nbpipe.yaml", "a") as handle:
            handle.write(f"# edit {i}\n")  # bytes change, no key does: the full plan runs
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "nbpipe", "-C", str(root), "build"], check=True,
                       stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tools-venv", help="a virtualenv that already has snakemake and dvc")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--tools", default="make,ninja,snakemake,dvc",
                        help="which other tools to time, comma-separated")
    args = parser.parse_args()
    tools = set(args.tools.split(","))
    with tempfile.TemporaryDirectory(prefix="nbpipe-tools-") as scratch:
        venv = tools_venv(args.tools_venv, Path(scratch)) if tools & {"snakemake", "dvc"} \
            else None
        table = {n: measure(n, args.runs, venv, args.timeout, tools) for n in args.sizes}
    tools = list(next(iter(table.values())))
    print(f"{'no-op build, median of ' + str(args.runs):<28}" +
          "".join(f"{n:>12,} frames  ratio" for n in args.sizes))
    for tool in tools:
        cells = []
        for n in args.sizes:
            t, ref = table[n][tool], table[n]["nbpipe (fast path)"]
            cells.append("   timed out" + " " * 15 if t is None else
                         f"{t * 1000:>11.0f} ms {t / ref:>6.1f}×")
        print(f"{tool:<28}" + "".join(f"{c:>25}" for c in cells))


if __name__ == "__main__":
    main()
