"""The money state machine (tests/engine/money_model.py) with a shared remote cache (a loopback S3,
one bucket per example: tests/fakes/team_remote.py) and a second clone of the project (its
nbpipe.yaml, nbpipe.lock and input files; its own cache, the same remote) that builds, pulls,
pushes, and builds at the same time as the first. It inherits every rule and invariant of
`MoneyMachine`, and adds rules that take the remote away (unplugged, also mid-build; a dead
port; 403s from moto's IAM checks: an unknown key, a key with no permission) for one command or
for a while, and bring it back. After every step:

- nothing was paid for (a HiAPI create sent, a Gemini request billed) whose image the remote
  held when the command began (or, for commands run at once, the step), unless it was forced
  (`--force`), a resend of an earlier build's journalled request, or a build told to pay anyway
  (`--remote-errors=render`) while the remote was not answering;
- a build that could not read the remote, and was not told to pay anyway, exits 0 or 1, and an
  exit 1 says "remote unavailable"; so do `pull` and `push`, which never pay; `plan` marks every
  render the remote might have made unnecessary;
- no exit 3, no traceback; every paid image is kept (MoneyMachine's invariants, with the second
  clone's cache and the remote counted as keeping it);
- after a complete build in the second clone its journal holds only tasks still running, its
  lock matches its outputs and a second build pays nothing;
- once the remote is back and a build completes in each clone (`settle`), every image either
  clone holds is on the remote (blob and take record): pushes may be deferred, never lost.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

from hypothesis import strategies as st
from hypothesis.stateful import RULE_MARKER, initialize, invariant, precondition, rule

from tests.engine.money_model import MoneyMachine, with_json
from tests.fakes.team_remote import FAILURES, TeamRemote

OUTAGES = st.sampled_from([None, *FAILURES])  # a rule's command meets the remote like this
TRACE = bool(os.environ.get("NBPIPE_MODEL_TRACE"))  # print each command the model runs


def _frame_request(record: dict) -> tuple:
    """(backend, model, prompt, input digests) of a request record (a take's, a journal's)."""
    inputs = tuple(i.get("digest") for i in record.get("inputs") or [] if isinstance(i, dict))
    return record.get("backend"), record.get("model"), record.get("prompt"), inputs


def like(parent):
    """Declare an override as the parent's rule: the same arguments and preconditions."""
    marker = getattr(parent, RULE_MARKER)

    def declare(function):
        for condition in marker.preconditions:
            function = precondition(condition)(function)
        return rule(**marker.arguments)(function)
    return declare


class RemoteMoneyMachine(MoneyMachine):
    def __init__(self):
        super().__init__()
        self.remote = TeamRemote()
        self.clone: Path | None = None  # the second checkout, once cloned
        self.clone_frames: set[str] = set()  # the frames of its manifest
        self.creates: list[tuple[str, tuple]] = []  # each create the fake HiAPI received
        self.paid_anyway = False  # this step, --remote-errors=render ran while the remote was out
        self.seen: set[str] = set()  # every blob either clone's cache has held
        self.discarded: set[str] = set()  # only in a clone deleted by a fresh `git clone`
        self.remote_checks = 0
        self.trace: list[str] = []  # what this example did, for a report of its failure
        self._log_creates()
        self._snapshot()

    def teardown(self):
        try:
            self.remote.close()
        finally:
            super().teardown()

    @property
    def mode(self) -> str:
        return self.remote.mode

    def _remote(self) -> tuple[dict[tuple, set[str]], set[str], set[str]]:
        """(frame request → digests the remote holds for it, blobs, digests recorded); a frame
        request is (backend, model, prompt, input digests), as MoneyMachine.frames says."""
        return self.remote.holdings(_frame_request)

    # --- the fake, from outside ---------------------------------------------------------------

    def _log_creates(self) -> None:
        """Remember the prompt of every create the fake HiAPI receives (a replay, a 429 too:
        each is nbpipe deciding to pay for that request; the fake Gemini lists what it billed)."""
        create = self.fake._create

        def logged(request):
            raw = request.body()
            try:
                task = SimpleNamespace(**json.loads(raw))  # as MoneyMachine names a task's
                self.creates.append((self._hiapi_request(task), self._hiapi_frame(task)))
            except (ValueError, KeyError, TypeError):
                self.creates.append(("?", ("?",)))
            request.body = lambda: raw  # read once; the handler serves the next request too
            try:
                return create(request)
            finally:
                del request.body
        self.fake._create = logged

    def _mark(self) -> tuple[int, int]:
        return len(self.creates), len(self.gemini.billed)

    def _paid_since(self, mark: tuple[int, int]) -> set[tuple[str, tuple]]:
        """(request, frame request) of every payment nbpipe chose to make since `mark`."""
        billed = self.gemini.billed[mark[1]:]
        return {*self.creates[mark[0]:],
                *((self._gemini_request(b), self._gemini_frame(b)) for b in billed)}

    # --- nbpipe -------------------------------------------------------------------------------

    def _env(self) -> dict:
        return {**super()._env(), **self.remote.env()}

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        return self._run_at(self.root, *args)

    def _run_at(self, root: Path, *args: str) -> subprocess.CompletedProcess:
        args = with_json(args)
        held, mark = self._remote()[0], self._mark()
        excused = self._open_requests(root)  # a resend of an earlier build's request
        if "--force" in args:
            profile = args[args.index("--profile") + 1] if "--profile" in args else None
            excused.add(self.frames(profile).get(args[args.index("--force") + 1]))
        anyway = "--remote-errors=render" in args and self.mode != "up"
        self._judge_unbilled()
        tasks = len(self.fake.tasks)
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "nbpipe", "-C", str(root), *args],
                              env=self._env(), capture_output=True, text=True, timeout=180)
        self._note(f"{root.name}$ nbpipe {' '.join(args)}  [remote {self.mode}] → "
                   f"{done.returncode} in {time.monotonic() - started:.1f} s")
        if done.returncode:
            self._note("  " + (done.stdout + done.stderr).strip().replace("\n", "\n    "))
        self._exit_ok(done.returncode, done.stderr + done.stdout, (root.name, *args))
        self._account(args, done.stdout)
        if root == self.root:  # the cache the invariants look at
            self._note_gc(args, done.stdout)
        for _, frame in self._paid_since(mark):
            assert anyway or frame in excused or frame not in held, \
                (f"{root.name}: paid for {frame}, which the remote held", self._story())
        if anyway:  # paying again is what the user chose: MoneyMachine counts it as forced
            new_tasks = list(self.fake.tasks.values())[tasks:]
            self.forced.update(self._hiapi_request(t) for t in new_tasks)
            self.forced.update(self._gemini_request(b) for b in self.gemini.billed[mark[1]:])
        return done

    def _story(self) -> str:
        return "\n".join(self.trace[-40:])

    def _note(self, line: str) -> None:
        self.trace.append(line)
        if TRACE:
            print("  " + line, flush=True)

    def _write(self) -> None:
        super()._write()
        if hasattr(self, "trace"):
            self._note(f"p/nbpipe.yaml: {self.prompts} {self.gemini_prompts}")

    @precondition(lambda self: len(self.prompts) < 6)
    @rule()
    def add_target(self):
        """(At most six: small projects keep steps fast, and hypothesis's first choice of rule
        is this one, alphabetically; unbounded, short CI runs did little else.)"""
        super().add_target()

    @like(MoneyMachine.inject)
    def inject(self, **args):
        self._note(f"fault: {args}")
        super().inject(**args)

    @like(MoneyMachine.interrupt)
    def interrupt(self, moment, presses, **args):
        self._note(f"p$ nbpipe build -j 4 {args}, {('kill -9', '^C', '^C ^C')[presses]} after "
                   f"{moment:.2f} s  [remote {self.mode}]")
        super().interrupt(moment, presses, **args)

    def _planned(self, profile: str | None):
        """plan's total is what a build spends only when the remote answers: when it does
        not, frames to render wait (plan marks them; their price is what paying anyway costs)."""
        return super()._planned(profile) if self.mode == "up" else None

    def _unknown_ok(self, done: subprocess.CompletedProcess, args) -> None:
        """A build that could not read the remote renders nothing; if that leaves a frame
        undone it says why."""
        text = done.stdout + done.stderr
        assert done.returncode in (0, 1), (args, self.mode, self._story())
        if done.returncode == 1:
            assert "remote unavailable" in text, (args, self.mode, self._story())

    # --- rules: the remote --------------------------------------------------------------------

    @initialize(shared=st.booleans())
    def start(self, shared):
        """Half the examples begin where a team does: the first clone built and pushed, and a
        second clone of it builds, paying nothing."""
        if not shared:
            return
        assert self._run_at(self.root, "build").returncode == 0, self._story()
        self.clone_project(fresh=True)
        mark = self._mark()
        assert self._run_at(self.clone, "build").returncode == 0, self._story()
        assert not self._paid_since(mark), ("the second clone paid for what the first pushed",
                                           self._story())

    @rule(how=st.sampled_from(FAILURES))
    def remote_fails(self, how):
        self._fail(how)

    @contextmanager
    def _outage(self, how: str | None):
        """The remote fails for one command (`how`), then comes back; None: as it is."""
        if how is None:
            yield
            return
        self._fail(how)
        try:
            yield
        finally:
            self._restore()
            self._note("remote: back")

    def _fail(self, how: str) -> None:
        self._note(f"remote: {how}")
        self.remote.fail(how)

    @precondition(lambda self: self.mode != "up")
    @rule()
    def remote_back(self):
        self._restore()
        self._note("remote: back")

    def _restore(self) -> None:
        self.remote.restore()

    # --- rules: the second clone --------------------------------------------------------------

    @rule(fresh=st.booleans())
    def clone_project(self, fresh):
        """`git clone` (fresh: no cache) or `git pull` into the second checkout: it gets the
        first one's nbpipe.yaml and nbpipe.lock, nothing else."""
        clone = self.dir / "q"
        if fresh or self.clone is None:
            if self.clone is not None:  # its images not pushed yet go with it: the user's doing
                _, blobs, _ = self._remote()
                self.discarded |= self._blobs(clone) - blobs - self._blobs(self.root)
            shutil.rmtree(clone, ignore_errors=True)
            clone.mkdir()
        for name in ("nbpipe.yaml", "nbpipe.lock"):
            if (self.root / name).exists():
                shutil.copy(self.root / name, clone / name)
            else:
                (clone / name).unlink(missing_ok=True)
        shutil.copytree(self.root / "refs", clone / "refs", dirs_exist_ok=True)  # (in git too)
        self.clone, self.clone_frames = clone, set(self.frames())
        self._note(f"{'git clone' if fresh else 'git pull'} p → q")

    @precondition(lambda self: self.clone is not None)
    @rule(jobs=st.sampled_from([1, 4]), anyway=st.booleans(), outage=OUTAGES)
    def build_clone(self, jobs, anyway, outage):
        args = ["build", "-j", str(jobs)] + (["--remote-errors=render"] if anyway else [])
        with self._outage(outage):
            self._build_at(self.clone, args)

    @rule(outage=OUTAGES)
    def build_anyway(self, outage):
        """The first clone, told to pay even when the remote cannot say what it holds."""
        with self._outage(outage):
            self._build_at(self.root, ["build", "--remote-errors=render"])

    def _build_at(self, root: Path, args: list[str]) -> None:
        anyway = "--remote-errors=render" in args
        self.paid_anyway |= anyway and self.mode != "up"
        done = self._run_at(root, *args)
        if self.mode != "up" and not anyway:
            self._unknown_ok(done, (root.name, *args))
        if done.returncode == 0:
            self._complete_at(root)

    @precondition(lambda self: self.clone is not None)
    @rule(outage=OUTAGES)
    def pull_clone(self, outage):
        with self._outage(outage):
            self._pull()

    def _pull(self) -> None:
        mark = self._mark()
        done = self._run_at(self.clone, "pull")
        assert not self._paid_since(mark), ("pull paid", self._story())
        assert done.returncode in (0, 1), self._story()
        if self.mode != "up" and done.returncode == 1:
            assert "remote unavailable" in done.stdout, self._story()
        lock = {n: e for n, e in self._lock_at(self.clone).items() if n in self.clone_frames}
        there = self._blobs(self.clone) | self._remote()[1]
        if self.mode == "up" and all(e["digest"] in there for e in lock.values()):
            assert done.returncode == 0, self._story()
        missing = {line.split()[1] for line in done.stdout.splitlines()
                   if line.startswith("missing ")}  # their outputs stay as they were
        for name, entry in lock.items():
            if name not in missing:
                data = (self.clone / entry["output"]).read_bytes()
                assert hashlib.sha256(data).hexdigest() == entry["digest"], (entry, self._story())

    @rule(second=st.booleans())
    def push(self, second):
        """`nbpipe push` sends what the remote lacks, or says the remote is unavailable."""
        root = self.clone if second and self.clone is not None else self.root
        mark = self._mark()
        done = self._run_at(root, "push")
        assert not self._paid_since(mark), ("push paid", self._story())
        if self.mode == "up":
            assert done.returncode == 0, self._story()
        elif done.returncode == 0:  # nothing to send: the remote was not asked
            assert done.stdout.startswith("pushed 0 image(s)") and \
                done.stdout.endswith("; 0 were there already\n"), self._story()
        else:
            assert done.returncode == 1 and "remote unavailable" in done.stderr, self._story()

    @rule()
    def plan(self):
        """`plan` never prices a render as certain when the remote could not say it lacks it."""
        done = self._run_at(self.root, "plan", "--json")
        assert done.returncode == 0, self._story()
        for step in json.loads(done.stdout)["frames"]:
            if step["action"] == "render":
                assert ("remote unavailable" in step["reason"]) == (self.mode != "up"), \
                    (step, self._story())

    @precondition(lambda self: self.clone is not None)
    @rule(moment=st.floats(0.0, 2.0), flip=st.sampled_from([None, "unplug", "plug"]))
    def build_both(self, moment, flip):
        """Both clones build at once, one remote between them; the cable may be pulled (or put
        back) while they run."""
        if flip == "plug" and self.mode != "unplugged":
            flip = None
        # claims hold while the remote answers throughout and no fault is queued at the fakes
        # (a reply lost to a fault may have been billed: its claim is released, README says)
        claimed = flip is None and self.mode == "up" and not self._faults_queued()
        self._judge_unbilled()
        tasks, billed, calls = len(self.fake.tasks), len(self.gemini.billed), \
            len(self.openai.billed)
        env = self._env()
        if flip:  # the remote may come back mid-command: nbpipe's own retries (TeamRemote.env)
            env.pop("AWS_MAX_ATTEMPTS", None)
        procs = [subprocess.Popen([sys.executable, "-m", "nbpipe", "-C", str(root), "build",
                                   "-j", "4", "--json"], env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
                 for root in (self.root, self.clone)]
        if flip:
            time.sleep(moment)
            self.remote.unplug() if flip == "unplug" else self.remote.cable.plug()
            self._note(f"cable: {flip} after {moment:.2f} s")
        for proc, root in zip(procs, (self.root, self.clone)):
            out, err = proc.communicate(timeout=180)
            self._note(f"{root.name}$ nbpipe build -j 4 (both) → {proc.returncode}\n    "
                       + (out + err).strip().replace("\n", "\n    "))
            self._exit_ok(proc.returncode, err + out, (root.name, "build", "both"))
            self._account(("build",), out)
        if flip == "plug":
            self.remote.restore()
        # Each claims a request's key on the remote before paying (engine/claiming.py): a
        # request new to both is paid once, unless an earlier build's journal held it open (a
        # task is re-attached unclaimed) or claims could not hold (the cable pulled, a fault).
        new_tasks = list(self.fake.tasks.values())[tasks:]
        paid = Counter([*((self._hiapi_request(t), self._hiapi_frame(t)) for t in new_tasks),
                        *((self._gemini_request(b), self._gemini_frame(b))
                          for b in self.gemini.billed[billed:]),
                        *((self._openai_request(c), self._openai_frame(c))
                          for c in self.openai.billed[calls:])])
        twice = {pair: n for pair, n in paid.items() if n > 1}
        if claimed:
            assert all(frame in self.open_before for _, frame in twice), \
                (f"paid twice by two runners at once: {twice}", self._story())
        self.forced.update({request: n - 1 for (request, _), n in twice.items()})

    def _faults_queued(self) -> bool:
        return any(queue for fake in (self.fake, self.gemini, self.openai)
                   for queue in fake.faults._queues.values())

    @rule()
    def settle(self):
        """The remote is back and faults stop: each clone completes a build, and then every
        image either one holds is on the remote."""
        self._restore()
        super().settle()
        if self.clone is not None:
            for _ in range(3):
                if self._run_at(self.clone, "build").returncode == 0:
                    self._complete_at(self.clone)
                    break
            else:
                raise AssertionError("no clean build of the clone after the faults stopped")
        self._look_at_caches()
        _, blobs, recorded = self._remote()
        missing = sorted(self.seen - self.discarded - blobs)
        assert not missing, (f"{len(missing)} paid image(s) never pushed", self._story())
        unrecorded = sorted(self.seen - self.discarded - recorded)
        assert not unrecorded, (f"{len(unrecorded)} image(s) with no take record on the remote",
                                self._story())
        self.remote_checks += 1

    # --- invariants ---------------------------------------------------------------------------

    @invariant()
    def never_paid_for_what_the_remote_held(self):
        forced = set(self.forced - self.forced_before)
        for request, frame in self._paid_since(self.step_mark):
            if request not in forced and frame not in self.open_before:
                assert self.paid_anyway or frame not in self.held_before, \
                    (f"paid for {frame}, which the remote held", self._story())
        self._snapshot()

    def _snapshot(self) -> None:
        """What the next step is judged against: the remote's holdings, the journals' open
        entries (a resend of those is not a new decision to pay), the forced takes so far."""
        self.step_mark = self._mark()
        self.held_before = self._remote()[0]
        self.open_before = self._open_requests(self.root) | self._open_requests(self.clone)
        self.forced_before = Counter(self.forced)
        self.paid_anyway = False
        self._look_at_caches()

    def _can_pay(self) -> bool:
        """Only with the remote answering: otherwise a build renders nothing new."""
        return self.mode == "up" and super()._can_pay()

    def _quiescent(self) -> bool:
        """No journal entry open in either clone (both pay at the same fakes)."""
        return super()._quiescent() and not self._open_requests(self.clone)

    @staticmethod
    def _open_requests(root: Path | None) -> set[tuple]:
        """The frame requests a clone's journal holds open."""
        from nbpipe.store.journal import Journal

        if root is None:
            return set()
        journal = Journal(root / ".nbpipe" / "journal.jsonl")
        return {_frame_request(e.request) for e in journal.open.values()}

    def _look_at_caches(self) -> None:
        """The images the caches hold, every one paid for: but for what `gc_inside_grace`
        planted (a blob no build made, no take names: nothing to push)."""
        planted = {path.name for path in self.young}
        for root in (self.root, self.clone):
            if root is not None:
                self.seen |= self._blobs(root) - planted

    def _observe(self) -> None:
        """MoneyMachine notes what its cache has held (`cached`: a paid image is kept there);
        here the second clone's cache and the remote keep paid images too, and what a fresh
        `git clone` deleted with the second clone is the user's doing."""
        super()._observe()
        if hasattr(self, "remote"):  # (MoneyMachine.__init__ runs before the remote exists)
            self.cached |= self._blobs(self.clone) | self.remote.blobs() | self.discarded

    @staticmethod
    def _blobs(root: Path | None) -> set[str]:
        if root is None:
            return set()
        return {p.name for p in (root / ".nbpipe" / "blobs").glob("*/*")}

    def _lock_at(self, root: Path) -> dict:
        path = root / "nbpipe.lock"
        return json.loads(path.read_text())["frames"] if path.exists() else {}

    def _complete_at(self, root: Path) -> None:
        """After a build that exited 0 over every frame, in either clone."""
        if root == self.root:
            return self._complete()
        from nbpipe.store.journal import Journal

        self.checks += 1
        for entry in Journal(root / ".nbpipe" / "journal.jsonl").open.values():
            task = self.fake.tasks.get(entry.task_id or "")
            assert task is not None and task.outcome == "stuck", \
                ("an open journal entry after a complete build", entry, self._story())
        self._tally()
        lock = self._lock_at(root)
        assert set(lock) == self.clone_frames, (sorted(lock), self._story())
        for entry in lock.values():
            data = (root / entry["output"]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == entry["digest"], (entry, self._story())
        assert not list(root.rglob("*.part"))
        assert list((root / ".nbpipe" / "tmp").iterdir()) == []
        mark = self._mark()
        self._run_at(root, "build")
        assert not self._paid_since(mark), ("a build after a clean build paid", self._story())

