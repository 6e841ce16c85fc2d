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
from typing import NamedTuple, TextIO

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
    conn = _accept_until_idle(listener, address, idle)
    if conn is None:
        return 0
    os.close(lock)
    return _become(conn, _received(conn))


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
                       idle: float) -> socket.socket | None:
    """Serve until idle; in a forked child, its connection (the server never returns one).
    The server only accepts and forks: a caller that is slow to say its request, or says a
    bad one, holds and ends its own child, never the server."""
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
        if _same_user(conn) and _fork() == 0:
            listener.close()
            return conn
        conn.close()
    if not _replaced(address, mine):
        address.unlink(missing_ok=True)
    return None


def _replaced(address: Path, inode: int) -> bool:
    try:
        return os.stat(address).st_ino != inode
    except OSError:
        return True


def _same_user(conn: socket.socket) -> bool:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _, uid, _ = struct.unpack("3i", creds)
    return uid == os.getuid()


def _fork() -> int:
    try:
        return os.fork()
    except OSError:
        return -1  # no child this time: the caller, told no pid, runs the command itself


def _received(conn: socket.socket) -> Request:
    """In the child: the caller's request, or the child leaves (the caller, told no pid,
    runs the command itself); the streams of a bad request are not kept."""
    fds: list[int] = []
    try:
        conn.settimeout(10.0)  # a caller that connects and says nothing ends its own child
        data, fds, flags, _ = socket.recv_fds(conn, 65536, 3)
        return _parsed(conn, data, fds, flags)
    except Exception:
        for fd in fds:
            os.close(fd)
        os._exit(1)


def _parsed(conn: socket.socket, data: bytes, fds: list[int], flags: int) -> Request:
    if len(fds) != 3 or flags & socket.MSG_CTRUNC or len(data) < _HEADER.size:
        raise ValueError("a request without its three streams")
    (size,) = _HEADER.unpack_from(data)
    if size > _MAX_REQUEST:
        raise ValueError("a request too large")
    body = data[_HEADER.size:]
    while len(body) < size:
        more = conn.recv(min(size - len(body), 1 << 20))
        if not more:
            raise ValueError("a request cut short")
        body += more
    raw = json.loads(body)
    argv, cwd, env, umask = raw["argv"], raw["cwd"], raw["env"], raw["umask"]
    if not (isinstance(argv, list) and all(isinstance(a, str) for a in argv) and argv and
            isinstance(cwd, str) and isinstance(env, dict) and isinstance(umask, int) and
            all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())):
        raise ValueError("a request of the wrong shape")
    conn.settimeout(None)
    return Request(argv, cwd, env, umask, fds)


def _become(conn: socket.socket, request: Request) -> int:
    """The child: take the caller's place, run the command, say its exit code, exit."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    try:
        _adopt(request)
    except Exception:  # nothing ran: the caller, told no pid, runs the command itself
        os._exit(1)
    from nbpipe import interrupts

    interrupts.install()  # the caller forwards a press the moment it has the pid
    try:
        conn.sendall(json.dumps({"pid": os.getpid()}).encode() + b"\n")
        threading.Thread(target=_die_with_caller, args=(conn,), daemon=True).start()
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
        except (OSError, ValueError):  # the interpreter's own exit says 120 when it cannot
            code = 120
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
    if mode == "r":
        return io.TextIOWrapper(io.BufferedReader(raw), encoding=encoding, errors=errors)
    # -u and PYTHONUNBUFFERED (in the key, so the server started with them) write through
    unbuffered = bool(getattr(like, "write_through", False))
    return io.TextIOWrapper(io.BufferedWriter(raw), encoding=encoding, errors=errors,
                            line_buffering=fd == 2 or (fd == 1 and os.isatty(fd)),
                            write_through=unbuffered)


def _die_with_caller(conn: socket.socket) -> None:
    """The caller gone (killed) means the command is killed: as `kill -9` of a cold one."""
    try:
        while conn.recv(1024):
            pass
    except OSError:
        pass
    os.kill(os.getpid(), signal.SIGKILL)
