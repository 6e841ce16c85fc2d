"""A model-based test of the money invariants (issue 12): real `nbpipe` processes against the
fake HiAPI, the fake Gemini, the fake OpenAI and the fake fal queue, driven by a hypothesis
state machine that edits the project (a prompt, a template's var, a matrix value, a bible, a
file input — also with its old size and mtime put back; adds and removes targets and matrix
values), builds (with -j, --max-cost, --force, a profile), injects faults, kills builds with
SIGKILL and SIGINT, and runs gc, pin and pull after a build and beside a live one. A *request*
is what the fake received that makes it distinct (model, prompt, parameters, the digest of each
input image): payments are counted per request. After every step the invariants hold:

- no traceback, and exit codes only 0, 1, 2 or 130;
- the fake HiAPI never created two tasks under one Idempotency-Key, and no request was paid
  more often than once plus its forced takes, plus its tasks that failed or met a download
  fault, plus the times gc removed every image it had;
- no Gemini request was billed for an image more often than once plus its forced takes, plus
  its images that were lost (a dropped reply, or a build killed or abandoned with a second
  Ctrl-C while it was in flight), plus the times gc removed every image it had;
- every Gemini image the fake sent in a reply is in the cache, unless the build receiving it was
  killed or abandoned (one Ctrl-C waits for Gemini requests in flight: they are paid);
- OpenAI (a call lane too: no idempotency key, a lost reply billed) is held to the Gemini rules
  above: a generation and an edit of a project file, its lost replies, refusals and moderation
  blocks; every one of its billed requests is in Σ billed, a killed build's journalled and
  never billed ones are excused as Gemini's are;
- no fal request was queued more often than once, plus those whose id never reached a build (a
  lost submit reply, a kill before it came: possibly billed, never resent within the build) or
  whose image never came (flagged, an expired URL), plus the times gc removed every image it had;
- a build with --max-cost C made new tasks, generateContent, OpenAI and fal requests worth at
  most C;
- a build with no fault queued, no task left over and no cap or --force spends exactly what
  `plan` said just before: the fakes bill that total (each at the catalogue's price of its model
  and resolution), and the build's summary says so;
- every take the cache indexes and every image any profile's lock section pins has its blob (gc
  beside a build never removes a paid image), and the lock parses;
- every build prints JSON (`--json`); its frame events' `cost_usd` sum to its summary's
  `spent_usd + spent_earlier_usd` (issue 27 item 1: events = summary);
- at a quiescent point (a complete build, no journal entry open), Σ over every build of
  `spent_usd + spent_earlier_usd` equals what the fakes billed (HiAPI: every task created, but
  a failed one; Gemini and OpenAI: every request that made an image, delivered or lost; fal:
  every request queued that makes an image), with two exact excuses: a Gemini or OpenAI request
  (or a fal submit) a killed build had journalled as sent that the fake never billed
  (the next build must count it as possibly billed: it cannot know), and a HiAPI task billed for
  a create whose reply never came and whose resend came after HiAPI forgot its key (a new task:
  the first is billed without any build able to know). A kill -9'd build prints no
  summary: its paid requests are the next build's `spent_earlier_usd` (issue 27 item 2).
  `NBPIPE_MODEL_REPORTING=0` turns these two off (to measure other checks on an engine that
  does not keep them yet);
- an image committed to the cache and not yet indexed survives gc inside its grace period;
- after a failed task, a rebuild of its frame makes a new task (a new take: a new
  Idempotency-Key) and completes;
- after a complete build (exit 0): the journal holds only tasks the fake still runs, every task
  the fake reports as succeeded (and whose download met no fault) is in the cache, the lock
  section has every frame and pins for each an image the fakes made for the request the frame
  makes now (its backend, model, prompt and input bytes, in that profile), every output's digest
  equals its lock entry, no partial file is left anywhere, and a second build sends 0 creates
  and 0 generates.

The fake HiAPI forgets an Idempotency-Key a day (of its own clock, moved by the rule
`a_day_passes`) after it was first used, as HiAPI does: a create resent after that is a new,
billed task, so a client that re-creates what it should poll pays twice, and the model sees it.
Rules also kill a build while its create is at HiAPI (paid, unanswered) and then change or
force the frame, let the manifest's `pricing:` go below list prices beside a cap, and put a
not-yet-indexed image beside gc.

`tests/engine/test_money_model.py` runs it in CI (fixed seed, bounded); `benchmarks/money_soak.py`
runs it with fresh seeds and many examples. Subclasses (other remotes, second clones) override
the hooks `_env`, `_run`, `_write`, `_complete` and `teardown`.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from nbpipe.catalog import builtin
from tests.fakes.fal import FakeFal
from tests.fakes.gemini import FakeGemini
from tests.fakes.hiapi import DAY, FakeHiApi
from tests.fakes.openai import FakeOpenAI
from tests.fakes.server import image_bytes

HIAPI_MODEL = "Nano-Banana"
# Issue 27 items 1-2 (events = summary; Σ reported = Σ billed), checked after every build.
REPORTING = os.environ.get("NBPIPE_MODEL_REPORTING", "1") != "0"
GEMINI_MODEL = "gemini-3.1-flash-image"
PRO_MODEL = "gemini-3-pro-image"  # where the `hero` profile moves the Gemini targets and `s`
FAL_MODEL = "fal-ai/flux/dev"  # target f1
FAL_EDIT = "fal-ai/flux-pro/kontext"  # target fe: an edit of refs/x.png on fal
FE_PROMPT = "the kite in this photo, in fog"
FAULTS = {"lost create reply": ("create", "drop"), "429": ("create", "429"),
          "503": ("create", "503"), "task fail": ("task", "fail"),
          "slow task": ("task", "stuck"), "expired URL": ("download", "gone", "gone"),
          "truncated image": ("download", "truncate"),
          # Gemini (endpoint "generate"): a lost reply is billed; refusals are retried
          "gemini lost reply": ("generate", "drop"), "gemini 429": ("generate", "429"),
          "gemini 503": ("generate", "503"), "gemini safety": ("generate", "safety"),
          "gemini prompt blocked": ("generate", "prompt-blocked"),
          "gemini no image": ("generate", "no-image"),
          # OpenAI (endpoint "images"): a lost reply is billed; refusals are retried; a
          # moderation block bills nothing
          "openai lost reply": ("images", "drop"), "openai 429": ("images", "429"),
          "openai 503": ("images", "503"), "openai moderation": ("images", "moderation"),
          # fal (endpoints "submit", "request", "media"): a lost submit reply may be billed,
          # never resent; refusals before queueing are retried
          "fal lost submit": ("submit", "lost"), "fal 429": ("submit", "429"),
          "fal gateway": ("submit", "502"), "fal nsfw": ("request", "nsfw"),
          "fal runner failure": ("request", "fail"), "fal expired URL": ("media", "expired")}
FAL_ENDPOINTS = {"submit", "request", "media"}
OPENAI_MODEL = "gpt-image-1-mini"  # at quality low, 1024x1024: USD 0.005 an image
OPENAI_WORDS = ["a paper crane", "a glass crane", "a crane at dusk"]
OE_PROMPT = "the crane in this photo, in gold"  # target oe: an edit of refs/x.png
GEMINI_WORDS = ["a red kite", "a blue kite", "a paper moon"]
FAL_WORDS = ["a pier at dawn", "a pier at dusk", "a jetty in rain"]
THINGS = ["boat", "kite", "lighthouse"]  # template `at`: "a {{ thing }} at {{ time }}"
TIMES = ["dawn", "noon", "dusk", "night"]  # v's time, and the values m's matrix draws from
BIBLES = ["Mira, a field engineer in a rust-orange beanie",
          "Mira, a field engineer with a battered yellow toolbelt"]
SCENE = "on a city rooftop"
INPUTS = 4  # distinct refs/x.png images, all of one size
GI_PROMPT = "the kite in this photo, at night"
SLOW_GEMINI = 0.8  # seconds a Gemini reply takes while a build is to be interrupted
# A manifest's `pricing:` far below list prices (from a pull request, say): the cap must still
# be measured at list prices, which the fakes bill.
CHEAP = """\
pricing:
  hiapi: {Nano-Banana: 0.001}
  gemini: {%s: 0.001, %s: 0.001}
"""
PROFILES = """\
profiles:
  draft: {targets: ["[!gof]*"], model: Nano-Banana, wins: true}
  hero: {targets: ["g*", s], backend: gemini, model: %s, wins: true}
bibles:
  mira: {text: %s}
templates:
  at: "a {{ thing }} at {{ time }}"
  scene: "{{ bible }} | Scene: {{ scene }}"
"""


def ci_settings(examples: int, steps: int) -> settings:
    """A bounded, derandomised run for CI (benchmarks/money_soak.py runs fresh seeds). No
    shrinking: each step runs real processes, so shrinking a failure takes CI many minutes,
    and the failure's story (its commands and their output) is in the assertion already."""
    return settings(max_examples=examples, stateful_step_count=steps, deadline=None,
                    derandomize=True, database=None, suppress_health_check=list(HealthCheck),
                    phases=[Phase.explicit, Phase.reuse, Phase.generate])


def walk(machine_class: type[RuleBasedStateMachine], steps) -> None:
    """Take fixed steps through a machine, every invariant it declares checked after each."""
    machine = machine_class()
    try:
        for step in steps:
            step(machine)
            for invar in machine.invariants:
                invar.function(machine)
    finally:
        machine.teardown()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def pool_png(i: int) -> bytes:
    """Distinct images of one size (stored, not deflated: the size follows the pixels' count)."""
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (8, 8), (40 * i, 200 - 40 * i, 90)).save(out, "PNG", compress_level=0)
    return out.getvalue()


def price(backend: str, model: str, resolution: str | None) -> Decimal:
    return builtin().get(backend, model).price(resolution)


def usd(value) -> Decimal:
    return Decimal(str(value or 0))


def record_frame(record: dict) -> tuple:
    """(backend, model, prompt, input digests) of a request record (a journal entry's)."""
    inputs = tuple(i.get("digest") for i in record.get("inputs") or [] if isinstance(i, dict))
    return record.get("backend"), record.get("model"), record.get("prompt"), inputs


def with_json(args) -> tuple:
    """A build's arguments with `--json` (its summary says what it paid)."""
    args = tuple(args)
    if args[:1] == ("build",) and "--json" not in args and "--check" not in args:
        return (*args, "--json")
    return args


def _canonical(node):
    """A Gemini body with each inline image's base64 replaced by the digest of its bytes."""
    if isinstance(node, dict):
        return {k: ("sha256:" + sha(base64.b64decode(v)) if k == "data" and isinstance(v, str)
                    else _canonical(v)) for k, v in node.items()}
    return [_canonical(v) for v in node] if isinstance(node, list) else node


def _fal_canonical(body: dict) -> dict:
    """A fal body with its input image's data URI replaced by the digest of its bytes."""
    url = body.get("image_url")
    if isinstance(url, str) and url.startswith("data:"):
        return {**body, "image_url": "sha256:" + sha(base64.b64decode(url.partition(",")[2]))}
    return body


class MoneyMachine(RuleBasedStateMachine):
    """The project, the fakes, and what a correct nbpipe may have paid for."""

    def __init__(self):
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="nbpipe-money-"))
        self.root = self.dir / "p"
        (self.root / "refs").mkdir(parents=True)
        self.fake = FakeHiApi().__enter__()
        self.gemini = FakeGemini().__enter__()
        self.openai = FakeOpenAI().__enter__()
        self.openai_prompt = OPENAI_WORDS[0]  # target o1 (oe edits refs/x.png)
        self.openai_abandoned: set[int] = set()  # OpenAI replies (billed numbers) unwaited for
        self.fal = FakeFal().__enter__()
        self.fal_prompt = FAL_WORDS[0]  # target f1, on fal (fe edits refs/x.png)
        self.prompts = {"a": "a lighthouse", "b": "a harbour", "c": "a lighthouse"}  # HiAPI
        self.gemini_prompts = {"g1": "a red kite", "g2": "a red kite"}
        self.vars = {"thing": "boat", "time": "dawn"}  # target v: template `at`
        self.matrix = ["dawn", "noon"]  # target m: template `at`, thing kite, matrix time
        self.bible = BIBLES[0]  # target s: template `scene`, bible mira
        self.input = 0  # refs/x.png = pool_png(input), the input of Gemini target gi
        self.forced: Counter = Counter()  # request → explicit --force takes
        self.abandoned: set[int] = set()  # Gemini replies (billed numbers) nobody waited for
        self.cached: set[str] = set()  # every digest the cache has ever held
        self.regained: Counter = Counter()  # request → times gc removed all it had
        self._held: dict[str, bool] = {}  # request → has an image now
        # Images gc said it removed (sha256 prefixes) since the last look: the cache held them,
        # though a gc beside a build may remove one the build made before any look saw it.
        self.gc_removed: set[str] = set()
        self.version = 0
        self.checks = 0
        self.plans = 0  # builds whose spend was checked against plan's total
        self.cheap = False  # the manifest's `pricing:` is below list prices
        self.forgotten: Counter = Counter()  # request → creates resent after HiAPI forgot its key
        self.young: set[Path] = set()  # images committed, not indexed: inside gc's grace
        self.reported = Decimal(0)  # Σ spent_usd + spent_earlier_usd over every build
        self.unbilled = Decimal(0)  # Gemini/OpenAI/fal requests journalled as sent, never billed
        self.excused: set[tuple] = set()  # the journal entries `unbilled` counts
        # killed builds' call and fal entries, with what each fake had billed before the build
        self._killed: list[tuple[tuple[int, ...], list]] = []
        self.tallies = 0  # Σ reported = Σ billed checks made
        self.said: list[str] = []  # each command and what it printed: the story of a failure
        (self.root / "refs" / "x.png").write_bytes(pool_png(self.input))
        self._write()

    def teardown(self):
        for lock in self.dir.glob("nbpipe/*.lock"):  # a warm server of this example's
            pid = lock.read_text().strip()
            if pid.isdigit():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGTERM)
        self.fake.__exit__(None, None, None)
        self.gemini.__exit__(None, None, None)
        self.openai.__exit__(None, None, None)
        self.fal.__exit__(None, None, None)
        shutil.rmtree(self.dir, ignore_errors=True)

    # --- the project --------------------------------------------------------------------------

    def _write(self) -> None:
        lines = ["version: 1", "defaults: {backend: hiapi, model: Nano-Banana}",
                 *(PROFILES % (PRO_MODEL, json.dumps(self.bible))).splitlines()]
        if getattr(self, "cheap", False):
            lines += (CHEAP % (GEMINI_MODEL, PRO_MODEL)).splitlines()
        lines += ["targets:"]
        lines += [f"  {name}: {{prompt: {json.dumps(p)}}}" for name, p in self.prompts.items()]
        lines += [f"  v: {{template: at, vars: {json.dumps(self.vars)}}}",
                  f"  m: {{template: at, vars: {{thing: kite}}, matrix: "
                  f"{{time: {json.dumps(self.matrix)}}}}}",
                  f"  s: {{template: scene, bible: mira, vars: {{scene: {json.dumps(SCENE)}}}}}"]
        lines += [f"  {name}: {{prompt: {json.dumps(p)}, backend: gemini, model: {GEMINI_MODEL}}}"
                  for name, p in self.gemini_prompts.items()]
        lines += [f"  gi: {{prompt: {json.dumps(GI_PROMPT)}, inputs: [refs/x.png], "
                  f"backend: gemini, model: {GEMINI_MODEL}}}"]
        openai = f"backend: openai, model: {OPENAI_MODEL}, quality: low"
        lines += [f"  o1: {{prompt: {json.dumps(self.openai_prompt)}, {openai}}}",
                  f"  oe: {{prompt: {json.dumps(OE_PROMPT)}, inputs: [refs/x.png], {openai}}}"]
        lines += [f"  f1: {{prompt: {json.dumps(getattr(self, 'fal_prompt', 'a pier'))}, "
                  f"backend: fal, model: {FAL_MODEL}}}",
                  f"  fe: {{prompt: {json.dumps(FE_PROMPT)}, inputs: [refs/x.png], "
                  f"backend: fal, model: {FAL_EDIT}}}"]
        (self.root / "nbpipe.yaml").write_text("\n".join(lines) + "\n")

    def frames(self, profile: str | None = None) -> dict[str, tuple]:
        """Each frame → the request it makes now, as (backend, model, prompt, input digests):
        what the model knows of nbpipe's templates, matrices, bibles and profiles."""
        hiapi = {**self.prompts, "v": "a {thing} at {time}".format(**self.vars),
                 **{f"m/{t}": f"a kite at {t}" for t in self.matrix},
                 "s": f"{self.bible} | Scene: {SCENE}"}
        out = {f: ("hiapi", HIAPI_MODEL, p, ()) for f, p in hiapi.items()}
        out |= {f: ("gemini", GEMINI_MODEL, p, ()) for f, p in self.gemini_prompts.items()}
        out["gi"] = ("gemini", GEMINI_MODEL, GI_PROMPT, (sha(pool_png(self.input)),))
        out["o1"] = ("openai", OPENAI_MODEL, self.openai_prompt, ())
        out["oe"] = ("openai", OPENAI_MODEL, OE_PROMPT, (sha(pool_png(self.input)),))
        out["f1"] = ("fal", FAL_MODEL, self.fal_prompt, ())
        out["fe"] = ("fal", FAL_EDIT, FE_PROMPT, (sha(pool_png(self.input)),))
        if profile == "hero":
            out |= {f: ("gemini", PRO_MODEL, *out[f][2:]) for f in out
                    if f == "s" or f.startswith("g")}
        return out

    def _env(self) -> dict:
        env = {**os.environ, "HIAPI_API_KEY": self.fake.key, "HIAPI_BASE_URL": self.fake.url,
               "GEMINI_API_KEY": self.gemini.key, "GOOGLE_GEMINI_BASE_URL": self.gemini.url,
               "OPENAI_API_KEY": self.openai.key, "OPENAI_BASE_URL": self.openai.base,
               "NBPIPE_HIAPI_POLL_DELAY": "0", "NBPIPE_HIAPI_POLL_INTERVAL": "0.02",
               "NBPIPE_RETRY_BASE": "0.01", "NBPIPE_HIAPI_TIMEOUT": "1.5",
               "NBPIPE_RECOVER_TIMEOUT": "3", "NBPIPE_INTERRUPT_GRACE": "0.5",
               "NBPIPE_CLAIM_LEASE": "1",  # a killed build's claim lapses at once
               "FAL_KEY": self.fal.key, "FAL_BASE_URL": self.fal.url,
               "NBPIPE_FAL_POLL_INTERVAL": "0.02", "NBPIPE_FAL_TIMEOUT": "1.5"}
        env.pop("GOOGLE_API_KEY", None)
        if os.environ.get("MONEY_WARM") == "1":  # every build a warm server's child (nbpipe/warm)
            env |= {"NBPIPE_WARM": "1", "XDG_RUNTIME_DIR": str(self.dir)}
        return env

    def _popen(self, *args: str) -> subprocess.Popen:
        self._judge_unbilled()
        args = with_json(args)
        return subprocess.Popen([sys.executable, "-m", "nbpipe", "-C", str(self.root), *args],
                                env=self._env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        self._judge_unbilled()
        args = with_json(args)
        done = subprocess.run([sys.executable, "-m", "nbpipe", "-C", str(self.root), *args],
                              env=self._env(), capture_output=True, text=True, timeout=120)
        self._exit_ok(done.returncode, done.stderr + done.stdout, args)
        self._note_gc(args, done.stdout)
        self._account(args, done.stdout)
        return done

    # --- what builds report (issue 27 items 1-2) ----------------------------------------------

    def _account(self, args, out: str) -> None:
        """A build's JSON events: its frames' costs must sum to its summary's spend, and what
        it reports paid counts towards Σ reported. A build killed before its summary reports
        nothing: the next build reports its paid requests (`spent_earlier_usd`)."""
        if not args or args[0] != "build" or "--check" in args:
            return
        docs = []
        for line in out.splitlines():
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if isinstance(doc, dict):
                docs.append(doc)
        summary = next((d for d in reversed(docs) if d.get("event") == "summary"), None)
        if summary is None:
            return
        reported = usd(summary.get("spent_usd")) + usd(summary.get("spent_earlier_usd"))
        self.reported += reported
        costs = [(d.get("frame"), d.get("status"), usd(d.get("cost_usd")))
                 for d in docs if d.get("event") == "frame"]
        if REPORTING:
            assert sum((c for *_, c in costs), Decimal(0)) == reported, \
                ("events = summary: the frame events' costs do not sum to spent_usd + "
                 "spent_earlier_usd", args, [c for c in costs if c[2]], summary, self._story())

    def _billed(self) -> Decimal:
        """What the fakes billed so far: every HiAPI task but a failed one; every Gemini
        request that made an image (delivered, or lost on the way back); every OpenAI request
        the fake billed (it bills only those that made an image); every fal request queued that
        makes an image."""
        return self._cost([t for t in list(self.fake.tasks.values()) if t.outcome != "fail"],
                          [b for b in list(self.gemini.billed) if b.paid_image],
                          list(self.openai.billed), list(self.fal.billed))

    def _quiescent(self) -> bool:
        """No request is out: no journal entry open (every paid request has had its build)."""
        return not self._journal()

    def _tally(self) -> None:
        """Σ reported = Σ billed, at a quiescent point."""
        self._judge_unbilled()
        if not REPORTING or not self._quiescent():
            return
        self.tallies += 1
        billed, unknowable = self._billed(), self._unknowable()
        assert self.reported == billed + self.unbilled - unknowable, \
            ("Σ reported != Σ billed", f"builds reported USD {self.reported}",
             f"the fakes billed USD {billed}",
             f"excused: USD {self.unbilled} journalled as sent and never billed (Gemini, "
             "OpenAI, fal), "
             f"USD {unknowable} billed for a create whose key HiAPI forgot before its resend "
             "(HiAPI)", self._story())

    def _unknowable(self) -> Decimal:
        """Tasks no build can know it paid for: a create whose reply never came (a kill), its
        resend a day later a new task since HiAPI forgot the key; the earlier task is billed."""
        forgotten, under = set(self.fake.forgotten_keys), {}
        for task, key in zip(list(self.fake.tasks.values()), list(self.fake.created_keys),
                             strict=False):
            if key in forgotten:
                under.setdefault(key, []).append(task)
        return self._cost([t for tasks in under.values() for t in tasks[:-1]
                           if t.outcome != "fail"], [])

    def _unbilled_after_kill(self, sent: tuple[int, ...]) -> None:
        """A killed build's Gemini and OpenAI requests (and fal submits) that the journal holds
        as sent (the next build must count them as possibly billed) and the fake never billed:
        the excuse, exactly. `sent` is `_sent()` before the build. Judged when the next command
        starts (`_judge_unbilled`): a request the killed build sent is billed when the fake
        reads it, which may be after the kill."""
        entries = [(slot, entry) for slot, entry in self._journal().items()
                   if entry.task_id is None and slot not in self.excused and
                   (entry.backend in ("gemini", "openai") or
                    (entry.backend == "fal" and entry.body))]
        self.excused |= {slot for slot, _ in entries}
        self._killed.append((sent, [entry for _, entry in entries]))

    def _judge_unbilled(self) -> None:
        for (_, first, first_call, first_fal), entries in self._killed:
            self.gemini.wait_idle()
            self.openai.wait_idle()
            self.fal.wait_idle()
            made = Counter(self._gemini_frame(b) for b in list(self.gemini.billed)[first:]
                           if b.paid_image)
            made.update(self._openai_frame(b) for b in list(self.openai.billed)[first_call:])
            made.update(self._fal_frame(self.fal.requests[b.request_id])
                        for b in list(self.fal.billed)[first_fal:])
            for entry in entries:
                frame = (entry.backend, *record_frame(entry.request)[1:])
                if made[frame]:
                    made[frame] -= 1
                else:
                    self.unbilled += builtin().get(entry.backend, entry.request.get("model")) \
                        .price_of(entry.request.get("params") or {})
        self._killed.clear()

    def _note_gc(self, args, out: str) -> None:
        if args and args[0] == "gc":
            self.gc_removed |= set(re.findall(r"^removed .*\(sha256 ([0-9a-f]{12})", out, re.M))

    def _exit_ok(self, code: int, text: str, args) -> None:
        self.said.append(f"$ nbpipe {' '.join(args)}  → {code}\n{text[-1500:]}")
        if (code == -signal.SIGINT or "init_import_site" in text) and \
                "nbpipe/" not in text.replace("nbpipe/__main__", ""):
            return  # Ctrl-C while the interpreter itself was starting, before nbpipe ran
        assert code in (0, 1, 2, 130), (args, code, text[-3000:])
        assert "Traceback" not in text, (args, text[-3000:])

    def _note(self, what: str) -> None:
        self.said.append(f"# {what}")

    def _story(self) -> str:
        return "\n".join(self.said[-10:])

    def _sent(self) -> tuple[int, int, int, int]:
        """How many HiAPI tasks, Gemini, OpenAI and fal requests the fakes have billed so far."""
        return len(self.fake.tasks), len(self.gemini.billed), len(self.openai.billed), \
            len(self.fal.billed)

    def _generates(self) -> int:
        return self.gemini.counts.get("generates", 0) + self.openai.counts.get("billed", 0)

    def _submits(self) -> int:
        return self.fal.counts.get("submits", 0)

    # --- what the fakes received --------------------------------------------------------------

    def _hiapi_request(self, task) -> str:
        return "hiapi " + json.dumps({"model": task.model, "input": task.input}, sort_keys=True)

    def _gemini_request(self, billed) -> str:
        body = self.gemini.bodies[billed.number - 1]
        return f"gemini {billed.model} " + json.dumps(_canonical(body), sort_keys=True)

    def _openai_request(self, billed) -> str:
        return f"openai {billed.endpoint} " + json.dumps(billed.body, sort_keys=True)

    def _openai_frame(self, billed) -> tuple:
        return "openai", billed.model, billed.prompt, tuple(sha(i) for i in billed.inputs)

    def _fal_request(self, queued) -> str:
        return "fal " + json.dumps({"model": queued.model, "body": _fal_canonical(queued.body)},
                                   sort_keys=True)

    def _fal_frame(self, queued) -> tuple:
        url = queued.body.get("image_url")
        inputs = (sha(base64.b64decode(url.partition(",")[2])),) if url else ()
        return "fal", queued.model, queued.body.get("prompt"), inputs

    def _hiapi_frame(self, task) -> tuple:
        return "hiapi", task.model, task.input["prompt"], ()

    def _gemini_frame(self, billed) -> tuple:
        parts = self.gemini.bodies[billed.number - 1]["contents"][0]["parts"]
        inputs = tuple(sha(base64.b64decode(p["inlineData"]["data"]))
                       for p in parts if "inlineData" in p)
        return "gemini", billed.model, billed.prompt, inputs

    def _cost(self, tasks, billed, calls=(), fal=()) -> Decimal:
        """What the fakes bill for these tasks, generateContent calls, OpenAI calls (each at
        the catalogue's price of its quality and size, as the fake priced it) and fal
        requests (as the fake priced each)."""
        total = sum((price("hiapi", t.model, t.input.get("resolution")) for t in tasks),
                    Decimal(0)) + sum((c.usd for c in calls), Decimal(0)) + \
            sum((b.usd for b in fal), Decimal(0))
        for b in billed:
            config = self.gemini.bodies[b.number - 1].get("generationConfig", {})
            total += price("gemini", b.model, config.get("imageConfig", {}).get("imageSize"))
        return total

    # --- rules: the project ---------------------------------------------------------------------

    @rule(name=st.sampled_from(["a", "b", "c"]), words=st.sampled_from(
        ["a lighthouse", "a harbour", "a storm", "a boat at dawn"]))
    def edit_prompt(self, name, words):
        self.prompts[name] = words
        self._write()

    @rule(name=st.sampled_from(["g1", "g2"]), words=st.sampled_from(GEMINI_WORDS))
    def edit_gemini_prompt(self, name, words):
        self.gemini_prompts[name] = words
        self._write()

    @rule(words=st.sampled_from(OPENAI_WORDS))
    def edit_openai_prompt(self, words):
        self.openai_prompt = words
        self._write()

    @rule(words=st.sampled_from(FAL_WORDS))
    def edit_fal_prompt(self, words):
        self.fal_prompt = words
        self._write()

    @rule(change=st.sampled_from([*(("thing", t) for t in THINGS),
                                  *(("time", t) for t in TIMES)]))
    def edit_var(self, change):
        """v's `thing` or `time` (v may come to make the same request as a frame of m)."""
        var, value = change
        self.vars[var] = value
        self._note(f"v.vars.{var} = {value}")
        self._write()

    @precondition(lambda self: len(self.matrix) < len(TIMES))
    @rule(value=st.sampled_from(TIMES), at=st.sampled_from([None, 0, 1, 2]))
    def edit_matrix(self, value, at):
        """A new value on m's axis (`value`, or the next one not there yet): in place of the
        one `at` (its frame goes, another comes), or beside them (None)."""
        i = TIMES.index(value)
        new = next(t for t in TIMES[i:] + TIMES[:i] if t not in self.matrix)
        if at is None:
            self.matrix.append(new)
        else:
            self.matrix[at % len(self.matrix)] = new
        self._note(f"m.matrix.time = {self.matrix}")
        self._write()

    @precondition(lambda self: len(self.matrix) > 1)
    @rule(at=st.integers(0, len(TIMES) - 1))
    def remove_matrix_value(self, at):
        self.matrix.pop(at % len(self.matrix))
        self._note(f"m.matrix.time = {self.matrix}")
        self._write()

    @rule(text=st.sampled_from(BIBLES))
    def edit_bible(self, text):
        self.bible = text
        self._note(f"bibles.mira.text = {text!r}")
        self._write()

    @rule(image=st.integers(0, INPUTS - 1), same_stat=st.booleans())
    def rewrite_input(self, image, same_stat):
        """New bytes in refs/x.png; with `same_stat`, written in place and its mtime put back:
        the size, inode and mtime of the old file (only the ctime tells)."""
        path = self.root / "refs" / "x.png"
        data = pool_png(image)
        if same_stat:
            before = os.stat(path)
            assert len(data) == before.st_size
            with open(path, "r+b") as handle:
                handle.write(data)
            os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
        else:
            path.write_bytes(data)
        self.input = image
        self._note(f"refs/x.png = image {image}{' (old size and mtime)' if same_stat else ''}")

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

    # --- rules: builds, faults, maintenance -----------------------------------------------------

    @rule(fault=st.sampled_from(sorted(FAULTS)))
    def inject(self, fault):
        endpoint, *faults = FAULTS[fault]
        fake = {"generate": self.gemini, "images": self.openai,
                **dict.fromkeys(FAL_ENDPOINTS, self.fal)}.get(endpoint, self.fake)
        fake.faults.add(endpoint, *faults)

    @rule(jobs=st.sampled_from([1, 4]), cap=st.sampled_from([None, "0.05", "0.1", "0.2"]),
          force=st.sampled_from([None, "a", "b", "g1", "v", "m", "gi"]),
          profile=st.sampled_from([None, None, "draft", "hero"]))
    def build(self, jobs, cap, force, profile=None):
        args = ["build", "-j", str(jobs), "--json"]
        if profile:
            args += ["--profile", profile]
        if cap:
            args += ["--max-cost", cap]
        frames = self.frames(profile)
        frame = f"m/{self.matrix[0]}" if force == "m" else force
        if frame in frames:
            args += ["--force", frame]
        planned = None if cap or "--force" in args else self._planned(profile)
        tasks, billed, calls, fal = self._sent()
        done = self._run(*args)
        new_tasks, new_billed = list(self.fake.tasks.values())[tasks:], self.gemini.billed[billed:]
        new_calls, new_fal = self.openai.billed[calls:], self.fal.billed[fal:]
        if "--force" in args:  # the forced frame's request may be paid once more
            self.forced.update({self._hiapi_request(t) for t in new_tasks
                                if self._hiapi_frame(t) == frames[frame]} |
                               {self._gemini_request(b) for b in new_billed
                                if self._gemini_frame(b) == frames[frame]})
        if cap:
            assert self._cost(new_tasks, new_billed, new_calls, new_fal) <= Decimal(cap), \
                (len(new_tasks), len(new_billed), len(new_calls), len(new_fal), cap,
                 self._story())
        if planned is not None:
            self._spent_as_planned(planned, done,
                                   self._cost(new_tasks, new_billed, new_calls, new_fal))
        if done.returncode == 0 and "--force" not in args:
            self._complete(profile)

    @rule(jobs=st.sampled_from([1, 4]), profile=st.sampled_from([None, "draft", "hero"]))
    def plain_build(self, jobs, profile):
        """A build with no cap and no --force: when no fault is queued either, it spends
        exactly plan's total."""
        self.build(jobs, None, None, profile)

    def _planned(self, profile: str | None) -> Decimal | None:
        """plan's total, when the next build is to spend exactly that: no fault queued at
        either fake, no task left stuck, no journal entry left open by an interrupted build
        (plan prices every frame it will render; one whose task is already paid costs less)."""
        queued = any(q for fake in (self.fake, self.gemini, self.openai, self.fal)
                     for q in fake.faults._queues.values())
        if queued or any(t.outcome == "stuck" for t in self.fake.tasks.values()) or \
                self._journal() or self.cheap:  # plan prices in the manifest's `pricing:`
            return None
        done = self._run("plan", "--json", *(["--profile", profile] if profile else []))
        return Decimal(str(json.loads(done.stdout)["summary"]["cost_usd"]))

    def _spent_as_planned(self, planned: Decimal, done, billed: Decimal) -> None:
        self.plans += 1
        summary = json.loads(done.stdout.splitlines()[-1])
        assert summary["event"] == "summary", self._story()
        spent = Decimal(str(summary["spent_usd"]))
        assert billed == planned == spent, \
            ("plan's total is not what the build spent", f"plan {planned}",
             f"the fakes billed {billed}", f"the build says {spent}", self._story())

    def _journal(self) -> dict:
        from nbpipe.store.journal import Journal

        return Journal(self.root / ".nbpipe" / "journal.jsonl").open

    @rule(moment=st.floats(0.05, 2.5), presses=st.sampled_from([0, 1, 2]),
          profile=st.sampled_from([None, None, "hero"]))
    def interrupt(self, moment, presses, profile=None):
        """kill -9 (presses 0) or Ctrl-C once or twice at a random moment, with a HiAPI task
        stuck, Gemini and OpenAI replies slow and fal's requests held in its queue (something in
        flight to interrupt)."""
        self.fake.faults.add("task", "stuck")
        self.gemini.delay = self.openai.delay = SLOW_GEMINI
        self.fal.holds.hold("queue")  # fal's requests stay queued while the build runs
        sent = self._sent()
        try:
            proc = self._popen("build", "-j", "4", *(["--profile", profile] if profile else []))
            time.sleep(moment)
            if presses == 0:
                proc.kill()
            for _ in range(presses):
                proc.send_signal(signal.SIGINT)
                time.sleep(0.1)
            out, err = proc.communicate(timeout=120)
        finally:
            self.gemini.delay = self.openai.delay = 0.0
            self.fal.holds.release()
        if presses != 1:  # one Ctrl-C waits for calls in flight: they are paid
            self.abandoned |= {b.number for b in self.gemini.billed[sent[1]:]}
            self.openai_abandoned |= {b.number for b in self.openai.billed[sent[2]:]}
        self._exit_ok(proc.returncode if presses else 130, err + out,
                      ("build", f"^C x{presses}" if presses else "kill -9"))
        self._account(("build",), out)
        self._unbilled_after_kill(sent)

    @rule()
    def settle(self):
        """The faults stop and slow tasks finish: a build or two must complete, and then every
        invariant of a complete build holds."""
        for fake in (self.fake, self.gemini, self.openai, self.fal):
            for queue in fake.faults._queues.values():
                queue.clear()
        self.gemini.delay = self.openai.delay = 0.0
        for task in self.fake.tasks.values():
            if task.outcome == "stuck":
                task.outcome = "success"
        planned = self._planned(None)  # when no journal entry is left open
        tasks, billed, calls, fal = self._sent()
        for _ in range(3):
            done = self._run("build", "--json")
            if planned is not None:
                new_tasks = list(self.fake.tasks.values())[tasks:]
                self._spent_as_planned(planned, done, self._cost(
                    new_tasks, self.gemini.billed[billed:], self.openai.billed[calls:],
                    self.fal.billed[fal:]))
                planned = None
            if done.returncode == 0:
                return self._complete()
        raise AssertionError("no clean build after the faults stopped", self._story())

    @rule(profile=st.sampled_from([None, None, "hero"]))
    def gc_and_pin(self, profile=None):
        """gc (keeps what any profile's section pins), then pin take 1 of a frame."""
        self._run("gc", "--older-than", "0s")
        lock = self._lock(profile)
        if lock:
            self._run("pin", sorted(lock)[0], "1", *(["--profile", profile] if profile else []))

    @rule(moment=st.floats(0.0, 1.5), data=st.data())
    def maintain_beside_build(self, moment, data):
        frame = data.draw(st.sampled_from(sorted(self.frames())))
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
            for args, proc in [(("build", "--json"), build), *beside.items()]:
                out, err = proc.communicate(timeout=120)
                self._exit_ok(proc.returncode, err + out, args)
                self._note_gc(args, out)
                self._account(args, out)
                if args[0] != "build":
                    assert proc.returncode in (0, 1, 2), (args, proc.returncode, err)
                    assert proc.returncode == 0 or "\nerror: " in "\n" + err or \
                        out.startswith("missing"), (args, out, err)  # a clear refusal
        finally:
            self.gemini.delay = 0.0

    # --- rules: where a careless edit of the safety code would show -----------------------------

    def _quiet(self) -> None:
        """No fault queued at any fake, no reply slowed."""
        for fake in (self.fake, self.gemini, self.openai, self.fal):
            for queue in fake.faults._queues.values():
                queue.clear()
        self.gemini.delay = self.openai.delay = 0.0

    def _kill_at_create(self, *args: str) -> None:
        """Run `nbpipe build ARGS` and kill -9 it while its first create is at HiAPI: the task
        is made (billed), its reply not yet back; only the journal knows of it."""
        pause, sent = self.fake.pause_create, self._sent()
        pause.arm()
        try:
            proc = self._popen("build", "-j", "1", *args)
            arrived = pause.wait_arrived(60)
            proc.kill()
            out, err = proc.communicate(timeout=120)
        finally:
            pause.release()
        self._exit_ok(130, err + out, ("build", *args, "killed at a create"))
        assert arrived, ("the build sent no create", out, err)
        self._unbilled_after_kill(sent)

    def _can_pay(self) -> bool:
        """A build may send requests now (no journal entry open to collect first)."""
        return not self._journal()

    @precondition(lambda self: self._can_pay())
    @rule(name=st.sampled_from(["a", "b", "c"]), away=st.booleans())
    def kill_at_create(self, name, away):
        """A build killed while its create is at HiAPI; then (`away`) the frame's prompt
        changes, so no frame wants that request: the next build must still collect the paid
        task (resending the journalled body under its key: a replay, not a new task) and leave
        no journal entry open."""
        self._quiet()
        self.version += 1
        self.prompts[name] = f"a harbour at low tide {self.version}"
        self._write()
        self._kill_at_create(name)
        if away:
            self.prompts[name] = f"a harbour at high tide {self.version}"
            self._write()
        self._note(f"killed at the create of {name}{', then its prompt changed' if away else ''}")

    @precondition(lambda self: self._can_pay())
    @rule(name=st.sampled_from(["a", "b", "c"]))
    def fail_then_rebuild(self, name):
        """A task fails (HiAPI bills nothing for it); a rebuild of the frame is a new take: a
        new task under a new Idempotency-Key, never a replay of the failure, and it completes."""
        self._quiet()
        self.version += 1
        self.prompts[name] = f"a lighthouse in fog {self.version}"
        self._write()
        self.fake.faults.add("task", "fail")
        creates = self.fake.counts.get("creates", 0)
        failed = self._run("build", name)
        assert failed.returncode == 1 and self.fake.counts.get("creates", 0) == creates + 1, \
            ("the failed task", failed.returncode, self._story())
        again = self._run("build", name)
        assert again.returncode == 0 and self.fake.counts.get("creates", 0) == creates + 2, \
            ("a rebuild after a failed task made no new task", again.returncode, self._story())

    @rule(on=st.booleans())
    def cheap_prices(self, on):
        """The manifest's `pricing:` far below list prices: --max-cost is still measured at
        list prices (the invariant of `build` with a cap compares the fakes' bills to it)."""
        self.cheap = on
        self._note(f"pricing: {'far below list prices' if on else 'list prices'}")
        self._write()

    @precondition(lambda self: self._can_pay())
    @rule(name=st.sampled_from(["a", "b"]))
    def noop_after_a_killed_force(self, name):
        """A complete build (the no-op fingerprint written), then `build --force NAME` killed
        while its create is at HiAPI (paid; only the journal knows): the next build looks like
        a no-op, and must still collect that task instead of answering "nothing to do"."""
        self._quiet()
        for task in self.fake.tasks.values():
            if task.outcome == "stuck":
                task.outcome = "success"
        if name not in self.prompts:  # removed by an earlier step: declared again
            self.prompts[name] = "a lighthouse"
            self._write()
        if self._run("build").returncode != 0:
            return
        self._complete()
        tasks, request = len(self.fake.tasks), self.frames()[name]
        self._kill_at_create("--force", name)
        self.forced.update(self._hiapi_request(t) for t in list(self.fake.tasks.values())[tasks:]
                           if self._hiapi_frame(t) == request)
        done = self._run("build")
        assert done.returncode == 0, self._story()
        self._complete()

    @rule()
    def gc_inside_grace(self):
        """gc beside a writer of the cache: an image committed and not yet indexed (what a build
        leaves between its blob's rename and its take's record; a build killed there) is young,
        and gc leaves it for its grace period (the invariant `young_images_survive`)."""
        self.version += 1
        data = image_bytes("png", f"committed, not indexed {self.version}")
        digest = sha(data)
        path = self.root / ".nbpipe" / "blobs" / digest[:2] / digest
        path.parent.mkdir(parents=True, exist_ok=True)
        path.with_suffix(".tmp").write_bytes(data)
        os.replace(path.with_suffix(".tmp"), path)
        self.young.add(path)
        self._note(f"an image committed, not indexed: {digest[:12]}")
        self._run("gc", "--older-than", "0s")

    @rule()
    def a_day_passes(self):
        """HiAPI forgets every Idempotency-Key (after about 24 h). nbpipe resends a create
        only when it never heard its task id (a lost reply, a kill): each such journal entry
        may now be paid once more. A task whose id the journal holds is polled, never created
        again: re-creating it now is a second task, and never_paid_twice sees it."""
        for entry in self._journal().values():
            if entry.backend == "hiapi" and entry.task_id is None and entry.body:
                body = json.loads(entry.body)
                self.forgotten["hiapi " + json.dumps({"model": body["model"],
                                                      "input": body["input"]},
                                                     sort_keys=True)] += 1
        self.fake.advance(DAY)
        self._note("a day passes at HiAPI: it forgets every Idempotency-Key")

    # --- invariants ---------------------------------------------------------------------------

    def _observe(self) -> None:
        """Note the images the cache holds now; a request whose every image was removed (gc of
        a take no lock pins) may be paid for again."""
        blobs = self.root / ".nbpipe" / "blobs"
        present = {p.name for p in blobs.glob("*/*")} if blobs.is_dir() else set()
        self.cached |= present
        owners: dict[str, bool] = {}
        for request, _, digest in self._images():
            owners[request] = owners.get(request, False) or digest in present
            if digest[:12] in self.gc_removed:  # held until gc removed it
                self.cached.add(digest)
                self._held[request] = True
        self.gc_removed.clear()
        for owner, held in owners.items():
            if self._held.get(owner) and not held:
                self.regained[owner] += 1
            self._held[owner] = held

    def _images(self):
        """(request, frame request, digest) of every image either fake made."""
        for task in list(self.fake.tasks.values()):
            if task.image:
                yield self._hiapi_request(task), self._hiapi_frame(task), sha(task.image)
        for billed in list(self.gemini.billed):
            if billed.image:
                yield self._gemini_request(billed), self._gemini_frame(billed), sha(billed.image)
        for billed in list(self.openai.billed):
            if billed.image:
                yield self._openai_request(billed), self._openai_frame(billed), sha(billed.image)
        for queued in list(self.fal.requests.values()):
            if queued.billed:
                yield self._fal_request(queued), self._fal_frame(queued), sha(queued.image())

    @invariant()
    def never_paid_twice(self):
        self._observe()
        twice = Counter(self.fake.created_keys) - Counter(self.fake.forgotten_keys)
        assert all(n == 1 for n in twice.values()), \
            ("two tasks under one Idempotency-Key inside HiAPI's window", self._story())
        paid, spoiled = Counter(), Counter()
        for task in list(self.fake.tasks.values()):
            request = self._hiapi_request(task)
            paid[request] += 1
            if task.outcome == "fail" or task.download_faults:
                spoiled[request] += 1
        for request, n in paid.items():
            assert n <= 1 + self.forced[request] + spoiled[request] + self.regained[request] + \
                self.forgotten[request], ("HiAPI paid twice", request, n, self._story())
        billed, lost = Counter(), Counter()
        for b in list(self.gemini.billed):
            if b.paid_image:
                request = self._gemini_request(b)
                billed[request] += 1
                if b.fault == "drop" or (b.number in self.abandoned and
                                         sha(b.image) not in self.cached):
                    lost[request] += 1
        for request, n in billed.items():
            assert n <= 1 + self.forced[request] + lost[request] + self.regained[request], \
                ("Gemini paid twice", request, n, self._story())
        calls, lost = Counter(), Counter()
        for b in list(self.openai.billed):
            request = self._openai_request(b)
            calls[request] += 1
            if b.fault == "drop" or (b.number in self.openai_abandoned and
                                     sha(b.image) not in self.cached):
                lost[request] += 1
        for request, n in calls.items():
            assert n <= 1 + self.forced[request] + lost[request] + self.regained[request], \
                ("OpenAI paid twice", request, n, self._story())
        submitted, unknown = Counter(), Counter()
        for queued in list(self.fal.requests.values()):
            request = self._fal_request(queued)
            submitted[request] += 1
            # its id never reached a build (a lost reply, a kill), or its image never came
            if not queued.polls or queued.outcome != "ok" or queued.media_faults:
                unknown[request] += 1
        for request, n in submitted.items():
            assert n <= 1 + unknown[request] + self.regained[request], \
                ("fal queued one request twice", request, n, self._story())

    @invariant()
    def young_images_survive(self):
        for path in self.young:
            assert path.is_file(), ("gc removed an image inside its grace period", path.name,
                                    self._story())

    @invariant()
    def nothing_paid_is_lost(self):
        self._observe()
        for b in list(self.gemini.billed):
            if b.image and b.number not in self.abandoned:
                assert sha(b.image) in self.cached, ("a Gemini image sent, not cached", b.prompt,
                                                    self._story())
        for b in list(self.openai.billed):
            if b.fault != "drop" and b.number not in self.openai_abandoned:
                assert sha(b.image) in self.cached, ("an OpenAI image sent, not cached",
                                                    b.prompt, self._story())
        from nbpipe.store.cache import Cache

        if not (self.root / ".nbpipe").is_dir():
            return
        cache = Cache(self.root / ".nbpipe", create=False)
        try:
            for key in cache.index.keys():
                for take in cache.takes(key):
                    assert cache.has_blob(take.digest), \
                        ("a take without its image", key, self._story())
            for profile, section in self._sections().items():
                for name, entry in section.items():
                    assert cache.has_blob(entry["digest"]), \
                        ("a pinned image is gone", profile, name, self._story())
        finally:
            cache.close()

    def _sections(self) -> dict:
        """Every section of the lock: None (the default) and each profile's."""
        path = self.root / "nbpipe.lock"
        if not path.exists():
            return {}
        doc = json.loads(path.read_text())
        return {None: doc["frames"], **doc.get("profiles", {})}

    def _lock(self, profile: str | None = None) -> dict:
        return self._sections().get(profile, {})

    def _complete(self, profile: str | None = None) -> None:
        """After a build (of `profile`) that exited 0 over every frame."""
        self.checks += 1
        self._observe()
        for entry in self._journal().values():
            task = self.fake.tasks.get(entry.task_id or "")
            assert task is not None and task.outcome == "stuck", \
                ("an open journal entry after a complete build", entry, self._story())
        self._tally()
        for task in list(self.fake.tasks.values()):
            if task.status == "success" and task.outcome == "success" and \
                    not task.download_faults:
                assert sha(task.image) in self.cached, \
                    ("paid image lost", task.task_id, self._story())
        lock, frames = self._lock(profile), self.frames(profile)
        assert set(lock) == set(frames), (profile, sorted(lock), self._story())
        made: dict[str, set] = {}
        for _, frame, digest in self._images():
            made.setdefault(digest, set()).add(frame)
        for name, entry in lock.items():
            assert frames[name] in made.get(entry["digest"], set()), \
                ("the lock pins an image made for another request", profile, name,
                 frames[name], made.get(entry["digest"]), self._story())
            data = (self.root / entry["output"]).read_bytes()
            assert sha(data) == entry["digest"], (entry, self._story())
        assert not list(self.root.rglob("*.part"))
        assert list((self.root / ".nbpipe" / "tmp").iterdir()) == []
        before = self.fake.counts.get("creates", 0), self._generates(), self._submits()
        self._run("build", *(["--profile", profile] if profile else []))
        assert (self.fake.counts.get("creates", 0), self._generates(), self._submits()) == \
            before, ("a build after a clean build paid", profile, self._story())
