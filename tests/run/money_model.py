"""A model-based test of the money invariants (issue 12): real `nbpipe` processes against the
fake HiAPI and the fake Gemini, driven by a hypothesis state machine that edits the project,
builds (with -j, --max-cost, --force), injects faults, kills builds with SIGKILL and SIGINT, and
runs gc, pin and pull after a build and beside a live one. After every step the invariants hold:

- no traceback, and exit codes only 0, 1, 2 or 130;
- the fake HiAPI never created two tasks under one Idempotency-Key, and no request (prompt) was
  paid more often than once plus its forced takes, plus its tasks that failed or met a download
  fault, plus the times gc removed every image it had;
- no Gemini request (prompt) was billed for an image more often than once plus its forced takes,
  plus its images that were lost (a dropped reply, or a build killed or abandoned with a second
  Ctrl-C while it was in flight), plus the times gc removed every image it had;
- every Gemini image the fake sent in a reply is in the cache, unless the build receiving it was
  killed or abandoned (one Ctrl-C waits for Gemini requests in flight: they are paid);
- a build with --max-cost C made new tasks and generateContent calls worth at most C;
- every take the cache indexes and every image the lock pins has its blob (gc beside a build
  never removes a paid image), and the lock parses;
- after a complete build (exit 0): the journal holds only tasks the fake still runs, every task
  the fake reports as succeeded (and whose download met no fault) is in the cache, the lock is
  valid and every output's digest equals its lock entry, no partial file is left anywhere, and a
  second build sends 0 creates and 0 generates.

`tests/run/test_money_model.py` runs it in CI (fixed seed, bounded); `benchmarks/money_soak.py`
runs it with fresh seeds and many examples. Subclasses (other remotes, second clones) override
the hooks `_env`, `_run`, `_write`, `_complete` and `teardown`.
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

from nbpipe.catalog import builtin
from tests.fakes.gemini import FakeGemini
from tests.fakes.hiapi import FakeHiApi

PRICE = Decimal("0.05")  # Nano-Banana
GEMINI_MODEL = "gemini-3.1-flash-image"
GEMINI_PRICE = builtin().get("gemini", GEMINI_MODEL).price(None)
FAULTS = {"lost create reply": ("create", "drop"), "429": ("create", "429"),
          "503": ("create", "503"), "task fail": ("task", "fail"),
          "slow task": ("task", "stuck"), "expired URL": ("download", "gone", "gone"),
          "truncated image": ("download", "truncate"),
          # Gemini (endpoint "generate"): a lost reply is billed; refusals are retried
          "gemini lost reply": ("generate", "drop"), "gemini 429": ("generate", "429"),
          "gemini 503": ("generate", "503"), "gemini safety": ("generate", "safety"),
          "gemini prompt blocked": ("generate", "prompt-blocked"),
          "gemini no image": ("generate", "no-image")}
GEMINI_WORDS = ["a red kite", "a blue kite", "a paper moon"]
SLOW_GEMINI = 0.8  # seconds a Gemini reply takes while a build is to be interrupted


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class MoneyMachine(RuleBasedStateMachine):
    """The project, the fakes, and what a correct nbpipe may have paid for."""

    def __init__(self):
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="nbpipe-money-"))
        self.root = self.dir / "p"
        self.root.mkdir()
        self.fake = FakeHiApi().__enter__()
        self.gemini = FakeGemini().__enter__()
        self.prompts = {"a": "a lighthouse", "b": "a harbour", "c": "a lighthouse"}  # HiAPI
        self.gemini_prompts = {"g1": "a red kite", "g2": "a red kite"}
        self.forced: Counter = Counter()  # HiAPI prompt → explicit --force takes
        self.gemini_forced: Counter = Counter()  # Gemini prompt → explicit --force takes
        self.abandoned: set[int] = set()  # Gemini replies (billed numbers) nobody waited for
        self.cached: set[str] = set()  # every digest the cache has ever held
        self.regained: Counter = Counter()  # (backend, prompt) → times gc removed all it had
        self._held: dict[tuple[str, str], bool] = {}  # (backend, prompt) → has an image now
        self.version = 0
        self.checks = 0
        self.said: list[str] = []  # each command and what it printed: the story of a failure
        self._write()

    def teardown(self):
        self.fake.__exit__(None, None, None)
        self.gemini.__exit__(None, None, None)
        shutil.rmtree(self.dir, ignore_errors=True)

    # --- the project --------------------------------------------------------------------------

    def _write(self) -> None:
        lines = ["version: 1", "defaults: {backend: hiapi, model: Nano-Banana}", "targets:"]
        lines += [f"  {name}: {{prompt: {json.dumps(p)}}}" for name, p in self.prompts.items()]
        lines += [f"  {name}: {{prompt: {json.dumps(p)}, backend: gemini, model: {GEMINI_MODEL}}}"
                  for name, p in self.gemini_prompts.items()]
        (self.root / "nbpipe.yaml").write_text("\n".join(lines) + "\n")

    def _env(self) -> dict:
        env = {**os.environ, "HIAPI_API_KEY": self.fake.key, "HIAPI_BASE_URL": self.fake.url,
               "GEMINI_API_KEY": self.gemini.key, "GOOGLE_GEMINI_BASE_URL": self.gemini.url,
               "NBPIPE_HIAPI_POLL_DELAY": "0", "NBPIPE_HIAPI_POLL_INTERVAL": "0.02",
               "NBPIPE_RETRY_BASE": "0.01", "NBPIPE_HIAPI_TIMEOUT": "1.5",
               "NBPIPE_RECOVER_TIMEOUT": "3", "NBPIPE_INTERRUPT_GRACE": "0.5"}
        env.pop("GOOGLE_API_KEY", None)
        return env

    def _popen(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "nbpipe", "-C", str(self.root), *args],
                                env=self._env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        done = subprocess.run([sys.executable, "-m", "nbpipe", "-C", str(self.root), *args],
                              env=self._env(), capture_output=True, text=True, timeout=120)
        self._exit_ok(done.returncode, done.stderr + done.stdout, args)
        return done

    def _exit_ok(self, code: int, text: str, args) -> None:
        self.said.append(f"$ nbpipe {' '.join(args)}  → {code}\n{text[-1500:]}")
        if (code == -signal.SIGINT or "init_import_site" in text) and \
                "nbpipe/" not in text.replace("nbpipe/__main__", ""):
            return  # Ctrl-C while the interpreter itself was starting, before nbpipe ran
        assert code in (0, 1, 2, 130), (args, code, text[-3000:])
        assert "Traceback" not in text, (args, text[-3000:])

    def _story(self) -> str:
        return "\n".join(self.said[-10:])

    def _generates(self) -> int:
        return self.gemini.counts.get("generates", 0)

    # --- rules ----------------------------------------------------------------------------------

    @rule(name=st.sampled_from(["a", "b", "c"]), words=st.sampled_from(
        ["a lighthouse", "a harbour", "a storm", "a boat at dawn"]))
    def edit_prompt(self, name, words):
        self.prompts[name] = words
        self._write()

    @rule(name=st.sampled_from(["g1", "g2"]), words=st.sampled_from(GEMINI_WORDS))
    def edit_gemini_prompt(self, name, words):
        self.gemini_prompts[name] = words
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
        (self.gemini if endpoint == "generate" else self.fake).faults.add(endpoint, *faults)

    @rule(jobs=st.sampled_from([1, 4]), cap=st.sampled_from([None, "0.05", "0.1", "0.2"]),
          force=st.sampled_from([None, "a", "b", "g1"]))
    def build(self, jobs, cap, force):
        args = ["build", "-j", str(jobs)]
        if cap:
            args += ["--max-cost", cap]
        if force in self.prompts:
            args += ["--force", force]
            self.forced[self.prompts[force]] += 1
        elif force in self.gemini_prompts:
            args += ["--force", force]
            self.gemini_forced[self.gemini_prompts[force]] += 1
        before = self.fake.counts.get("creates", 0), self._generates()
        done = self._run(*args)
        if cap:
            made = self.fake.counts.get("creates", 0) - before[0], self._generates() - before[1]
            assert made[0] * PRICE + made[1] * GEMINI_PRICE <= Decimal(cap), \
                (made, cap, done.stdout)
        if done.returncode == 0 and "--force" not in args:
            self._complete()

    @rule(moment=st.floats(0.05, 2.5), presses=st.sampled_from([0, 1, 2]))
    def interrupt(self, moment, presses):
        """kill -9 (presses 0) or Ctrl-C once or twice at a random moment, with a HiAPI task
        stuck and Gemini replies slow (something in flight to interrupt)."""
        self.fake.faults.add("task", "stuck")
        self.gemini.delay = SLOW_GEMINI
        first = len(self.gemini.billed)
        try:
            proc = self._popen("build", "-j", "4")
            time.sleep(moment)
            if presses == 0:
                proc.kill()
            for _ in range(presses):
                proc.send_signal(signal.SIGINT)
                time.sleep(0.1)
            out, err = proc.communicate(timeout=120)
        finally:
            self.gemini.delay = 0.0
        if presses != 1:  # one Ctrl-C waits for Gemini requests in flight: they are paid
            self.abandoned |= {b.number for b in self.gemini.billed[first:]}
        self._exit_ok(proc.returncode if presses else 130, err + out,
                      ("build", f"^C x{presses}" if presses else "kill -9"))

    @rule()
    def settle(self):
        """The faults stop and slow tasks finish: a build or two must complete, and then every
        invariant of a complete build holds."""
        for fake in (self.fake, self.gemini):
            for queue in fake.faults._queues.values():
                queue.clear()
        self.gemini.delay = 0.0
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

    @rule(moment=st.floats(0.0, 1.5), data=st.data())
    def maintain_beside_build(self, moment, data):
        frame = data.draw(st.sampled_from(sorted({*self.prompts, *self.gemini_prompts})))
        self.beside_build(moment, frame, data.draw(st.sampled_from(["1", "2"])))

    def beside_build(self, moment: float, frame: str, take: str) -> None:
        """gc, pin and pull while a build runs (a Gemini request slow in flight, a HiAPI task
        maybe stuck): each waits for the build's lock or refuses, and none loses a paid image
        (the invariants check that every take and pin still has its blob)."""
        self.version += 1
        self.gemini_prompts["g2"] = f"a kite over town {self.version}"  # something to send
        self._write()
        self.fake.faults.add("task", "stuck")
        self.gemini.delay = SLOW_GEMINI
        try:
            build = self._popen("build", "-j", "4")
            time.sleep(moment)
            beside = {args: self._popen(*args) for args in
                      [("gc", "--older-than", "0s"), ("pin", frame, take), ("pull",)]}
            for args, proc in [(("build", "live"), build), *beside.items()]:
                out, err = proc.communicate(timeout=120)
                self._exit_ok(proc.returncode, err + out, args)
                if args[0] != "build":
                    assert proc.returncode in (0, 1, 2), (args, proc.returncode, err)
                    assert proc.returncode == 0 or "\nerror: " in "\n" + err or \
                        out.startswith("missing"), (args, out, err)  # a clear refusal
        finally:
            self.gemini.delay = 0.0

    # --- invariants ---------------------------------------------------------------------------

    def _observe(self) -> None:
        """Note the images the cache holds now; a request whose every image was removed (gc of
        a take no lock pins) may be paid for again."""
        blobs = self.root / ".nbpipe" / "blobs"
        present = {p.name for p in blobs.glob("*/*")} if blobs.is_dir() else set()
        self.cached |= present
        owners: dict[tuple[str, str], bool] = {}
        for backend, prompt, digest in self._images():
            owners[(backend, prompt)] = owners.get((backend, prompt), False) or digest in present
        for owner, held in owners.items():
            if self._held.get(owner) and not held:
                self.regained[owner] += 1
            self._held[owner] = held

    def _images(self):
        """(backend, prompt, digest) of every image either fake made."""
        for task in list(self.fake.tasks.values()):
            if task.image:
                yield "hiapi", task.input["prompt"], sha(task.image)
        for billed in list(self.gemini.billed):
            if billed.image:
                yield "gemini", billed.prompt, sha(billed.image)

    @invariant()
    def never_paid_twice(self):
        self._observe()
        keys = self.fake.created_keys
        assert len(keys) == len(set(keys)), ("two tasks under one Idempotency-Key", self._story())
        paid, spoiled = Counter(), Counter()
        for task in self.fake.tasks.values():
            paid[task.input["prompt"]] += 1
            if task.outcome == "fail" or task.download_faults:
                spoiled[task.input["prompt"]] += 1
        for prompt, n in paid.items():
            assert n <= 1 + self.forced[prompt] + spoiled[prompt] + \
                self.regained[("hiapi", prompt)], ("HiAPI paid twice", prompt, n, self._story())
        billed, lost = Counter(), Counter()
        for b in self.gemini.billed:
            if b.paid_image:
                billed[b.prompt] += 1
                if b.fault == "drop" or (b.number in self.abandoned and
                                         sha(b.image) not in self.cached):
                    lost[b.prompt] += 1
        for prompt, n in billed.items():
            assert n <= 1 + self.gemini_forced[prompt] + lost[prompt] + \
                self.regained[("gemini", prompt)], ("Gemini paid twice", prompt, n, self._story())

    @invariant()
    def nothing_paid_is_lost(self):
        self._observe()
        for b in self.gemini.billed:
            if b.image and b.number not in self.abandoned:
                assert sha(b.image) in self.cached, ("a Gemini image sent, not cached", b.prompt,
                                                    self._story())
        from nbpipe.store.cache import Cache

        if not (self.root / ".nbpipe").is_dir():
            return
        cache = Cache(self.root / ".nbpipe", create=False)
        try:
            for key in cache.all_keys():
                for take in cache.takes(key):
                    assert cache.has_blob(take.digest), \
                        ("a take without its image", key, self._story())
            for name, entry in self._lock().items():
                assert cache.has_blob(entry["digest"]), \
                    ("a pinned image is gone", name, self._story())
        finally:
            cache.close()

    def _lock(self) -> dict:
        path = self.root / "nbpipe.lock"
        return json.loads(path.read_text())["frames"] if path.exists() else {}

    def _complete(self) -> None:
        """After a build that exited 0 over every frame."""
        self.checks += 1
        from nbpipe.store.journal import Journal

        self._observe()
        for entry in Journal(self.root / ".nbpipe" / "journal.jsonl").open.values():
            task = self.fake.tasks.get(entry.task_id or "")
            assert task is not None and task.outcome == "stuck", \
                ("an open journal entry after a complete build", entry, self._story())
        for task in self.fake.tasks.values():
            if task.status == "success" and task.outcome == "success" and \
                    not task.download_faults:
                assert sha(task.image) in self.cached, \
                    ("paid image lost", task.task_id, self._story())
        lock = self._lock()
        assert set(lock) == {*self.prompts, *self.gemini_prompts}, (sorted(lock), self._story())
        for entry in lock.values():
            data = (self.root / entry["output"]).read_bytes()
            assert sha(data) == entry["digest"], (entry, self._story())
        assert not list(self.root.rglob("*.part"))
        assert list((self.root / ".nbpipe" / "tmp").iterdir()) == []
        before = self.fake.counts.get("creates", 0), self._generates()
        self._run("build")
        assert (self.fake.counts.get("creates", 0), self._generates()) == before, \
            "a build after a clean build paid"
