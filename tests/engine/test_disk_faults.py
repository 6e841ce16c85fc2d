"""ENOSPC or EACCES while writing a blob, an output, the lock or the journal: a clear message,
and the previous lock, outputs and cache stay valid."""

from __future__ import annotations

import errno
import json
import os

import pytest
from filelock import FileLock

from tests.conftest import copy_example, on_preview, read_until


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.delenv("NBPIPE_CACHE_DIR", raising=False)
    root = tmp_path / "aria"
    return on_preview(copy_example("aria-lookbook", root))


def fail_replace(monkeypatch, needle: str, code: int) -> None:
    real = os.replace

    def replace(src, dst, *args, **kwargs):
        if needle in str(dst):
            raise OSError(code, os.strerror(code), str(dst))
        return real(src, dst, *args, **kwargs)
    monkeypatch.setattr(os, "replace", replace)


def snapshot(root):
    files = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and "index" not in path.parts and path.name != "state.json":
            files[str(path.relative_to(root))] = path.read_bytes()
    return files


def healthy(root, run) -> None:
    from PIL import Image

    assert run("-C", str(root), "build", "--backend", "preview").code == 0
    lock = json.loads((root / "nbpipe.lock").read_text())
    for entry in lock["frames"].values():
        Image.open(root / entry["output"]).load()
    assert list((root / ".nbpipe" / "tmp").iterdir()) == []
    assert not list(root.rglob("*.part"))


@pytest.mark.parametrize("needle, code, words", [
    ("/blobs/", errno.ENOSPC, "No space left on device"),
    ("/out/", errno.EACCES, "Permission denied"),
])
def test_blob_or_output_write_fault_stops_the_build_cleanly(needle, code, words, project, run,
                                                            monkeypatch):
    assert run("-C", str(project), "build", "--backend", "preview").code == 0
    (project / "nbpipe.yaml").write_text((project / "nbpipe.yaml").read_text()
                                         .replace("calm neutral", "calm, neutral"))
    before = snapshot(project)
    with monkeypatch.context() as m:
        fail_replace(m, needle, code)
        result = run("-C", str(project), "build", "--backend", "preview", "-j", "1")
    assert result.code == 1
    assert "Traceback" not in result.err
    assert f"cannot write ({project}" in result.out and words in result.out
    assert "skipped  " in result.out or "not sent" in result.out  # the build stopped
    after = snapshot(project)
    assert after["nbpipe.lock"] == before["nbpipe.lock"] or needle == "/out/"
    for name, data in before.items():
        if name.startswith("out/"):
            assert after[name] == data  # outputs not half-written
    healthy(project, run)


def test_lock_write_fault_keeps_the_previous_lock(project, run, monkeypatch):
    assert run("-C", str(project), "build", "--backend", "preview").code == 0
    previous = (project / "nbpipe.lock").read_text()
    (project / "out" / "frontal.png").unlink()
    (project / "nbpipe.yaml").write_text((project / "nbpipe.yaml").read_text()
                                         .replace("calm neutral", "calm, neutral"))
    with monkeypatch.context() as m:
        fail_replace(m, "nbpipe.lock", errno.ENOSPC)
        result = run("-C", str(project), "build", "--backend", "preview")
    assert result.code == 1 and "Traceback" not in result.err
    assert result.err.startswith(f"error: cannot write ({project}")
    assert "nbpipe.lock was left as it was" in result.err
    assert (project / "nbpipe.lock").read_text() == previous
    again = run("-C", str(project), "build", "--backend", "preview", "--json")
    summary = json.loads(again.out.splitlines()[-1])
    assert summary["rendered"] == 0  # what the failed build made is pinned from the cache
    healthy(project, run)


def test_journal_fault_sends_nothing(project, run, monkeypatch):
    import nbpipe.store.journal as journal

    def no_space(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "journal.jsonl")
    with monkeypatch.context() as m:
        m.setattr(journal.os, "fsync", no_space)
        result = run("-C", str(project), "build", "--backend", "preview", "-j", "1")
    assert result.code == 1 and "Traceback" not in result.err
    assert "No space left on device" in result.out
    assert not (project / "out").exists() or not any((project / "out").iterdir())
    healthy(project, run)


def test_two_builds_at_once_on_one_project_and_one_cache(tmp_path, monkeypatch):
    import subprocess
    import sys

    shared = tmp_path / "cache"
    roots = [tmp_path / "a", tmp_path / "b"]
    for root in roots:
        on_preview(copy_example("sneaker-colorways", root))
    env = {**os.environ, "NBPIPE_CACHE_DIR": str(shared), "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "nbpipe", "build", "--backend", "preview", "-j", "2"]
    # The test holds the shared cache until all three wait (a's first build for the cache, its
    # second for the project, b's for the cache), so they meet whatever the machine's load.
    shared.mkdir()
    held = FileLock(str(shared / "build.lock"))
    held.acquire()
    try:
        procs = [subprocess.Popen([*cmd[:3], "-C", str(root), *cmd[3:]], env=env, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for root in (roots[0], roots[0], roots[1])]
        waited = [read_until(p.stdout, "waiting for another nbpipe build") for p in procs]
    finally:
        held.release()
    results = [(said + out, err) for said, (out, err) in
               zip(waited, (p.communicate(timeout=120) for p in procs), strict=True)]
    assert [p.returncode for p in procs] == [0, 0, 0], results
    for root in roots:
        lock = json.loads((root / "nbpipe.lock").read_text())
        assert len(lock["frames"]) == 6
    text = "".join(out for out, _ in results)
    assert text.count("rendered ") + text.count("restored ") >= 6
    assert "waiting for another nbpipe build" in text


def test_restored_outputs_are_synced_once_before_the_lock_names_them(tmp_path, run, make_project,
                                                                     monkeypatch):
    """An fsync per restored output made a local restore 39x `cp -r`: the build's outputs are
    made durable by one sync of their file system, and only then is the lock saved."""
    import nbpipe.files as files
    from nbpipe.store.lock import Lock

    monkeypatch.delenv("NBPIPE_CACHE_DIR", raising=False)
    values = ", ".join(f"v{i}" for i in range(30))
    root = make_project("version: 1\ndefaults: {backend: preview, model: gemini-3.1-flash-image,"
                        " resolution: \"512\", aspect_ratio: \"1:1\"}\ntargets:\n  tile:\n"
                        f"    prompt: \"tile {{{{ v }}}}\"\n    matrix: {{v: [{values}]}}\n")
    assert run("-C", str(root), "build").code == 0
    for png in (root / "out").rglob("*.png"):
        png.unlink()
    said: list[str] = []
    real_fsync, real_save = os.fsync, Lock.save
    real_syncfs = getattr(files, "_syncfs", None)

    def fsync(fd):
        said.append("fsync")
        return real_fsync(fd)

    def syncfs(folder):
        said.append(f"syncfs {folder}")
        return real_syncfs(folder) if real_syncfs else None

    def save(self, where):
        said.append("lock")
        return real_save(self, where)
    with monkeypatch.context() as m:
        m.setattr(files.os, "fsync", fsync)
        m.setattr(files, "_syncfs", syncfs, raising=False)
        m.setattr(Lock, "save", save)
        result = run("-C", str(root), "build", "--json")
    assert json.loads(result.out.splitlines()[-1])["restored"] == 30
    assert said.count("fsync") < 10, said  # the lock, the state, the journal: not one per output
    synced = [i for i, s in enumerate(said) if s.startswith("syncfs")]
    assert len(synced) == 1 and synced[0] < said.index("lock"), said
    healthy(root, run)


def test_outputs_that_cannot_be_made_durable_leave_the_lock_as_it_was(project, run, monkeypatch):
    import nbpipe.files as files

    assert run("-C", str(project), "build", "--backend", "preview").code == 0
    previous = (project / "nbpipe.lock").read_text()
    (project / "out" / "frontal.png").unlink()
    (project / "nbpipe.yaml").write_text((project / "nbpipe.yaml").read_text()
                                         .replace("calm neutral", "calm, neutral"))

    def failing(folder):
        raise OSError(errno.EIO, os.strerror(errno.EIO), str(folder))
    with monkeypatch.context() as m:
        m.setattr(files, "_syncfs", failing, raising=False)
        result = run("-C", str(project), "build", "--backend", "preview")
    assert result.code == 1 and "Traceback" not in result.err
    assert "could not be made durable" in result.err and "Input/output error" in result.err
    assert (project / "nbpipe.lock").read_text() == previous
    again = run("-C", str(project), "build", "--backend", "preview", "--json")
    assert json.loads(again.out.splitlines()[-1])["rendered"] == 0
    healthy(project, run)
