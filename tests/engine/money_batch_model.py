"""The money model of the batch lane: the real CLI (separate processes) against the fake Gemini
Batch API, operations drawn at random: builds that wait or do not, kill -9 while a job runs or
at its create, lost create replies, expiry, failed jobs, line errors, cancelling, prompt edits.

What a correct nbpipe keeps, whatever the order:
- never a second job for the same requests: no request (a key) is ever in two jobs open at
  once, and no request's image is billed twice;
- no image lost: after `settle` (the jobs end, a plain build) every frame holds the image
  billed for its request;
- Σ reported (spent + spent earlier, over every build's summary) = Σ billed, at quiescence;
  and each build's frame events sum to its summary.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from decimal import Decimal
from pathlib import Path

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from tests.conftest import wait_for
from tests.fakes.gemini_batch import FakeGeminiBatch

MODELS = ("gemini-3.1-flash-image", "gemini-3-pro-image")
WORDS = ["a red kite", "a blue kite", "a paper moon", "a tin robot"]
FAULTS = {"lost create": ("batch-create", "drop"), "job expires": ("batch-job", "expire"),
          "job fails": ("batch-job", "fail"), "line error": ("batch-line", "error"),
          "quota": ("batch-create", "429"), "answer without its key": ("batch-line", "no-metadata")}


class BatchMoneyMachine(RuleBasedStateMachine):
    """The project (four frames on two models, lane: batch), the fake, and the ledger."""

    def __init__(self):
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="nbpipe-batch-money-"))
        self.root = self.dir / "p"
        self.root.mkdir()
        self.fake = FakeGeminiBatch().__enter__()
        self.prompts = {"a": WORDS[0], "b": WORDS[1], "c": WORDS[2], "d": WORDS[0]}
        self.reported = Decimal(0)
        self.said: list[str] = []
        self.checks = 0  # builds whose events were checked against their summary
        self.plans = 0  # (the soak's counters; this machine checks no plan totals)
        self.tallies = 0  # Σ reported = Σ billed checks
        self.forced: Counter = Counter()  # (model, prompt) → takes asked for with --force
        self._write()

    def teardown(self):
        self.fake.__exit__(None, None, None)
        shutil.rmtree(self.dir, ignore_errors=True)

    def _write(self) -> None:
        lines = ["version: 1", f"defaults: {{backend: gemini, model: {MODELS[0]}, lane: batch}}",
                 "targets:"]
        for i, (name, prompt) in enumerate(self.prompts.items()):
            lines.append(f"  {name}: {{prompt: {json.dumps(prompt)}, model: {MODELS[i % 2]}}}")
        (self.root / "nbpipe.yaml").write_text("\n".join(lines) + "\n")

    def _env(self) -> dict:
        env = {**os.environ, "GEMINI_API_KEY": self.fake.key,
               "GOOGLE_GEMINI_BASE_URL": self.fake.url, "NBPIPE_RETRY_BASE": "0.01",
               "NBPIPE_RETRY_DEADLINE": "2", "NBPIPE_BATCH_POLL_INTERVAL": "0.02",
               "NBPIPE_BATCH_SETTLE": "0",  # the fake lists a job the moment it exists
               "PYTHONPATH": os.pathsep.join(sys.path)}
        env.pop("GOOGLE_API_KEY", None)
        return env

    def _run(self, *args: str) -> dict:
        done = subprocess.run([sys.executable, "-m", "nbpipe", "-C", str(self.root), "build",
                               "--json", *args], env=self._env(), capture_output=True,
                              text=True, timeout=120)
        self.said.append(f"$ build {' '.join(args)} → {done.returncode}\n{done.stdout}"
                         f"{done.stderr}")
        assert done.returncode in (0, 1), self._story()
        events = [json.loads(line) for line in done.stdout.splitlines()]
        summary = events[-1]
        frames = sum((Decimal(str(e.get("cost_usd") or 0)) for e in events[:-1]
                      if e.get("event") == "frame"), Decimal(0))
        spent = Decimal(str(summary["spent_usd"])) + Decimal(str(summary["spent_earlier_usd"]))
        assert frames == spent, self._story()  # a build's events add up to its summary
        self.checks += 1
        self.reported += spent
        return summary

    def _story(self) -> str:
        return "\n".join(self.said[-12:])

    def _billed(self) -> Decimal:
        return sum((Decimal(str(b.usd)) for b in list(self.fake.billed) if b.image), Decimal(0))

    # --- rules --------------------------------------------------------------------------------

    @rule(name=st.sampled_from(["a", "b", "c", "d"]), words=st.sampled_from(WORDS))
    def edit_prompt(self, name, words):
        self.prompts[name] = words
        self._write()

    @rule(fault=st.sampled_from(sorted(FAULTS)))
    def inject(self, fault):
        self.fake.faults.add(*FAULTS[fault])
        self.said.append(f"# fault: {fault}")

    @rule(polls=st.sampled_from([1, 2]))
    def build(self, polls):
        self.fake.end_at_poll = polls
        self._run()
        self.fake.end_at_poll = None

    @rule(name=st.sampled_from(["a", "b", "c", "d"]))
    def force_no_wait(self, name):
        """A new take of one frame, paid on purpose, not waited for."""
        model = MODELS[list(self.prompts).index(name) % 2]
        self.forced[(model, self.prompts[name])] += 1
        self._run("--force", "--no-wait", name)

    @rule(polls=st.sampled_from([1, 2]))
    def build_on_the_standard_lane(self, polls):
        """--lane standard over the manifest: a request already in a job is collected from
        it, never sent again as a call."""
        self.fake.end_at_poll = polls
        self._run("--lane", "standard")
        self.fake.end_at_poll = None

    @rule()
    def build_no_wait(self):
        summary = self._run("--no-wait")
        assert Decimal(str(summary["spent_usd"])) <= self._billed(), self._story()

    @rule()
    def jobs_end(self):
        self.fake.finish_all()
        self.said.append("# every open job ends")

    @rule()
    def two_days_pass(self):
        self.fake.pass_hours(49)
        self.said.append("# 49 h pass: open jobs expire")

    @precondition(lambda self: any(not j.done for j in self.fake.jobs.values()))
    @rule(pick=st.integers(0, 7))
    def cancel_one(self, pick):
        running = [j.name for j in self.fake.jobs.values() if not j.done]
        if not running:
            return
        name = running[pick % len(running)]
        done = subprocess.run([sys.executable, "-m", "nbpipe", "-C", str(self.root), "batches",
                               "cancel", name], env=self._env(), capture_output=True,
                              text=True, timeout=60)
        self.said.append(f"$ batches cancel {name} → {done.returncode}\n{done.stderr}")
        assert done.returncode in (0, 2), self._story()  # 2: not this cache's (a resent job's)

    @rule(at_create=st.booleans())
    def kill_9(self, at_create):
        """kill -9 as the create's reply is held (the job exists) or while the build waits."""
        creates, polls = len(self.fake.creates), self.fake.counts["polls"]
        if at_create:
            self.fake.holds.hold("batch-created")
        proc = subprocess.Popen([sys.executable, "-m", "nbpipe", "-C", str(self.root), "build"],
                                env=self._env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            # at a create, or (nothing left to create) while it waits, or when it has ended
            wait_for(lambda: proc.poll() is not None or self.fake.counts["polls"] > polls or
                     (at_create and len(self.fake.creates) > creates))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            if at_create:
                self.fake.holds.release("batch-created")
        self.said.append(f"# kill -9 {'at a create' if at_create else 'while waiting'}")

    @rule()
    def settle(self):
        """Faults cleared, every job ends, builds until nothing is pending: every frame holds
        the image of its request, and Σ reported = Σ billed."""
        for endpoint in ("batch-create", "batch-job", "batch-line"):
            self.fake.faults.clear(endpoint)
        self.fake.finish_all()
        for _ in range(3):
            self.fake.end_at_poll = 1
            summary = self._run()
            self.fake.end_at_poll = None
            if summary["failed"] == summary["pending"] == 0:
                break
        assert summary["failed"] == summary["pending"] == 0, self._story()
        lock = json.loads((self.root / "nbpipe.lock").read_text())
        frames = lock.get("frames") or {}
        assert sorted(frames) == sorted(self.prompts), self._story()
        assert self.reported == self._billed(), \
            f"reported {self.reported} != billed {self._billed()}\n{self._story()}"
        self.tallies += 1

    # --- invariants ---------------------------------------------------------------------------

    @invariant()
    def never_a_second_job_for_a_request(self):
        open_keys = Counter(line.metadata["key"] if line.metadata else line.key
                            for job in list(self.fake.jobs.values()) if not job.done
                            for line in job.lines)
        assert all(n == 1 for n in open_keys.values()), f"{open_keys}\n{self._story()}"

    @invariant()
    def never_an_image_billed_twice(self):
        """A request (model and prompt: nothing else varies here) is billed once, on any lane,
        and once more per --force take."""
        images = Counter((b.model, b.prompt) for b in list(self.fake.billed) if b.image)
        over = {k: n for k, n in images.items() if n > 1 + self.forced[k]}
        assert not over, f"{over}\n{self._story()}"
