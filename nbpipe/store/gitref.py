"""Reading the project as committed at a git ref: its lock and its committed output files.

What a ref holds is untrusted (a pull request chooses it): a lock read here is validated entry
by entry before any field names a path or a blob, and a committed output is used only when its
bytes hash to the digest that lock pins.
"""

from __future__ import annotations

import hashlib
import shlex
import subprocess
from pathlib import Path

from nbpipe.errors import UsageError
from nbpipe.files import is_sha256
from nbpipe.plan.paths import PathRefused, relative_path
from nbpipe.projectfile import LOCK_CAP
from nbpipe.store import jsontext
from nbpipe.store.blobs import BLOB_CAP
from nbpipe.store.lock import LOCK_NAME, Lock, LockEntry

MAX_NAME = 200  # characters of a model or backend name in a BASE lock (the page shows them)


def git(root: Path, *args: str, binary: bool = False) -> str | bytes:
    """Run git in `root`; CalledProcessError or OSError when it fails."""
    done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, check=True)
    return done.stdout if binary else done.stdout.decode("utf-8", "replace")


def repo_path(root: Path, rel: str = "",
              why: str = "diff and review compare with the lock committed at a git ref") -> str:
    """`rel` (project-relative) as a path from the repository's top, for `git show REF:PATH`."""
    try:
        top = Path(str(git(root, "rev-parse", "--show-toplevel")).strip())
    except OSError:
        raise UsageError("git is not installed (or not on PATH)", why) from None
    except subprocess.CalledProcessError:
        raise UsageError(f"{root} is not in a git repository", why) from None
    inside = root.resolve().relative_to(top.resolve()) / rel
    return inside.as_posix()


def default_base(root: Path) -> str:
    """The merge-base with the upstream branch when there is one, else HEAD."""
    try:
        return str(git(root, "merge-base", "HEAD", "@{upstream}")).strip()
    except (OSError, subprocess.CalledProcessError):
        return "HEAD"


def resolve(root: Path, ref: str) -> str:
    """The commit `ref` names, or a usage error (exit 2) naming it."""
    if ref.startswith("-"):
        raise UsageError(f"'{ref}' is not a git ref")
    repo_path(root)  # outside a repository, say so rather than "unknown ref"
    try:
        return str(git(root, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")).strip()
    except (OSError, subprocess.CalledProcessError):
        raise UsageError(f"unknown git ref '{ref}'",
                         "name a branch, tag or commit, e.g. origin/main") from None


def tracks(root: Path, folder: Path) -> bool:
    """Whether git tracks a file in `folder` (or cannot tell): a pull request's checkout can
    put files there that nbpipe did not make. A folder outside the repository: False."""
    try:
        top = Path(str(git(root, "rev-parse", "--show-toplevel")).strip()).resolve()
        real = folder.resolve()
        if not real.is_relative_to(top):
            return False
        return bool(str(git(top, "ls-files", "--", str(real.relative_to(top)) or ".")).strip())
    except (OSError, subprocess.CalledProcessError):
        return True


def committed_files(folder: Path) -> list[str]:
    """The files git tracks in `folder` (relative to it); none outside a repository, without
    git, or when git will not say (it refuses a repository another user owns)."""
    if not folder.is_dir():
        return []
    try:
        listed = str(git(folder, "ls-files", "-z", "--", "."))
    except (OSError, subprocess.CalledProcessError):
        return []
    return [name for name in listed.split("\0") if name]


def refuse_committed_store(root: Path, cache_dir: Path) -> None:
    """UsageError if git tracks anything in the project's `.nbpipe/` or in the cache directory.

    They are this machine's record of what was paid for: a take record maps a request's key to
    an image, the fingerprint says nothing changed. A commit that carries them (a pull request's
    checkout in CI) could map any frame to any image, which a build would then "restore", pin
    and push to the team's remote cache. Ignoring them instead would leave a build that silently
    pays for everything the folder claimed, and the files in the repository for the next run.
    """
    for folder in dict.fromkeys([root / ".nbpipe", cache_dir]):
        tracked = committed_files(folder)
        if tracked:
            shown = f"{folder}/{tracked[0]}" + (f" and {len(tracked) - 1} more"
                                                if len(tracked) > 1 else "")
            raise UsageError(
                f"git tracks files in {folder}/ ({shown}): nbpipe's cache and state are this "
                "machine's record of what was paid for, and a commit could forge them (map a "
                "frame to any image), so nbpipe will not use them",
                f"untrack them (they stay on disk): git rm -r --cached {shlex.quote(str(folder))}"
                f", then add {folder.name}/ to .gitignore and commit")


def show(root: Path, commit: str, rel: str) -> bytes | None:
    """The bytes of project file `rel` at `commit`, or None when it is not there."""
    try:
        return git(root, "show", f"{commit}:{repo_path(root, rel)}", binary=True)  # type: ignore[return-value]
    except (OSError, subprocess.CalledProcessError):
        return None


def lock_at(root: Path, commit: str, profile: str | None) -> Lock:
    """nbpipe.lock as committed at `commit` (empty when there was none), validated; one
    larger than the working tree's cap (projectfile.LOCK_CAP) is refused unread."""
    size = _size_at(root, commit, LOCK_NAME)
    if size is not None and size > LOCK_CAP:
        raise UsageError(f"nbpipe.lock at {commit[:12]} is larger than {LOCK_CAP >> 20} MiB: "
                         "not read")
    data = show(root, commit, LOCK_NAME)
    if data is None:
        return Lock(profile=profile)
    where = f"nbpipe.lock at {commit[:12]}"
    try:
        doc = jsontext.loads(data.decode("utf-8"))
        if not isinstance(doc, dict):
            raise ValueError("not a JSON object")
        lock = Lock.parse(doc, profile, unchecked=True)  # refused below, as a located error
    except (ValueError, UnicodeDecodeError) as exc:
        raise UsageError(f"{where} is not a valid lock file ({exc})") from None
    for name, entry in lock.entries.items():
        problem = entry_problem(entry)
        if problem:
            raise UsageError(f"{where}: frame '{name}' {problem}")
    return lock


def _size_at(root: Path, commit: str, rel: str) -> int | None:
    try:
        return int(str(git(root, "cat-file", "-s", f"{commit}:{repo_path(root, rel)}")))
    except (OSError, ValueError, subprocess.CalledProcessError):
        return None


def entry_problem(entry: LockEntry) -> str | None:
    """Why a lock entry cannot be trusted to name a blob or a path, or None."""
    if not all(isinstance(text, str) and len(text) <= MAX_NAME for text in
               (entry.model, entry.backend)):
        return f"has a model or backend name of more than {MAX_NAME} characters"
    if not is_sha256(entry.key):
        return "has a key that is not a SHA-256"
    if not is_sha256(entry.digest):
        return "has a digest that is not a SHA-256"
    if not isinstance(entry.output, str) or not safe_relative(entry.output):
        return "has an output path outside the project"
    if not isinstance(entry.cost_usd, (int, float)) or not 0 <= entry.cost_usd < 1e6:
        return "has an impossible cost"
    return None


def safe_relative(path: str) -> bool:
    """A lock's output path as nbpipe writes it: normalised, relative, inside the project."""
    try:
        return relative_path(path) == path
    except PathRefused:
        return False


class Committed:
    """The project's files as committed at one commit, read by two git processes whatever
    their number (a BASE lock of thousands of entries cost two each): one `git ls-tree` lists
    the project's files with their object ids and sizes, one `git cat-file --batch` is fed
    the ids of those read. Only ids from that listing reach git's input, never a path from a
    lock; a file over BLOB_CAP, or anything but a regular blob (a symbolic link, a
    submodule), is not read. A file is used only if its bytes hash to the pinned digest."""

    root: Path
    commit: str
    _files: dict[str, tuple[str, int]] | None  # project-relative path: (object id, size)
    _reader: subprocess.Popen[bytes] | None
    _broken: bool  # cat-file died or said something unexpected: read no more

    def __init__(self, root: Path, commit: str):
        self.root = root
        self.commit = commit
        self._files = None
        self._reader = None
        self._broken = False

    def image(self, output: str, digest: str) -> bytes | None:
        """The output file committed at the commit, if its bytes are the pinned image."""
        if not safe_relative(output):
            return None
        found = self._listing().get(output)
        if found is None or found[1] > BLOB_CAP:
            return None
        data = self._read(*found)
        if data is None or hashlib.sha256(data).hexdigest() != digest:
            return None
        return data

    def _listing(self) -> dict[str, tuple[str, int]]:
        if self._files is None:
            self._files = {}
            if not _is_object_id(self.commit):  # resolved by `resolve`: never an option
                return self._files
            try:
                prefix = repo_path(self.root)
                tree = self.commit if prefix == "." else f"{self.commit}:{prefix}"
                listed = git(self.root, "ls-tree", "-r", "-z", "--long", "--full-tree", tree,
                             binary=True)
            except (OSError, UsageError, subprocess.CalledProcessError):
                return self._files
            if isinstance(listed, bytes):
                self._files = dict(filter(None, map(_listed, listed.split(b"\0"))))
        return self._files

    def _read(self, oid: str, size: int) -> bytes | None:
        reader = self._open()
        if reader is None or reader.stdin is None or reader.stdout is None:
            return None
        try:
            reader.stdin.write(oid.encode("ascii") + b"\n")
            reader.stdin.flush()
            header = reader.stdout.readline(200).split()
            if header == [oid.encode("ascii"), b"missing"]:
                return None  # not in this clone (a shallow or partial one): the next may be
            if header != [oid.encode("ascii"), b"blob", str(size).encode("ascii")]:
                raise OSError("unexpected answer")
            data = reader.stdout.read(size + 1)
            if len(data) != size + 1 or not data.endswith(b"\n"):
                raise OSError("short answer")
        except (OSError, ValueError):
            self._broken = True
            self.close()
            return None
        return data[:-1]

    def _open(self) -> subprocess.Popen[bytes] | None:
        if self._reader is None and not self._broken:
            try:
                self._reader = subprocess.Popen(
                    ["git", "-C", str(self.root), "cat-file", "--batch"],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            except OSError:
                self._broken = True
        return self._reader

    def close(self) -> None:
        """End the cat-file process (it exits when its input closes)."""
        reader, self._reader = self._reader, None
        if reader is None:
            return
        try:
            if reader.stdin is not None:
                reader.stdin.close()
            reader.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            reader.kill()
            reader.wait()
        finally:
            if reader.stdout is not None:
                reader.stdout.close()


def _listed(line: bytes) -> tuple[str, tuple[str, int]] | None:
    """One `ls-tree --long` line (MODE TYPE ID SIZE\tPATH) as (path, (id, size)); regular
    blobs only."""
    info, _, name = line.partition(b"\t")
    fields = info.split()
    if len(fields) != 4 or fields[0] not in (b"100644", b"100755") or fields[1] != b"blob":
        return None
    oid, size = fields[2].decode("ascii", "replace"), fields[3]
    if not (_is_object_id(oid) and size.isdigit()):
        return None
    return name.decode("utf-8", "surrogateescape"), (oid, int(size))


def _is_object_id(text: str) -> bool:
    """A git object id: 40 (SHA-1) or 64 (SHA-256) lowercase hex digits."""
    return len(text) in (40, 64) and all(c in "0123456789abcdef" for c in text)
