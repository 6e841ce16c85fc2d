"""A model-based test of the money invariants (issue 12): real `nbpipe` processes against the
fake HiAPI, driven by a hypothesis state machine that edits the project, builds (with -j,
--max-cost, --force), injects faults, kills builds with SIGKILL and SIGINT, and runs gc and
pin beside them. After every step the invariants hold:

- no traceback, and exit codes only 0, 1, 2 or 130;
- the fake never created two tasks under one Idempotency-Key, and no request (prompt) was paid
  more often than once plus its forced takes plus the tasks that failed or lost their image;
- a build with --max-cost C made new tasks worth at most C;
- after a complete build (exit 0): the journal has no open entry, every task the fake reports
  as succeeded (and whose image was not made unavailable) is in the cache, the lock is valid
  and every output's digest equals its lock entry, no partial file is left anywhere, and a
  second build sends 0 creates.

`tests/run/test_money_model.py` runs it in CI (fixed seed, bounded); `benchmarks/money_soak.py`
runs it with fresh seeds and many examples.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from tests.fakes.hiapi import FakeHiApi

PRICE = Decimal("0.05")  # Nano-Banana
FAULTS = {"lost create reply": ("create", "drop"), "429": ("create", "429"),
          "503": ("create", "503"), "task fail": ("task", "fail"),
          "slow task": ("task", "stuck"), "expired URL": ("download", "gone", "gone"),
          "truncated image": ("download", "truncate")}


class MoneyMachine(RuleBasedStateMachine):
    """The project, the fake, and what a correct nbpipe may have paid for."""

    def __init__(self):
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="nbpipe-money-"))
        self.root = self.dir / "p"
        self.root.mkdir()
        self.fake = FakeHiApi().__enter__()
        self.prompts = {"a": "a lighthouse", "b": "a harbour", "c": "a lighthouse"}
        self.forced: Counter = Counter()  # prompt → explicit --force takes
        self.excused: Counter = Counter()  # prompt → tasks failed or made unavailable
        self.version = 0
        self.checks = 0
        self._write()

    def teardown(self):
        self.fake.__exit__(None, None, None)
        shutil.rmtree(self.dir, ignore_errors=True)

    # --- the project --------------------------------------------------------------------------

    def _write(self) -> None:
        lines = ["version: 1", "defaults: {backend: hiapi, model: Nano-Banana}", "targets:"]
        lines += [f"  {name}: {{prompt: {json.dumps(p)}}}" for name, p in self.prompts.items()]
        (self.root / "nbpipe.yaml").write_text("\n".join(lines) + "\n")

    def _env(self) -> dict:
        return {**os.environ, "HIAPI_API_KEY": self.fake.key, "HIAPI_BASE_URL": self.fake.url,
                "NBPIPE_HIAPI_POLL_DELAY": "0", "NBPIPE_HIAPI_POLL_INTERVAL": "0.02",
                "NBPIPE_RETRY_BASE": "0.01", "NBPIPE_HIAPI_TIMEOUT": "1.5",
                "NBPIPE_RECOVER_TIMEOUT": "3", "NBPIPE_INTERRUPT_GRACE": "0.5"}

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        done = subprocess.run([sys.executable, "-m", "nbpipe", "-C", str(self.root), *args],
                              env=self._env(), capture_output=True, text=True, timeout=120)
        self._exit_ok(done.returncode, done.stderr + done.stdout, args)
        return done

    def _exit_ok(self, code: int, text: str, args) -> None:
        if (code == -signal.SIGINT or "init_import_site" in text) and \
                "nbpipe/" not in text.replace("nbpipe/__main__", ""):
            return  # Ctrl-C while the interpreter itself was starting, before nbpipe ran
        assert code in (0, 1, 2, 130), (args, code, text[-3000:])
        assert "Traceback" not in text, (args, text[-3000:])

    # --- rules ----------------------------------------------------------------------------------

    @rule(name=st.sampled_from(["a", "b", "c"]), words=st.sampled_from(
        ["a lighthouse", "a harbour", "a storm", "a boat at dawn"]))
    def edit_prompt(self, name, words):
        self.prompts[name] = words
        self._write()

    @rule()
    def add_target(self):
        self.version += 1
        self.prompts[f"t{self.version}"] = f"tile {self.version % 3}"
        self._write()

    @precondition(lambda self: len(self.prompts) > 1)
    @rule(data=st.data())
    def remove_target(self, data):
        del self.prompts[data.draw(st.sampled_from(sorted(self.prompts)))]
        self._write()

    @rule(fault=st.sampled_from(sorted(FAULTS)))
    def inject(self, fault):
        endpoint, *faults = FAULTS[fault]
        self.fake.faults.add(endpoint, *faults)
        if fault in ("task fail", "expired URL", "truncated image", "slow task"):
            self.excused.update(set(self.prompts.values()))  # whichever task takes it

    @rule(jobs=st.sampled_from([1, 4]), cap=st.sampled_from([None, "0.05", "0.1"]),
          force=st.sampled_from([None, "a", "b"]))
    def build(self, jobs, cap, force):
        args = ["build", "-j", str(jobs)]
        if cap:
            args += ["--max-cost", cap]
        if force and force in self.prompts:
            args += ["--force", force]
            self.forced[self.prompts[force]] += 1
        before = self.fake.counts.get("creates", 0)
        done = self._run(*args)
        if cap:
            made = self.fake.counts.get("creates", 0) - before
            assert made * PRICE <= Decimal(cap), (made, cap, done.stdout)
        if done.returncode == 0 and not force:
            self._complete()

    @rule(moment=st.floats(0.05, 2.5), presses=st.sampled_from([0, 1, 2]))
    def interrupt(self, moment, presses):
        """kill -9 (presses 0) or Ctrl-C once or twice at a random moment."""
        self.fake.faults.add("task", "stuck")  # something in flight to interrupt
        self.excused.update(set(self.prompts.values()))
        proc = subprocess.Popen([sys.executable, "-m", "nbpipe", "-C", str(self.root), "build",
                                 "-j", "4"], env=self._env(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        time.sleep(moment)
        if presses == 0:
            proc.kill()
        for _ in range(presses):
            proc.send_signal(signal.SIGINT)
            time.sleep(0.1)
        out, err = proc.communicate(timeout=120)
        if presses:
            self._exit_ok(proc.returncode, err + out, ("build", f"^C x{presses}"))

    @rule()
    def settle(self):
        """The faults stop and slow tasks finish: a build or two must complete, and then every
        invariant of a complete build holds."""
        for queue in self.fake.faults._queues.values():
            queue.clear()
        for task in self.fake.tasks.values():
            if task.outcome == "stuck":
                task.outcome = "success"
        for _ in range(3):
            if self._run("build").returncode == 0:
                return self._complete()
        raise AssertionError("no clean build after the faults stopped")

    @rule()
    def gc_and_pin(self):
        self._run("gc", "--older-than", "0s")
        lock = self._lock()
        if lock:
            self._run("pin", sorted(lock)[0], "1")

    # --- invariants ---------------------------------------------------------------------------

    @invariant()
    def never_paid_twice(self):
        keys = self.fake.created_keys
        assert len(keys) == len(set(keys)), "two tasks under one Idempotency-Key"
        paid = Counter(t.input["prompt"] for t in self.fake.tasks.values())
        for prompt, n in paid.items():
            assert n <= 1 + self.forced[prompt] + self.excused[prompt] * 3, (prompt, n)

    def _lock(self) -> dict:
        path = self.root / "nbpipe.lock"
        return json.loads(path.read_text())["frames"] if path.exists() else {}

    def _kept(self, digest: str) -> bool:
        """A paid image is kept: in the cache (a subclass with more clones looks there too)."""
        return (self.root / ".nbpipe" / "blobs" / digest[:2] / digest).is_file()

    def _complete(self) -> None:
        """After a build that exited 0 over every frame."""
        self.checks += 1
        from nbpipe.store.journal import Journal

        assert Journal(self.root / ".nbpipe" / "journal.jsonl").open == {}
        for task in self.fake.tasks.values():
            if task.status == "success" and task.outcome == "success":
                assert self._kept(hashlib.sha256(task.image).hexdigest()) or \
                    self.excused[task.input["prompt"]], ("paid image lost", task.task_id)
        lock = self._lock()
        assert set(lock) == set(self.prompts)
        for entry in lock.values():
            data = (self.root / entry["output"]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == entry["digest"]
        assert not list(self.root.rglob("*.part"))
        assert list((self.root / ".nbpipe" / "tmp").iterdir()) == []
        before = self.fake.counts.get("creates", 0)
        self._run("build")
        assert self.fake.counts.get("creates", 0) == before, "a build after a clean build paid"
