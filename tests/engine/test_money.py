"""Never pay twice, never lose a paid image (issue 12 and issue 17, items 1-6 and 11): one
regression test per bug, judged from outside (creates at the fake, the journal, exit codes)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from tests.samples import GEMINI_ONE, ONE, TWO, journal, notes, on_gemini


def leave_a_stuck_task(make_project, fake, build, monkeypatch) -> Path:
    """Build a and b with b's task stuck past the timeout: b's paid task stays in the journal."""
    root = make_project(TWO)
    monkeypatch.setenv("NBPIPE_HIAPI_TIMEOUT", "0.3")
    fake.faults.add("task", None, "stuck")  # a is created first, b second
    build(root, "-j", "1")
    assert len(journal(root).open) == 1
    monkeypatch.delenv("NBPIPE_HIAPI_TIMEOUT")
    return root


def unstick(fake, outcome: str = "success") -> None:
    """The platform catches up: every task still running ends with `outcome`."""
    for task in fake.tasks.values():
        if task.outcome == "stuck":
            task.outcome = outcome


def test_a_frame_whose_task_fails_twice_still_builds(fake_hiapi, build, make_project):
    """17.2: the failed-task counter was diskcache `incr` on a JSON value: TypeError, exit 3."""
    root = make_project(TWO)
    fake_hiapi.faults.add("task", "fail")
    assert build(root, "-j", "1")["failed"] == 1
    fake_hiapi.faults.add("task", "fail")
    assert build(root)["failed"] == 1
    third = build(root)
    assert (third["code"], third["rendered"]) == (0, 1)
    assert len(set(fake_hiapi.created_keys)) == fake_hiapi.counts["creates"] == 4  # no replay


def test_refused_requests_leave_no_open_journal_entry(fake_hiapi, fake_gemini, build,
                                                      make_project):
    """12.4: intents of frames that failed without a task were replayed by every build."""
    root = make_project(TWO.replace("  b: {prompt: a harbour}",
                                    "  b: {prompt: a harbour, backend: gemini, "
                                    "model: gemini-3.1-flash-image}"))
    fake_hiapi.faults.add("create", "400")
    fake_gemini.faults.add("generate", "safety")
    summary = build(root)
    assert summary["failed"] == 2
    assert journal(root).open == {}


def test_a_lost_gemini_reply_is_counted_as_possibly_billed_and_closed(fake_gemini, build,
                                                                      make_project):
    root = make_project(on_gemini(TWO))
    fake_gemini.faults.add("generate", "drop")
    summary = build(root, "-j", "1")
    assert (summary["failed"], summary["maybe_billed"]) == (1, 1)
    assert journal(root).open == {}


def test_a_failed_left_over_task_is_not_called_recovered_and_is_not_replayed(
        fake_hiapi, build, make_project, monkeypatch):
    """12.3: a failed task was reported "recovered", and the take number was not advanced."""
    root = leave_a_stuck_task(make_project, fake_hiapi, build, monkeypatch)
    unstick(fake_hiapi, "fail")
    (root / "nbpipe.yaml").write_text(ONE)  # b is no longer declared: recovery collects it
    summary = build(root)
    said = " ".join(notes(summary))
    assert "recovered" not in said and "failed" in said
    assert journal(root).open == {}
    (root / "nbpipe.yaml").write_text(TWO)
    again = build(root)
    assert (again["code"], again["rendered"]) == (0, 1)
    assert len(set(fake_hiapi.created_keys)) == 3  # a new Idempotency-Key, not the failure's


def test_recovery_is_concurrent_and_bounded(fake_hiapi, build, make_project, monkeypatch):
    """12.3/17.5: left-over tasks were polled one after another, each with the full timeout."""
    many = "version: 1\ndefaults: {backend: hiapi, model: Nano-Banana}\ntargets:\n" + \
        "".join(f"  t{i}: {{prompt: tile {i}}}\n" for i in range(6))
    root = make_project(many)
    monkeypatch.setenv("NBPIPE_HIAPI_TIMEOUT", "0.2")
    fake_hiapi.faults.add("task", *["stuck"] * 6)
    assert build(root)["left"] == 6
    monkeypatch.setenv("NBPIPE_HIAPI_TIMEOUT", "30")
    monkeypatch.setenv("NBPIPE_RECOVER_TIMEOUT", "1.5")
    (root / "nbpipe.yaml").write_text(many.split("  t0")[0] + "  other: {prompt: x}\n")
    import time

    started = time.monotonic()
    summary = build(root)
    elapsed = time.monotonic() - started
    assert elapsed < 60, elapsed  # one bound for all six, not 6 x 30 s (room for a loaded machine)
    assert any("6 task(s) of earlier builds still out" in n for n in notes(summary)), notes(summary)
    assert len(journal(root).open) == 6  # still there for the next build
    unstick(fake_hiapi)
    summary = build(root)
    assert sum(n.startswith("recovered ") for n in notes(summary)) == 6
    assert journal(root).open == {}


def test_no_fast_path_while_the_journal_has_open_entries(fake_hiapi, build, make_project,
                                                         monkeypatch):
    """12.3: once every frame was fresh, the fast path skipped the journal: the paid task of a
    removed frame was never collected."""
    root = leave_a_stuck_task(make_project, fake_hiapi, build, monkeypatch)
    (root / "nbpipe.yaml").write_text(ONE)
    monkeypatch.setenv("NBPIPE_RECOVER_TIMEOUT", "0.5")
    build(root)  # a is fresh, b's task is still stuck
    assert len(journal(root).open) == 1
    unstick(fake_hiapi)
    summary = build(root)
    assert any(n.startswith("recovered b") for n in notes(summary))
    assert journal(root).open == {}


def test_no_fast_path_when_a_killed_build_left_tasks_after_a_fingerprint(
        fake_hiapi, build, make_project, monkeypatch, run):
    """A build killed after an earlier complete build wrote its fingerprint leaves open entries
    the fast path must not skip (the lock and outputs did not change, so only the journal
    tells)."""
    root = leave_a_stuck_task(make_project, fake_hiapi, build, monkeypatch)
    left = (root / ".nbpipe" / "journal.jsonl").read_bytes()
    unstick(fake_hiapi)
    build(root)
    assert journal(root).open == {} and "nothing to do" in run("-C", str(root), "build").out
    (root / ".nbpipe" / "journal.jsonl").write_bytes(left)  # what a kill -9 leaves behind
    result = run("-C", str(root), "build")
    assert result.code == 0 and result.out.startswith("recovered b")
    assert journal(root).open == {}


def test_an_expired_left_over_task_is_closed_counted_lost_and_rendered_anew(
        fake_hiapi, build, make_project, monkeypatch):
    """17.3: the journal kept the dead task and every build (and --force) resumed it."""
    root = leave_a_stuck_task(make_project, fake_hiapi, build, monkeypatch)
    unstick(fake_hiapi)
    fake_hiapi.faults.add("download", *["gone"] * 2)  # the URL, and the renewed one
    summary = build(root)
    assert (summary["code"], summary["lost"], summary["rendered"]) == (0, 1, 1)
    # the dead task was left out uncounted by the build that sent it (HiAPI bills no failed
    # task): counted here, lost, as paid by that build; 0.05 spent is b anew
    assert (summary["spent_usd"], summary["lost_usd"], summary["spent_earlier_usd"]) == \
        (0.05, 0.05, 0.05)
    assert any(n.startswith("lost      b") for n in notes(summary))
    assert fake_hiapi.counts["creates"] == 3  # b's dead task is closed: a new one
    assert journal(root).open == {}
    assert build(root)["rendered"] == 0


def test_an_image_that_vanishes_while_writing_is_lost_not_rendered(fake_hiapi, build,
                                                                  make_project, monkeypatch):
    """17.6: counted as rendered and failed, and its price as spent."""
    from nbpipe.store.blobs import Blobs

    root = make_project(ONE)
    monkeypatch.setattr(Blobs, "copy_verified", lambda self, digest, dest, batch=None: False)
    summary = build(root)
    assert (summary["rendered"], summary["failed"], summary["lost"]) == (0, 1, 1)
    assert summary["spent_usd"] == summary["lost_usd"] == 0.05  # paid: lost is inside spent


def test_identical_requests_are_sent_once_and_planned_as_restores(fake_hiapi, run, build,
                                                                  make_project):
    """12.2: two frames with one key were each rendered (and paid)."""
    root = make_project(TWO.replace("a harbour", "a lighthouse"))
    plan = run("-C", str(root), "plan").out
    assert "restore  same request as a" in plan and "USD 0.05 to spend" in plan
    summary = build(root, "--force")
    assert (summary["rendered"], summary["restored"], fake_hiapi.counts["creates"]) == (1, 1, 1)
    assert summary["spent_usd"] == 0.05
    lock = json.loads((root / "nbpipe.lock").read_text())["frames"]
    assert lock["a"]["digest"] == lock["b"]["digest"]


def test_force_after_gc_is_a_new_take_not_a_replay(fake_hiapi, run, build, make_project):
    """17.4/12.10: the take number was "takes in the index + 1": after gc, a replay."""
    root = make_project(ONE)
    build(root)
    build(root, "--force")  # take 2 is pinned; take 1 is not
    assert "1 take(s)" in run("-C", str(root), "gc", "--older-than", "0s").out
    build(root, "--force")
    assert fake_hiapi.counts.get("replays", 0) == 0
    assert len(set(fake_hiapi.created_keys)) == fake_hiapi.counts["creates"] == 3


def test_a_full_disk_under_the_index_is_one_clear_message(fake_hiapi, run, make_project,
                                                          monkeypatch):
    """17.11: sqlite3.OperationalError crossed the boundary: a traceback and exit 3."""
    import diskcache

    root = make_project(ONE)
    real = diskcache.Cache.set

    def full(self, key, *args, **kwargs):
        if str(key).startswith("key:"):
            raise sqlite3.OperationalError("database or disk is full")
        return real(self, key, *args, **kwargs)
    monkeypatch.setattr(diskcache.Cache, "set", full)
    result = run("-C", str(root), "build")
    assert result.code == 1 and "Traceback" not in result.err + result.out
    assert "No space left on device" in result.out and "database or disk is full" in result.out


def test_gc_never_removes_a_young_blob_not_yet_indexed(run, make_project, monkeypatch):
    """12.7: gc beside a build deleted a just-paid image (blob committed, not yet indexed)."""
    from nbpipe.store.cache import Cache
    from tests.conftest import tiny_png

    root = make_project(ONE)
    cache = Cache(root / ".nbpipe")
    digest = cache.blobs.put(tiny_png())
    cache.close()
    run("-C", str(root), "gc")
    assert (root / ".nbpipe" / "blobs" / digest[:2] / digest).is_file()
    monkeypatch.setenv("NBPIPE_GC_GRACE", "0")
    assert "an image no take records" in run("-C", str(root), "gc").out


def test_writing_commands_wait_for_a_build(make_project, tmp_path):
    """12.7: pin, pull, clean, push and build --check took no lock."""
    import os
    import subprocess
    import sys

    root = make_project(ONE.replace("hiapi", "preview"))
    (root / ".nbpipe").mkdir(exist_ok=True)
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys; from filelock import FileLock; "
        f"l = FileLock({str(root / '.nbpipe' / 'build.lock')!r}); l.acquire(); "
        "print('held', flush=True); sys.stdin.read()")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    waiting = [subprocess.Popen([sys.executable, "-m", "nbpipe", "-C", str(root), *command],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=os.environ)
               for command in (["clean", "--orphans"], ["build", "--check"], ["pull"])]
    import select

    for proc, stream in zip(waiting, ("stderr", "stdout", "stderr")):
        pipe = getattr(proc, stream)
        assert select.select([pipe], [], [], 60)[0], "no word from a waiting command"
        assert "waiting for another nbpipe build" in pipe.readline()
        assert proc.poll() is None  # still waiting for the lock
    holder.stdin.close()
    holder.wait(timeout=10)
    for proc in waiting:
        out, err = proc.communicate(timeout=60)
        assert "Traceback" not in err and proc.returncode in (0, 1)


def test_a_file_input_changed_after_keying_is_not_sent(fake_gemini, build, make_project,
                                                       monkeypatch):
    """12.11: the bytes read at render time were not checked against the keyed digest."""
    from nbpipe.engine import renderer as build_module
    from tests.conftest import tiny_png

    root = make_project(ONE.replace("Nano-Banana}", "Nano-Banana-2}").replace(
        "{prompt: a lighthouse}", "{prompt: a lighthouse, inputs: [refs/x.png], "
        "model: gemini-3.1-flash-image, backend: gemini}"), {"refs/x.png": tiny_png()})
    real = build_module.input_data

    def edited_meanwhile(*args):
        (root / "refs" / "x.png").write_bytes(tiny_png() + b"\0")
        return real(*args)
    monkeypatch.setattr(build_module, "input_data", edited_meanwhile)
    summary = build(root)
    assert summary["failed"] == 1
    assert "'refs/x.png' changed after this build keyed it" in summary["out"]


def test_pin_writes_the_takes_format_and_survives_a_change_and_revert(fake_hiapi, run, build,
                                                                      make_project):
    """12.8: pin wrote JPEG bytes under out/x.png, and a revert restored the newest take."""
    root = make_project(ONE.replace("Nano-Banana}", "Nano-Banana, output_format: jpeg}"))
    build(root)
    build(root, "--force")
    assert run("-C", str(root), "pin", "a", "1").code == 0
    lock = json.loads((root / "nbpipe.lock").read_text())["frames"]["a"]
    assert lock["output"].endswith(".jpg") and (root / lock["output"]).read_bytes()[:2] == b"\xff\xd8"
    chosen = lock["digest"]
    (root / "nbpipe.yaml").write_text(ONE.replace("lighthouse", "harbour").replace(
        "Nano-Banana}", "Nano-Banana, output_format: jpeg}"))
    build(root)
    (root / "nbpipe.yaml").write_text(ONE.replace("Nano-Banana}",
                                                     "Nano-Banana, output_format: jpeg}"))
    back = build(root)
    assert back["restored"] == 1
    assert json.loads((root / "nbpipe.lock").read_text())["frames"]["a"]["digest"] == chosen


def test_an_output_a_killed_build_wrote_is_replaced_after_an_edit(fake_gemini, build,
                                                                   make_project):
    """Found by the money model: kill -9 after a frame's output was written and before the lock
    and stat cache were saved, then the prompt edited. The file holds an image the cache keeps,
    yet every later build left it alone as "a file not made by nbpipe" (exit 0, never built)."""
    root = make_project(GEMINI_ONE)
    build(root)
    (root / "nbpipe.lock").unlink()  # what kill -9 leaves: the output, not the lock nor stats
    (root / ".nbpipe" / "state.json").unlink()
    (root / "nbpipe.yaml").write_text((root / "nbpipe.yaml").read_text().replace(
        "a lighthouse", "a storm"))
    edited = build(root)
    assert (edited["rendered"], edited["kept"], edited["code"]) == (1, 0, 0)
    (root / "out" / "a.png").write_bytes(b"my retouched a")  # bytes no cache keeps: left
    assert (build(root)["kept"], (root / "out" / "a.png").read_bytes()) == (1, b"my retouched a")
