"""What the warm server's tests share: the runtime folder, the script and the environment of
warm commands (`Warm`), a project, a build whose HiAPI task is held out."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import nbpipe
from tests.conftest import read_until, wait_for

CABIN = """\
version: 1
defaults: {backend: preview, model: Nano-Banana-2}
targets:
  a: {prompt: "a cabin"}
  b: {prompt: "a lake, {{ t }}", matrix: {t: [dawn, dusk]}}
"""
HELD = """\
version: 1
defaults: {backend: hiapi, model: Nano-Banana}
targets:
  hero: {prompt: "a hero"}
"""
WARM_SAID = "run by the warm server's process"


class Warm:
    """A runtime folder, the script, and the environment of warm commands."""

    def __init__(self, folder: Path, idle: float = 120):
        self.folder = folder
        self.script = folder / "nbpipe-script"
        self.script.write_text("from nbpipe.launch import entry\nentry()\n")
        self.env = {**os.environ, "XDG_RUNTIME_DIR": str(folder), "NBPIPE_WARM": "1",
                    "NBPIPE_WARM_IDLE": str(idle), "NBPIPE_EXPLAIN": "1",
                    "PYTHONPATH": str(Path(nbpipe.__file__).parent.parent)}

    def sockets(self) -> list[Path]:
        return sorted((self.folder / "nbpipe").glob("*.sock"))

    def servers(self) -> list[int]:
        pids = []
        for lock in (self.folder / "nbpipe").glob("*.lock"):
            text = lock.read_text().strip()
            if text.isdigit() and alive(int(text)):
                pids.append(int(text))
        return pids

    def run(self, *args: str, cwd: Path, warm: bool = True,
            **env: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(self.script), *args], cwd=cwd,
                              env={**self.env, "NBPIPE_WARM": "1" if warm else "0", **env},
                              capture_output=True, text=True, timeout=120)

    def start(self, *args: str, cwd: Path, job: bool = False, **env: str) -> subprocess.Popen:
        """`job`: in a process group of its own, as a shell starts a job (a process group
        with no parent outside it, as under CI, is orphaned: the kernel drops a Ctrl-Z sent
        to it, cold or warm)."""
        return subprocess.Popen([sys.executable, str(self.script), *args], cwd=cwd,
                                env={**self.env, **env}, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True,
                                process_group=0 if job else None)

    def ready(self, cwd: Path) -> None:
        """A command started the server; return once it listens."""
        self.run("--version", cwd=cwd)
        wait_for(lambda: self.sockets(), timeout=60)

    def stop(self) -> None:
        pids = self.servers()
        for pid in pids:
            os.kill(pid, signal.SIGTERM)
        wait_for(lambda: not any(alive(pid) for pid in pids), timeout=30)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is gone for our purposes (a child of this test process that ended)
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][:1] != "Z"
    except OSError:
        return False


def project(base: Path, text: str = CABIN) -> Path:
    root = base / "p"
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    (root / "nbpipe.yaml").write_text(text)
    return root


def held_build(warm: Warm, fake, env: dict, base: Path,
               job: bool = False) -> tuple[Path, subprocess.Popen, int]:
    """A warm build whose HiAPI task is out (held at the fake); its child's pid."""
    root = project(base, HELD)
    warm.ready(base)
    proc = warm.start("-C", "p", "build", cwd=base, job=job, PYTHONUNBUFFERED="1", **env)
    line = read_until(proc.stderr, WARM_SAID)
    wait_for(lambda: fake.counts.get("creates", 0) == 1)
    return root, proc, int(line.split(WARM_SAID)[-1].split()[0])


