"""The caller's side: hand the command to a warm server's child, stand in for it, exit as it does.

Until the child's pid comes back nothing has run, so any failure up to there means "run it
here, cold" (and start a server for the next command). Once the pid came the command is the
child's: the caller never runs it a second time, whatever happens to the connection.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import struct
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import IO, Any

from nbpipe.files import umask
from nbpipe.warm.place import STARTUP, folder, interpreter_options, key, socket_for

__all__ = ["FORWARDED", "run"]

# The signals a terminal or a supervisor sends to stop a command: the child gets them as a
# cold command would (Ctrl-C drains the build's requests, a second press stops it).
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
LOST = 1  # the child ended without saying its exit code (it was killed)


def supported() -> bool:
    """Forking with passed descriptors and the peer's uid: Linux."""
    return hasattr(os, "fork") and hasattr(socket, "send_fds") and \
        hasattr(socket, "SO_PEERCRED")


def run(argv: list[str], idle: float, explain: bool = False) -> int | None:
    """The exit code of the command run by a warm child; None when no server took it, to be
    run here (a server is started, unless one is starting, for the next command). `explain`
    (NBPIPE_EXPLAIN) says on stderr which it was."""
    place = folder() if supported() else None
    if place is None or not _streams_open():
        if explain:
            sys.stderr.write("nbpipe: no warm server here (it needs Linux, a private runtime "
                             "folder and open standard streams): run here\n")
        return None
    name = key()
    address = socket_for(place, name)
    try:
        cwd = os.getcwd()
    except OSError:  # a removed working folder: the cold path says so in its words
        return None
    relay = _Relay()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            try:
                sock.connect(str(address))
                _send(sock, {"argv": sys.argv, "cwd": cwd, "env": dict(os.environ),
                             "umask": umask()})
            except OSError:
                relay.restore()
                _start(place, name, idle)
                if explain:
                    sys.stderr.write(f"nbpipe: no warm server at {address}: run here; one "
                                     "starts for the next command\n")
                return None
            return relay.converse(sock, explain)
    except _Stopped as stop:  # before any child had the command (closed: one that was
        relay.restore()       # about to start kills itself): the signal ends it as cold
        os.kill(os.getpid(), stop.signum)
        return None


def _streams_open() -> bool:
    try:
        return all(os.fstat(fd) is not None for fd in (0, 1, 2))
    except OSError:
        return False


def _send(sock: socket.socket, request: dict[str, object]) -> None:
    payload = json.dumps(request).encode()
    socket.send_fds(sock, [struct.pack("!I", len(payload)) + payload], [0, 1, 2])


class _Stopped(Exception):
    """A stopping signal came while no child had the command yet."""

    signum: int

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


class _Relay:
    """Stands in for the child: forwards the stopping signals, waits for its exit code."""

    __slots__ = ("before", "child", "done", "sent")
    before: dict[int, Callable[[int, FrameType | None], Any] | int | None]
    child: int | None
    done: bool
    sent: list[int]

    def __init__(self) -> None:
        self.child = None
        self.done = False  # the exit code came: a signal now finds the command over
        self.sent = []  # the signals forwarded
        self.before = {sig: signal.signal(sig, self._forward) for sig in FORWARDED}
        self.before[signal.SIGTSTP] = signal.signal(signal.SIGTSTP, self._suspend)

    def _forward(self, signum: int, frame: FrameType | None) -> None:
        if self.done:
            return
        if self.child is None:  # nothing is running it: stop here, as a cold command would
            raise _Stopped(signum)
        self.sent.append(signum)
        with contextlib.suppress(ProcessLookupError):  # it is ending: its code is on the way
            os.kill(self.child, signum)

    def _suspend(self, signum: int, frame: FrameType | None) -> None:
        """Ctrl-Z stops the child with its caller, and `fg` continues both, as a cold
        command is stopped and continued whole."""
        if self.child is not None and not self.done:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.child, signal.SIGSTOP)
        signal.signal(signal.SIGTSTP, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTSTP)  # stopped here until SIGCONT
        signal.signal(signal.SIGTSTP, self._suspend)
        if self.child is not None and not self.done:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.child, signal.SIGCONT)

    def restore(self) -> None:
        """The handlers of before."""
        for sig, handler in self.before.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)

    def converse(self, sock: socket.socket, explain: bool) -> int | None:
        """The child's exit code, once it is gone; None if no child was made."""
        lines = sock.makefile("rb")
        try:
            hello = _read(lines)
        except OSError:
            hello = None
        if not isinstance(hello, dict) or not isinstance(hello.get("pid"), int):
            self.restore()
            return None  # the server went away before forking: nothing ran
        self.child = hello["pid"]
        if explain:
            sys.stderr.write(f"nbpipe: run by the warm server's process {self.child}\n")
        try:
            said = _read(lines)
            self.done = isinstance(said, dict) and "exit" in said
            while lines.read(65536):  # until the child is gone (its locks are free)
                pass
        except OSError:
            said = None
        self.restore()
        code = said.get("exit") if isinstance(said, dict) else None
        if isinstance(code, int):
            return code
        ending = [sig for sig in self.sent if sig != signal.SIGINT]
        if ending:  # it died of the signal passed on: so does its caller, as cold
            signal.signal(ending[-1], signal.SIG_DFL)
            os.kill(os.getpid(), ending[-1])
        sys.stderr.write("nbpipe: the warm process running this command ended without an "
                         "exit code (it was killed); run it again with NBPIPE_WARM=0 to "
                         "run it here\n")
        return LOST


def _read(lines: IO[bytes]) -> object:
    line = lines.readline()
    try:
        return json.loads(line) if line else None
    except ValueError:
        return None


def _start(place: Path, name: str, idle: float) -> None:
    """A server for the next command, in its own session (a terminal's Ctrl-C is not for it).
    Not when one of this key failed to start: it would fail again at every command."""
    if (place / f"{name}.failed").exists():
        return
    import subprocess  # here only: the commands a server takes need none
    code = (f"import sys; sys.path[:] = {sys.path!r}\n"
            "from nbpipe.warm.server import serve\n"
            f"raise SystemExit(serve({str(place)!r}, {name!r}, {idle!r}))")
    # What the interpreter reads at start, and no more: the server never runs a command, and
    # holds no key of the caller's (a child takes its caller's whole environment).
    env = {var: value for var, value in os.environ.items()
           if var.startswith("PYTHON") or var in STARTUP or var in ("PATH", "HOME", "TMPDIR")}
    try:
        subprocess.Popen([sys.executable, *interpreter_options(), "-c", code], cwd=place,
                         env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)
    except OSError:
        pass  # no server this time: every command runs cold, as without NBPIPE_WARM
