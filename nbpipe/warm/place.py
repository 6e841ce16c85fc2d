"""Where a warm server listens: a socket named by everything the server fixed at its start.

Only the caller's own user may reach it: the folder is the user's runtime folder
($XDG_RUNTIME_DIR) or a folder in the temp dir made for this user, mode 0700, and it is refused
when it is anyone else's or open to others (the server checks the peer's uid too).
"""

from __future__ import annotations

import hashlib
import os
import stat
import sys
import tempfile
from pathlib import Path

__all__ = ["STARTUP", "folder", "interpreter_options", "key", "socket_for"]

# The variables the interpreter reads once at start (encodings, paths, hash seed, warnings):
# a server started under other values would behave as another interpreter.
STARTUP = ("LANG", "LC_ALL", "LC_CTYPE")
_PACKAGE = Path(__file__).resolve().parent.parent
_MAX_SOCKET_PATH = 107  # an AF_UNIX path has 108 bytes on Linux, its NUL among them
_NAME_ROOM = 42  # "/", the key, ".sock", and the pid a starting server binds under first


def interpreter_options(argv: list[str] | None = None) -> list[str]:
    """The options given to the interpreter itself (`python -X importtime -m nbpipe`), so the
    server runs under the same ones."""
    args = sys.orig_argv if argv is None else argv
    options: list[str] = []
    rest = iter(args[1:])
    for arg in rest:
        if arg in ("-m", "-c") or not arg.startswith("-") or arg == "-":
            break
        options.append(arg)
        if arg in ("-X", "-W", "--check-hash-based-pycs"):
            options.append(next(rest, ""))
    return options


def key(env: dict[str, str] | None = None) -> str:
    """A digest of what a server fixes at its start; a server answers only to its own."""
    env = dict(os.environ) if env is None else env
    digest = hashlib.sha256()
    parts = [sys.executable, sys.version, repr(sys.flags), repr(sorted(sys._xoptions.items())),
             *interpreter_options(), *sys.path,
             *(f"{name}={value}" for name, value in sorted(env.items())
               if name.startswith("PYTHON") or name in STARTUP)]
    parts += _installed(sys.path) + _sources(_PACKAGE) + _confinement()
    for part in parts:
        digest.update(part.encode("utf-8", "surrogateescape") + b"\0")
    return digest.hexdigest()[:24]


def _confinement() -> list[str]:
    """What the kernel confines this process to, and a fork keeps from its server: its
    namespaces (network, mounts, ...), root, cgroup, groups, priority and limits. A caller in a
    sandbox (no network, another root) or run `nice`d gets a server started inside the same,
    never one that would build for it from outside."""
    found = [f"groups={sorted(os.getgroups())}", f"nice={os.getpriority(os.PRIO_PROCESS, 0)}"]
    for kind in ("cgroup", "ipc", "mnt", "net", "pid", "user", "uts", "time"):
        try:
            found.append(os.readlink(f"/proc/self/ns/{kind}"))
        except OSError:
            found.append(f"{kind}:?")
    try:
        root = os.stat("/")
        found.append(f"root={root.st_dev}:{root.st_ino}")
        with open("/proc/self/cgroup", encoding="utf-8", errors="replace") as cgroup:
            found.append(cgroup.read())
    except OSError:
        found.append("cgroup:?")
    import resource

    found += [f"{name}={resource.getrlimit(getattr(resource, name))}"
              for name in dir(resource) if name.startswith("RLIMIT_")]
    return found


def _installed(paths: list[str]) -> list[str]:
    """The distributions installed on the path, by name and stat: an upgrade changes them."""
    found = []
    for entry in paths:
        try:
            with os.scandir(entry or ".") as listing:
                for item in listing:
                    if item.name.endswith((".dist-info", ".egg-info", ".pth", ".egg-link")):
                        found.append(f"{entry}/{item.name}:{item.stat().st_mtime_ns}")
        except OSError:  # a zip, a missing folder: nothing installed there to change
            continue
    return sorted(found)


def _sources(package: Path) -> list[str]:
    """nbpipe's own files by path, size and mtime: an edit of the code starts another server."""
    found = []
    pending = [package]
    while pending:
        with os.scandir(pending.pop()) as listing:
            for item in listing:
                if item.is_dir(follow_symlinks=False):
                    if item.name != "__pycache__":
                        pending.append(Path(item.path))
                elif not item.name.endswith(".pyc"):
                    meta = item.stat()
                    found.append(f"{item.path}:{meta.st_size}:{meta.st_mtime_ns}")
    return sorted(found)


def folder(env: dict[str, str] | None = None) -> Path | None:
    """The user's private folder for servers' sockets, made if need be; None when none is safe
    (owned by another user, open to others, or a path too long for a socket)."""
    env = dict(os.environ) if env is None else env
    runtime = env.get("XDG_RUNTIME_DIR")
    place = Path(runtime) / "nbpipe" if runtime else \
        Path(tempfile.gettempdir()) / f"nbpipe-warm-{os.getuid()}"
    try:
        place.mkdir(mode=0o700, exist_ok=True)
        meta = os.lstat(place)
    except OSError:
        return None
    private = stat.S_ISDIR(meta.st_mode) and meta.st_uid == os.getuid() and \
        not meta.st_mode & 0o077
    fits = len(os.fsencode(place)) + _NAME_ROOM <= _MAX_SOCKET_PATH
    return place if private and fits else None


def socket_for(place: Path, name: str) -> Path:
    """The socket of the server with key `name` in `place`."""
    return place / f"{name}.sock"
