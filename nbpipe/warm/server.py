"""The server's side: import everything once, then fork a child per command that becomes it.

The server itself never runs a command, so every child starts from the same state a cold
process has after its imports (module state, the journal's and the state file's caches,
random seeds: `random` reseeds itself in a forked child). One server per key; a second one
started for the same key finds the first's lock and leaves.
"""

from __future__ import annotations

import atexit
import fcntl
import importlib
import io
import json
import os
import pkgutil
import signal
import socket
import struct
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, NamedTuple, TextIO

__all__ = ["Request", "serve"]

_HEADER = struct.Struct("!I")
_MAX_REQUEST = 16 << 20  # an environment and argv: far less; more is no caller of ours
_TICK = 60.0  # how often an idle server checks that its socket is still its own


class Request(NamedTuple):
    """A command as its caller would run it: argv, folder, environment, umask, streams."""

    argv: list[str]
    cwd: str
    env: dict[str, str]
    umask: int
    fds: list[int]


def serve(place: str, name: str, idle: float) -> int:
    """Listen at `place`/`name`.sock until idle for `idle` seconds; in a child, the exit code
    of the command it ran."""
    folder = Path(place)
    lock = _lock(folder / f"{name}.lock")
    if lock is None:
        return 0  # another server of this key is starting or running
    try:
        _warm_up()
    except Exception as exc:  # a broken install: say so once, and let callers run cold
        (folder / f"{name}.failed").write_text(f"{type(exc).__name__}: {exc}\n")
        return 1
    address = folder / f"{name}.sock"
    listener = _listen(address)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    from nbpipe.launch import collect_less

    collect_less()
    request = _accept_until_idle(listener, address, idle)
    if request is None:
        return 0
    os.close(lock)
    return _become(*request)


def _lock(path: Path) -> int | None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())  # `kill $(cat KEY.lock)` stops this server
    return fd


def _warm_up() -> None:
    """Every module of nbpipe a command may import (a missing optional library is skipped:
    the command that needs it says so, as it would cold)."""
    import nbpipe

    for module in pkgutil.walk_packages(nbpipe.__path__, "nbpipe."):
        if module.name.startswith(("nbpipe.warm", "nbpipe.__main__")):
            continue
        try:
            importlib.import_module(module.name)
        except ImportError:
            continue


def _listen(address: Path) -> socket.socket:
    """Bound under a temporary name and moved into place listening: a caller never finds a
    socket that refuses it while this server starts."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    staging = address.with_name(f"{address.name}.{os.getpid()}")
    staging.unlink(missing_ok=True)
    listener.bind(str(staging))
    listener.listen(64)
    os.replace(staging, address)
    return listener


def _accept_until_idle(listener: socket.socket, address: Path,
                       idle: float) -> tuple[socket.socket, Request] | None:
    """Serve until idle; in a forked child, its connection and request (the parent never
    returns a request)."""
    mine = os.stat(address).st_ino
    last = time.monotonic()
    while (left := idle - (time.monotonic() - last)) > 0:
        listener.settimeout(min(left, _TICK))
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            if _replaced(address, mine):
                return None  # removed or taken by another server: this one is not found
            continue
        last = time.monotonic()
        child = _fork(conn)
        if child is not None:
            listener.close()
            return conn, child
        conn.close()
    if not _replaced(address, mine):
        address.unlink(missing_ok=True)
    return None


def _replaced(address: Path, inode: int) -> bool:
    try:
        return os.stat(address).st_ino != inode
    except OSError:
        return True


def _fork(conn: socket.socket) -> Request | None:
    """In the child, the request to run; in the server, None (the child has it)."""
    conn.settimeout(10.0)  # a caller that connects and says nothing does not hold the server
    try:
        request = _receive(conn)
    except (OSError, ValueError):
        return None
    if request is None:
        return None
    try:
        pid = os.fork()
    except OSError:
        pid = -1
    if pid == 0:
        conn.settimeout(None)
        return request
    for fd in request.fds:
        os.close(fd)
    return None


def _receive(conn: socket.socket) -> Request | None:
    """The caller's request, from the caller's own user only."""
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _, uid, _ = struct.unpack("3i", creds)
    if uid != os.getuid():
        return None
    data, fds, flags, _ = socket.recv_fds(conn, 65536, 3)
    if len(fds) != 3 or flags & socket.MSG_CTRUNC or len(data) < _HEADER.size:
        for fd in fds:
            os.close(fd)
        return None
    (size,) = _HEADER.unpack_from(data)
    body = data[_HEADER.size:]
    while len(body) < size <= _MAX_REQUEST:
        more = conn.recv(min(size - len(body), 1 << 20))
        if not more:
            break
        body += more
    if len(body) != size:
        raise ValueError("a request cut short")
    raw: dict[str, Any] = json.loads(body)
    return Request(list(raw["argv"]), str(raw["cwd"]), dict(raw["env"]), int(raw["umask"]),
                   fds)


def _become(conn: socket.socket, request: Request) -> int:
    """The child: take the caller's place, run the command, say its exit code, exit."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    try:
        _adopt(request)
    except Exception:  # nothing ran: the caller, told no pid, runs the command itself
        os._exit(1)
    from nbpipe import interrupts

    interrupts.install()  # the caller forwards a press the moment it has the pid
    threading.Thread(target=_die_with_caller, args=(conn,), daemon=True).start()
    try:
        conn.sendall(json.dumps({"pid": os.getpid()}).encode() + b"\n")
    except OSError:  # the caller is gone, or may run the command itself: not here
        os._exit(1)
    except KeyboardInterrupt:  # (the pid was out: only the caller sends it a press)
        code = _interrupted()
    else:
        code = _command(request.argv[1:])
    _finish(conn, code)
    return code


def _command(argv: list[str]) -> int:
    """The command's exit code, as the interpreter would end it."""
    from nbpipe.launch import run

    try:
        return run(argv)
    except KeyboardInterrupt:  # pressed before the command's own handlers: as cold
        return _interrupted()
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # the traceback, exit 1
        traceback.print_exc()
        return 1


def _interrupted() -> int:
    sys.stderr.write("interrupted\n")
    return 130


def _finish(conn: socket.socket, code: int) -> None:
    """End as the interpreter ends a process (its threads joined, its exit handlers run, its
    output flushed), then say the exit code and leave without tearing down the imports: that
    teardown is the server's cost, not the command's (tens of milliseconds). A press now
    finds the command over: it cannot cut the exit code off."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # What the interpreter's own exit does first: threading's exit hooks (an executor lets
    # its workers go), then a join of every thread that is not a daemon. It has no public
    # name; the interpreter calls it by this one.
    vars(threading)["_shutdown"]()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    try:
        conn.sendall(json.dumps({"exit": code}).encode() + b"\n")
    finally:
        os._exit(code)


def _adopt(request: Request) -> None:
    """The caller's folder, environment, umask and streams, for the rest of this process."""
    os.chdir(request.cwd)
    os.environ.clear()
    os.environ.update(request.env)
    time.tzset()
    os.umask(request.umask)
    sys.argv = list(request.argv)
    for target, fd in enumerate(request.fds):
        os.dup2(fd, target)
        os.close(fd)
    # sys.__stdout__ and its kin keep their objects: on the same descriptors now, they
    # answer fileno() and the terminal's size for the caller's streams, as cold
    sys.stdin = _stream(0, sys.__stdin__, "r")
    sys.stdout = _stream(1, sys.__stdout__, "w")
    sys.stderr = _stream(2, sys.__stderr__, "w")


def _stream(fd: int, like: TextIO | None, mode: str) -> io.TextIOWrapper:
    """A text stream on fd as the interpreter makes one at start: the encoding of this
    locale, line-buffered on a terminal (stderr always)."""
    encoding = like.encoding if like is not None else "utf-8"
    errors = like.errors if like is not None else "strict"
    raw = io.FileIO(fd, mode, closefd=False)
    buffered = io.BufferedReader(raw) if mode == "r" else io.BufferedWriter(raw)
    return io.TextIOWrapper(buffered, encoding=encoding, errors=errors,
                            line_buffering=fd == 2 or (fd == 1 and os.isatty(fd)))


def _die_with_caller(conn: socket.socket) -> None:
    """The caller gone (killed) means the command is killed: as `kill -9` of a cold one."""
    try:
        while conn.recv(1024):
            pass
    except OSError:
        pass
    os.kill(os.getpid(), signal.SIGKILL)
