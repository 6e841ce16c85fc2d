"""A hostile review of the warm server (nbpipe/warm): real processes, as tests/warm/test_server.py
runs them (its `Warm` helper: a private runtime folder, the script, the environment).

Each of the first tests proved a defect found in review (it failed against the code of then,
and passes since the fix); the others are attacks that held, kept so they stay held.

Where a test needs the caller to be at a given point, it waits for a state the kernel shows
(a connection queued on a listener, a signal no longer pending, a process blocked reading its
socket), never for a time. Waits are bounded only so a broken server fails instead of hanging."""

from __future__ import annotations

import json
import os
import resource
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import read_until, wait_for
from tests.warm.common import HELD, WARM_SAID, Warm, alive, held_build, project

LOST = "ended without an exit code"
GUARD = 30  # seconds: only so a caller that never ends fails the test instead of hanging it


@pytest.fixture
def warm(short_dir) -> Iterator[Warm]:
    made = Warm(short_dir)
    yield made
    made.stop()


@pytest.fixture
def hiapi() -> Iterator[tuple[object, dict[str, str]]]:
    from tests.fakes.hiapi import FakeHiApi

    with FakeHiApi() as fake:
        yield fake, {"HIAPI_API_KEY": fake.key, "HIAPI_BASE_URL": fake.url,
                     "NBPIPE_HIAPI_POLL_DELAY": "0.05", "NBPIPE_HIAPI_POLL_INTERVAL": "0.05",
                     "NBPIPE_INTERRUPT_GRACE": "0", "NBPIPE_RETRY_BASE": "0.01"}


@pytest.fixture
def held(hiapi):
    fake, env = hiapi
    fake.holds.hold("tasks")
    yield fake, env
    fake.holds.release()


def proc_field(pid: int, name: str) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no {name} in /proc/{pid}/status")


def pending(pid: int, signum: int) -> bool:
    """Whether `signum` sent to `pid` is still waiting to be taken (not yet delivered)."""
    bit = 1 << (signum - 1)
    return any(int(proc_field(pid, name), 16) & bit for name in ("SigPnd", "ShdPnd"))


def state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][:1]


def nice(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[16])


def reading_its_socket(pid: int) -> bool:
    return Path(f"/proc/{pid}/wchan").read_text() == "unix_stream_read_generic"


def devnulls() -> list[int]:
    return [os.open(os.devnull, os.O_RDWR) for _ in range(3)]


def impostor(warm: Warm, base: Path) -> socket.socket:
    """The socket a caller of this key connects to, listened on by the test: a server was
    started (so its name is known) and stopped, and the test's listener took its place."""
    warm.ready(base)
    (address,) = warm.sockets()
    warm.stop()
    address.unlink()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(address))
    listener.listen(4)
    return listener


def take_request(listener: socket.socket) -> socket.socket:
    """Accept the caller and read its request (the fds closed): it now waits for the pid."""
    conn, _ = listener.accept()
    data, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
    for fd in fds:
        os.close(fd)
    (size,) = struct.unpack_from("!I", data)
    while len(data) - 4 < size:
        data += conn.recv(1 << 20)
    return conn


def ended(proc: subprocess.Popen, timeout: float = GUARD) -> tuple[str, str] | None:
    """The caller's output once it ended; None (and it is killed) if it did not end."""
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        # not read to their end: the caller's streams may be held in flight, in a request
        # the server has not taken yet
        proc.stdout.close()
        proc.stderr.close()
        return None


# --- Signals before the child's pid came --------------------------------------------------

def test_ctrl_c_before_the_pid_is_not_forgotten_when_the_command_runs_here(warm, hiapi,
                                                                            tmp_path):
    fake, env = hiapi
    project(tmp_path, HELD)
    listener = impostor(warm, tmp_path)
    with listener:
        proc = warm.start("-C", "p", "build", cwd=tmp_path, **env)
        conn = take_request(listener)
        proc.send_signal(signal.SIGINT)  # Ctrl-C while the server has not answered
        wait_for(lambda: not pending(proc.pid, signal.SIGINT))
        conn.close()  # the server went away before forking (killed, idle exit, a failed fork)
    out, err = proc.communicate(timeout=120)
    assert fake.counts.get("creates", 0) == 0, "the interrupted command ran and paid"
    assert proc.returncode == 130, err


def test_ctrl_c_stops_a_caller_the_server_has_not_answered(warm, tmp_path):
    project(tmp_path)
    listener = impostor(warm, tmp_path)
    with listener:
        proc = warm.start("-C", "p", "plan", cwd=tmp_path)
        conn = take_request(listener)
        with conn:
            proc.send_signal(signal.SIGINT)
            done = ended(proc)
    assert done is not None, "Ctrl-C did not stop the command"
    assert proc.returncode == 130, done


def test_a_server_gone_with_the_caller_queued_runs_the_command_here(warm, tmp_path):
    root = project(tmp_path)
    listener = impostor(warm, tmp_path)
    proc = warm.start("-C", "p", "build", cwd=tmp_path)
    select.select([listener], [], [], GUARD)  # the caller is queued, never accepted
    wait_for(lambda: reading_its_socket(proc.pid), timeout=GUARD)  # its request sent
    listener.close()  # as a server's exit does: every queued caller is reset
    out, err = proc.communicate(timeout=120)
    assert LOST not in err
    assert proc.returncode == 0, err
    assert len(list(root.rglob("*.png"))) == 3


CHILD = """\
import os, signal, socket, sys, threading
from nbpipe.warm import server

conn = socket.socket(fileno=int(sys.argv[1]))
start = threading.Thread.start


def start_after_a_press(self):
    # the caller forwards a Ctrl-C the moment the pid reaches it: here it lands right after
    os.kill(os.getpid(), signal.SIGINT)
    start(self)


threading.Thread.start = start_after_a_press
fds = [os.dup(0), os.dup(1), os.dup(2)]
server._become(conn, server.Request([sys.executable, "--version"], os.getcwd(),
                                    dict(os.environ), 0o022, fds))
"""


def test_a_ctrl_c_as_the_child_starts_ends_it_with_130(tmp_path):
    ours, theirs = socket.socketpair()
    with ours:
        child = subprocess.run([sys.executable, "-c", CHILD, str(theirs.fileno())],
                               pass_fds=[theirs.fileno()], cwd=tmp_path, capture_output=True,
                               text=True, timeout=120)
        theirs.close()
        said = [json.loads(line) for line in ours.makefile("rb").read().splitlines()]
    assert said[:1] and "pid" in said[0]
    assert {"exit": 130} in said, child.stderr
    assert "Traceback" not in child.stderr


# --- Signals and what a cold process is -------------------------------------------------

def test_sigterm_ends_a_warm_command_as_it_ends_a_cold_one(warm, held, tmp_path):
    fake, env = held
    root, proc, child = held_build(warm, fake, env, tmp_path / "warm")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    warm_code = proc.returncode
    cold_root = project(tmp_path / "cold", HELD.replace("a hero", "another hero"))
    cold = warm.start("-C", str(cold_root), "build", cwd=tmp_path, NBPIPE_WARM="0", **env)
    wait_for(lambda: fake.counts.get("creates", 0) == 2)
    cold.send_signal(signal.SIGTERM)
    cold.communicate(timeout=60)
    assert cold.returncode == -signal.SIGTERM
    assert warm_code == cold.returncode, err


def test_ctrl_z_stops_the_child_as_it_stops_a_cold_command(warm, held, tmp_path):
    fake, env = held
    project(tmp_path, HELD)
    warm.ready(tmp_path)
    # a process group of its own, as a shell gives a job: one a terminal's stop signal stops
    proc = subprocess.Popen([sys.executable, str(warm.script), "-C", "p", "build"],
                            cwd=tmp_path, env={**warm.env, **env}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, process_group=0)
    line = read_until(proc.stderr, WARM_SAID)
    child = int(line.split(WARM_SAID)[-1].split()[0])
    wait_for(lambda: fake.counts.get("creates", 0) == 1)
    try:
        proc.send_signal(signal.SIGTSTP)
        wait_for(lambda: state(proc.pid) == "T", timeout=GUARD)
        stopped = []
        wait_for(lambda: stopped.append(state(child)) or stopped[-1] == "T" or len(stopped) > 500,
                 timeout=GUARD)
        assert stopped[-1] == "T", "the caller is stopped, its child goes on"
    finally:
        proc.send_signal(signal.SIGCONT)
        proc.send_signal(signal.SIGINT)
        if alive(child):
            os.kill(child, signal.SIGCONT)
        proc.communicate(timeout=60)


# --- Process attributes a fork does not take from the caller --------------------------------

def _fewer_files() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, 4096) - 7, hard))


ATTRIBUTES = {
    "nice": (lambda: os.nice(3), nice),
    "open files": (_fewer_files, lambda pid: [line for line in Path(
        f"/proc/{pid}/limits").read_text().splitlines() if line.startswith("Max open files")]),
}


@pytest.mark.parametrize("attribute", ATTRIBUTES)
def test_the_child_has_the_callers_niceness_and_limits(warm, held, tmp_path, attribute):
    fake, env = held
    change, read = ATTRIBUTES[attribute]
    project(tmp_path, HELD)
    warm.ready(tmp_path)
    # a caller of other limits is not the first server's: it starts one of its own
    subprocess.run([sys.executable, str(warm.script), "--version"], cwd=tmp_path,
                   env=warm.env, preexec_fn=change, capture_output=True, timeout=120)
    wait_for(lambda: len(warm.sockets()) == 2, timeout=60)
    proc = subprocess.Popen([sys.executable, str(warm.script), "-C", "p", "build"],
                            cwd=tmp_path, env={**warm.env, **env}, preexec_fn=change,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = read_until(proc.stderr, WARM_SAID)
        child = int(line.split(WARM_SAID)[-1].split()[0])
        assert read(child) == read(proc.pid)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)


def _unshare(*flags: str) -> bool:
    if shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", *flags, "true"], capture_output=True).returncode == 0


@pytest.mark.skipif(not _unshare("-Urn"), reason="no unprivileged network namespaces here")
def test_a_caller_without_network_does_not_build_over_the_servers(warm, hiapi, tmp_path):
    fake, env = hiapi
    project(tmp_path, HELD)
    warm.ready(tmp_path)
    for mode in ("0", "1"):
        done = subprocess.run(["unshare", "-Urn", sys.executable, str(warm.script), "-C", "p",
                               "build"], cwd=tmp_path,
                              env={**warm.env, **env, "NBPIPE_WARM": mode,
                                   "NBPIPE_RETRY_DEADLINE": "1"},
                              capture_output=True, text=True, timeout=120)
        assert fake.counts.get("creates", 0) == 0, (mode, done.stderr)
        assert done.returncode != 0, (mode, done.stderr)


# --- The server's requests are untrusted input --------------------------------------------

def test_a_request_that_lies_does_not_stop_the_server(warm, tmp_path):
    warm.ready(tmp_path)
    (address,) = warm.sockets()
    fds = devnulls()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as liar:
        liar.connect(str(address))
        socket.send_fds(liar, [b"\0\0\0\2{}"], fds)
    for fd in fds:
        os.close(fd)
    done = warm.run("--version", cwd=tmp_path)
    assert done.returncode == 0 and WARM_SAID in done.stderr, done.stderr


def test_a_request_cut_short_does_not_keep_the_callers_streams(warm, tmp_path):
    warm.ready(tmp_path)
    (address,) = warm.sockets()
    reader, writer = os.pipe()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as caller:
        caller.connect(str(address))
        socket.send_fds(caller, [struct.pack("!I", 100) + b'{"argv"'], [writer] * 3)
    os.close(writer)  # the caller is gone (killed while it sent)
    done = warm.run("--version", cwd=tmp_path)  # served after ours: ours was handled
    assert WARM_SAID in done.stderr, done.stderr
    os.set_blocking(reader, False)
    try:
        assert os.read(reader, 1) == b"", "the pipe has ended"
    except BlockingIOError:
        pytest.fail("the server still holds the write end of the caller's pipe")
    finally:
        os.close(reader)


def test_a_slow_connection_does_not_hold_other_commands(warm, tmp_path):
    warm.ready(tmp_path)
    (address,) = warm.sockets()
    stop = threading.Event()
    fds = devnulls()

    def trickle() -> None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as slow:
            slow.connect(str(address))
            socket.send_fds(slow, [struct.pack("!I", 10_000) + b"{"], fds)
            while not stop.wait(1.0):
                try:
                    slow.send(b" ")
                except OSError:
                    return

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    try:
        proc = warm.start("--version", cwd=tmp_path)
        done = ended(proc)
    finally:
        stop.set()
        thread.join()
        for fd in fds:
            os.close(fd)
    assert done is not None, "a warm command waited for another connection's request"
    assert WARM_SAID in done[1]


# --- The promises: a no-op is instant ------------------------------------------------------


def test_a_check_whose_answer_is_lost_does_not_pass_warm(warm, tmp_path):
    warm.env.pop("PYTHONUNBUFFERED", None)  # stdout block-buffered, as by default
    project(tmp_path)
    warm.ready(tmp_path)
    assert warm.run("-C", "p", "build", cwd=tmp_path, warm=False).returncode == 0
    codes = {}
    for mode in ("0", "1"):
        reader, writer = os.pipe()
        os.close(reader)  # `nbpipe build --check --shard 1/1 | true`: the reader is gone
        done = subprocess.run([sys.executable, str(warm.script), "-C", "p", "build", "--check",
                               "--shard", "1/1"], cwd=tmp_path,
                              env={**warm.env, "NBPIPE_WARM": mode}, stdout=writer,
                              stderr=subprocess.PIPE, text=True, timeout=120)
        os.close(writer)
        assert (WARM_SAID in done.stderr) == (mode == "1")
        codes[mode] = done.returncode
    assert codes["0"] != 0, "cold: the answer was lost, the gate fails"
    assert codes["1"] != 0, codes


# --- Attacks that held ----------------------------------------------------------------------

@pytest.mark.parametrize("args", [("plan",), ("build",), ("build", "--json"), ("--help",)])
def test_a_closed_stdout_ends_a_warm_command_as_a_cold_one(warm, tmp_path, args):
    """`nbpipe ... | head` where the reader is gone: the same exit code and words."""
    project(tmp_path)
    warm.ready(tmp_path)
    results = []
    for mode in ("0", "1", "1"):
        reader, writer = os.pipe()
        os.close(reader)
        done = subprocess.run([sys.executable, str(warm.script), "-C", "p", *args],
                              cwd=tmp_path, env={**warm.env, "NBPIPE_WARM": mode},
                              stdout=writer, stderr=subprocess.PIPE, text=True, timeout=120)
        os.close(writer)
        assert (WARM_SAID in done.stderr) == (mode == "1")
        results.append((done.returncode, [line for line in done.stderr.splitlines()
                                          if not line.startswith("nbpipe: ")]))
    assert results[0] == results[1] == results[2]


def test_the_server_holds_no_more_descriptors_after_many_commands(warm, tmp_path):
    warm.ready(tmp_path)
    (pid,) = warm.servers()
    before = sorted(os.listdir(f"/proc/{pid}/fd"))
    for _ in range(12):
        done = warm.run("--version", cwd=tmp_path)
        assert WARM_SAID in done.stderr
    assert sorted(os.listdir(f"/proc/{pid}/fd")) == before
    assert not [p for p in Path("/proc").iterdir() if p.name.isdigit() and
                _parent(p) == pid], "a child of the server is left (a zombie)"


def _parent(proc: Path) -> int | None:
    try:
        return int(proc.joinpath("stat").read_text().rsplit(") ", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def test_two_warm_builds_of_one_project_take_turns_at_its_lock(warm, held, tmp_path):
    """While a warm build holds the project, a second (warm or cold) is refused alike."""
    fake, env = held
    root, proc, child = held_build(warm, fake, env, tmp_path)
    try:
        second = {mode: warm.run("-C", "p", "build", "--no-wait", cwd=tmp_path,
                                 warm=mode == "1", **env) for mode in ("0", "1")}
        assert WARM_SAID in second["1"].stderr
        for done in second.values():
            assert "another nbpipe build holds" in done.stderr, done.stderr
        assert second["0"].returncode == second["1"].returncode != 0
    finally:
        fake.holds.release()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert fake.counts["creates"] == 1 and list(root.rglob("hero*.png"))


def test_a_server_killed_mid_command_leaves_the_command_to_finish(warm, held, tmp_path):
    """The child is the command, not the server's: kill -9 of the server changes nothing."""
    fake, env = held
    root, proc, child = held_build(warm, fake, env, tmp_path)
    (server,) = warm.servers()
    os.kill(server, signal.SIGKILL)
    wait_for(lambda: not alive(server))
    assert alive(child)
    fake.holds.release()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert fake.counts["creates"] == 1 and list(root.rglob("hero*.png"))
