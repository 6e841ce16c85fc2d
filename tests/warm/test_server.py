"""A warm server's child is the command (nbpipe/warm): real processes, as a user runs them.

Each test starts nbpipe as its console script does (a script file, so the key does not change
with the working folder), with NBPIPE_WARM=1 and a private runtime folder of its own. The first
command runs cold and starts the server; the test waits until its socket is there (a wait for
a state, bounded only so a broken server fails instead of hanging)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from nbpipe.warm import server
from tests.conftest import wait_for
from tests.samples import journal
from tests.warm.common import CABIN, WARM_SAID, Warm, alive, held_build, project


def said(done: subprocess.CompletedProcess) -> tuple[int, str, str]:
    err = "".join(line for line in done.stderr.splitlines(keepends=True)
                  if not line.startswith("nbpipe: ") and "fast path" not in line)
    return done.returncode, done.stdout, err


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and ".nbpipe" not in p.parts}


SESSION = [("build", "-j", "1"), ("build",), ("plan",), ("build", "--check"), ("nosuch",),
           ("build", "--json"), ("explain", "b/dawn")]


def test_a_warm_command_says_and_does_what_a_cold_one_does(warm, tmp_path):
    base = tmp_path / "work"
    base.mkdir()
    warm.ready(base)
    results = {}
    for mode in (False, True):
        root = project(base)
        runs = [warm.run("-C", "p", *args, cwd=base, warm=mode) for args in SESSION]
        (root / "nbpipe.yaml").write_text(CABIN.replace("targets:", "targetz:"))
        runs.append(warm.run("-C", "p", "build", cwd=base, warm=mode))  # a located error
        assert all((WARM_SAID in r.stderr) == mode for r in runs), [r.stderr for r in runs]
        results[mode] = ([said(r) for r in runs], files(root))
    for cold, hot in zip(results[False][0], results[True][0], strict=True):
        assert cold == hot
    assert results[True][1] == results[False][1]
    codes = [code for code, _, _ in results[True][0]]
    assert codes == [0, 0, 0, 0, 2, 0, 0, 2]
    assert "nbpipe.yaml:3:1: error" in results[True][0][-1][2]


def test_the_child_takes_the_callers_folder_environment_and_umask(warm, tmp_path):
    base = tmp_path / "work"
    base.mkdir()
    root = project(base)
    (root / "deep" / "er").mkdir(parents=True)
    warm.ready(base)
    old = os.umask(0o027)
    try:
        done = warm.run("build", cwd=root / "deep" / "er", NBPIPE_BACKEND="nosuch")
        assert done.returncode == 2 and "NBPIPE_BACKEND" in done.stderr  # its environment
        done = warm.run("build", cwd=root / "deep" / "er")  # the project found upwards
    finally:
        os.umask(old)
    assert done.returncode == 0 and WARM_SAID in done.stderr, done.stderr
    outputs = [p for p in files(root) if p.endswith(".png")]
    assert len(outputs) == 3
    assert all(os.stat(root / p).st_mode & 0o077 in (0, 0o040) for p in outputs), \
        [oct(os.stat(root / p).st_mode) for p in outputs]


@pytest.fixture
def held_hiapi():
    from tests.fakes.hiapi import FakeHiApi

    with FakeHiApi() as fake:
        fake.holds.hold("tasks")
        yield fake, {"HIAPI_API_KEY": fake.key, "HIAPI_BASE_URL": fake.url,
                     "NBPIPE_HIAPI_POLL_DELAY": "0.05", "NBPIPE_HIAPI_POLL_INTERVAL": "0.05",
                     "NBPIPE_INTERRUPT_GRACE": "0", "NBPIPE_RETRY_BASE": "0.01"}


def test_ctrl_c_reaches_the_child_and_the_paid_task_is_collected_for_free(
        warm, held_hiapi, tmp_path):
    fake, env = held_hiapi
    root, proc, child = held_build(warm, fake, env, tmp_path)
    proc.send_signal(signal.SIGINT)  # to the caller, as a terminal sends it
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "still out" in out + err and "Traceback" not in out + err
    assert not alive(child)
    assert len(journal(root).open) == 1  # the paid task kept
    fake.holds.release()
    done = warm.run("-C", "p", "build", cwd=tmp_path, **env)
    assert done.returncode == 0 and WARM_SAID in done.stderr, done.stderr
    assert fake.counts["creates"] == 1 and list(root.rglob("hero*.png"))


def test_the_child_dies_with_its_caller_and_its_task_is_kept(warm, held_hiapi, tmp_path):
    fake, env = held_hiapi
    root, proc, child = held_build(warm, fake, env, tmp_path)
    proc.kill()  # kill -9: the caller cannot forward anything
    proc.communicate(timeout=60)
    wait_for(lambda: not alive(child), timeout=60)
    assert len(journal(root).open) == 1
    fake.holds.release()
    done = warm.run("-C", "p", "build", cwd=tmp_path, warm=False, **env)
    assert done.returncode == 0, done.stderr
    assert fake.counts["creates"] == 1 and list(root.rglob("hero*.png"))


def test_a_dead_servers_socket_is_replaced_and_the_command_runs_here_meanwhile(warm, tmp_path):
    base = tmp_path / "work"
    base.mkdir()
    root = project(base)
    warm.ready(base)
    (pid,) = warm.servers()
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not alive(pid))
    assert warm.sockets()  # left behind, refusing
    done = warm.run("-C", "p", "build", cwd=base)
    assert done.returncode == 0 and WARM_SAID not in done.stderr
    assert "no warm server" in done.stderr and len(list(root.rglob("*.png"))) == 3
    wait_for(lambda: warm.servers() and warm.servers() != [pid], timeout=60)
    wait_for(lambda: WARM_SAID in warm.run("-C", "p", "build", cwd=base).stderr, timeout=60)


def test_an_idle_server_leaves_and_takes_its_socket(short_dir, tmp_path):
    warm = Warm(short_dir, idle=0.2)
    try:
        warm.run("--version", cwd=tmp_path)
        wait_for(lambda: not warm.servers() and (warm.folder / "nbpipe").is_dir() and
                 list((warm.folder / "nbpipe").glob("*.lock")), timeout=60)
        assert not warm.sockets()
    finally:
        warm.stop()


def test_a_second_server_of_a_key_leaves_at_once(warm, tmp_path):
    warm.ready(tmp_path)
    (sock,) = warm.sockets()
    assert server.serve(str(sock.parent), sock.stem, 60) == 0  # its lock is held
    assert warm.sockets() == [sock]


def test_a_caller_of_another_user_is_refused(monkeypatch):
    import socket

    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with ours, theirs:
        uid = os.getuid()
        assert server._same_user(ours)
        monkeypatch.setattr(server.os, "getuid", lambda: uid + 1)
        assert not server._same_user(ours)


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][:1]


def test_ctrl_z_stops_the_child_with_its_caller_and_fg_continues_both(
        warm, held_hiapi, tmp_path):
    fake, env = held_hiapi
    _, proc, child = held_build(warm, fake, env, tmp_path, job=True)
    proc.send_signal(signal.SIGTSTP)
    wait_for(lambda: _state(child) == "T" and _state(proc.pid) == "T")
    proc.send_signal(signal.SIGCONT)
    wait_for(lambda: _state(child) != "T" and _state(proc.pid) != "T")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err


def test_the_server_holds_none_of_its_first_callers_keys(warm, tmp_path):
    warm.run("--version", cwd=tmp_path, HIAPI_API_KEY="sk-secret-of-the-first-caller")
    wait_for(lambda: warm.servers(), timeout=60)
    (pid,) = warm.servers()
    assert b"sk-secret-of-the-first-caller" not in Path(f"/proc/{pid}/environ").read_bytes()


PRESSED_AT_HELLO = """
import os, sys, time
from nbpipe.warm import server

SAID = sys.argv[1]  # (the child takes the request's argv)

class Caller:
    def sendall(self, data):
        with open(SAID, "ab") as said:
            said.write(data)
        if b'"pid"' in data:  # the caller forwards a press the moment it reads the pid
            raise KeyboardInterrupt

    def recv(self, size):
        time.sleep(3600)  # the caller stays

fds = [os.dup(0), os.dup(1), os.dup(2)]
server._become(Caller(), server.Request(["nbpipe", "--version"], os.getcwd(), dict(os.environ),
                                        0o022, fds))
"""


def test_a_press_forwarded_with_the_pid_ends_the_command_as_cold(tmp_path):
    """Found by the money soak run warm: two presses 55 ms into a build reached the child
    before its handlers, and it died with a traceback and no exit code."""
    said = tmp_path / "said"
    done = subprocess.run([sys.executable, "-c", PRESSED_AT_HELLO, str(said)],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 130 and done.stderr == "interrupted\n", done.stderr
    assert said.read_bytes().splitlines()[-1] == b'{"exit": 130}'
