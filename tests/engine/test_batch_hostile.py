"""The batch lane against what an independent hostile review tried (issue #24): each test is a
way a build once paid twice, lost a paid image, hung, or reported the wrong money, and must
not. Each test's docstring tells the failure as the review found it (before the fix)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from decimal import Decimal

from tests.conftest import wait_for
from tests.engine.test_batch_lane import ONE_MODEL, billed, usd

FIVE = """version: 1
defaults: {backend: gemini, model: gemini-3.1-flash-image, lane: batch}
targets:
  a1: {prompt: one}
  a2: {prompt: two}
  a3: {prompt: three}
  a4: {prompt: four}
  a5: {prompt: five}
"""


def test_one_model_five_frames_j1_is_one_job(make_project, build, fake_gemini_batch):
    """-j 1: frames wait on the backend's slot; the flights.wait 'parked' is taken before the
    slot is acquired, so the walk looks idle early and the queue is flushed piecemeal."""
    fake = fake_gemini_batch
    fake.end_at_poll = 1
    root = make_project(FIVE)
    first = build(root, "-j", "1")
    assert first["code"] == 0, first["err"]
    assert first["rendered"] == 5
    assert len(fake.creates) == 1, fake.creates


ONE = """version: 1
defaults: {backend: gemini, model: gemini-3.1-flash-image, lane: batch}
targets:
  a1: {prompt: PROMPT}
"""


def reported(summary: dict) -> Decimal:
    return usd(summary["spent_usd"]) + usd(summary["spent_earlier_usd"])


def test_force_no_wait_then_a_plain_build_collects_and_reports_the_paid_take(
        make_project, build, run, fake_gemini_batch):
    """A forced take sent in a batch job, then a plain build: the frame is fresh (its take 1
    pinned), so it does not go with the entry, and _collectable() refuses a batch entry whose
    key a frame of this build has. The job's image is paid and never collected nor reported."""
    fake = fake_gemini_batch
    fake.end_at_poll = 1
    root = make_project(ONE.replace("PROMPT", "a lighthouse"))
    first = build(root)
    assert first["code"] == 0 and first["rendered"] == 1
    fake.end_at_poll = None
    forced = build(root, "--force", "--no-wait")
    assert forced["pending"] == 1 and len(fake.creates) == 2
    fake.finish_all()  # the forced take is made and billed
    total = reported(first) + reported(forced)
    for _ in range(3):
        later = build(root)
        total += reported(later)
    listed = run("-C", str(root), "batches", "--json")
    assert total == billed(fake), f"reported {total} != billed {billed(fake)}; " \
        f"batches still open: {listed.out}"


def test_kill_at_create_then_a_prompt_edit_still_collects_the_paid_job(make_project, build, run,
                                                             fake_gemini_batch, tmp_path):
    """kill -9 after the job exists but before its reply (no task id journalled), then the
    prompt changes: the old entry is a batch entry with no task; _collectable() says False for
    it and abandon_own/maybe_sent skip batch entries, so no build ever finds its job again."""
    fake = fake_gemini_batch
    root = make_project(ONE.replace("PROMPT", "a lighthouse"))
    kill_at_the_create(fake, root)
    (root / "nbpipe.yaml").write_text(ONE.replace("PROMPT", "a harbour"))
    fake.end_at_poll = 1
    total = Decimal(0)
    for _ in range(3):
        fake.finish_all()
        total += reported(build(root))
    listed = run("-C", str(root), "batches", "--json")
    assert total == billed(fake), f"reported {total} != billed {billed(fake)}; " \
        f"creates {fake.creates}; batches: {listed.out}"


def _noise_png(fmt: str, seed: str, size=(240, 240)) -> bytes:
    import hashlib
    import io
    import random

    from PIL import Image
    rng = random.Random(hashlib.sha256(seed.encode()).digest())
    noise = bytes(rng.getrandbits(8) for _ in range(size[0] * size[1] * 3))
    image = Image.frombytes("RGB", size, noise)
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def test_a_job_of_many_big_images_goes_as_a_file_and_is_collected(
        make_project, build, fake_gemini_batch, monkeypatch):
    """Every frame's image is within the per-image cap (NBPIPE_MAX_IMAGE_BYTES), but an inline
    job's GET carries ALL its images and exchange() reads at most 2*max_bytes + 1 MB: the job
    (paid) can never be read. Defaults: 129 MB, i.e. ~12 4K images or ~45 2K images per job,
    while MAX_LINES is 1000 and text-only requests are always sent inline."""
    import tests.fakes.gemini as fg
    monkeypatch.setattr(fg, "image_bytes", _noise_png)
    monkeypatch.setenv("NBPIPE_MAX_IMAGE_BYTES", "200000")
    assert len(_noise_png("png", "x")) < 200000
    fake = fake_gemini_batch
    fake.end_at_poll = 1
    manifest = "version: 1\ndefaults: {backend: gemini, model: gemini-3.1-flash-image, " \
               "lane: batch}\ntargets:\n" + "".join(f"  t{i}: {{prompt: p{i}}}\n" for i in range(8))
    root = make_project(manifest)
    total = Decimal(0)
    for _ in range(2):
        out = build(root)
        total += reported(out)
    assert out["rendered"] == 8 or out.get("pending") == 0, out["out"][-1500:]
    assert total == billed(fake)


def test_a_fresh_cache_finds_the_job_of_the_same_requests_not_a_second(make_project, build,
                                                                   fake_gemini_batch):
    """--no-wait on an ephemeral CI runner (or the cache deleted / another machine on the same
    key): the display name is deterministic (keys, take 1, attempt 1), yet nbpipe only looks for
    it after a lost reply; with no batches.jsonl it creates a second, paid job."""
    import shutil
    fake = fake_gemini_batch
    root = make_project(ONE.replace("PROMPT", "a lighthouse"))
    first = build(root, "--no-wait")
    assert first["pending"] == 1 and len(fake.creates) == 1
    shutil.rmtree(root / ".nbpipe")
    fake.end_at_poll = 1
    second = build(root)
    assert second["rendered"] == 1 and second["code"] == 0
    assert len(fake.creates) == 1, "a second job for the same request: " + str(fake.creates)


def test_a_planted_batches_line_never_sends_a_request_to_another_model(
        make_project, build, run, fake_gemini_batch):
    """batches.jsonl is documented as untrusted, yet BatchLane._refind creates the job on the
    log's `backend`/`model`, not the frame's: a planted line claiming (key, take 1) moves a
    flash frame to gemini-3-pro-image (billed at pro's price, budgeted at flash's) and caches
    pro's image under flash's key."""
    fake = fake_gemini_batch
    fake.end_at_poll = 1
    root = make_project(ONE.replace("PROMPT", "a lighthouse"))
    key = json.loads(run("-C", str(root), "plan", "--json").out)["frames"][0]["key"]
    cache = root / ".nbpipe"
    cache.mkdir(exist_ok=True)
    (cache / "batches.jsonl").write_text(json.dumps({
        "op": "job", "display": "nbpipe-planted", "backend": "gemini",
        "model": "gemini-3-pro-image", "members": [[key, 1]], "attempt": 1, "at": 1}) + "\n")
    out = build(root)
    assert [j.model for j in fake.jobs.values()] == ["gemini-3.1-flash-image"], \
        f"job made on {[j.model for j in fake.jobs.values()]}; reported {out['spent_usd']}, " \
        f"billed {billed(fake)}"


def test_fail_fast_creates_no_queued_batch_job(make_project, build, fake_gemini_batch):
    """A standard frame fails under --fail-fast while batch frames sit in the queue: the stop
    is set ("nothing new is sent"), yet the idle flush creates (and pays for) the job, which
    the stopped build then leaves running. _send_queue never looks at the stop."""
    fake = fake_gemini_batch
    fake.end_at_poll = 1
    fake.faults.add("generate", "prompt-blocked")
    root = make_project("""version: 1
defaults: {backend: gemini, model: gemini-3.1-flash-image, lane: batch}
targets:
  s1: {prompt: a standard one, lane: standard}
  b1: {prompt: a batch one}
  b2: {prompt: another batch one}
""")
    stopped = build(root, "--fail-fast")
    assert stopped["code"] == 1 and len(fake.creates) == 0, f"job made after a stop: {fake.creates}"


def test_a_job_the_server_no_longer_knows_fails_its_frames_and_is_sent_again(
        make_project, build, fake_gemini_batch):
    """A journalled job that 404s (deleted in AI Studio / by `DELETE batches/ID`, or purged
    after its retention): _follow turns every NbpipeError into 'stays journalled for a later
    build', so the entry never closes, the frame is never sent again and every build exits 0
    with `pending`."""
    fake = fake_gemini_batch
    root = make_project(ONE.replace("PROMPT", "a lighthouse"))
    assert build(root, "--no-wait")["pending"] == 1
    job = fake.jobs[fake.creates[0].split("/")[1]]
    job.deleted = True
    fake.end_at_poll = 1
    outs = [build(root) for _ in range(3)]
    assert outs[-1]["pending"] == 0, [(o["code"], o["pending"]) for o in outs]


def test_an_inline_answer_without_its_metadata_is_placed_and_paid_once(
        make_project, build, fake_gemini_batch):
    """The fake's own `no-metadata` fault (a forum-reported server bug): the line's image is
    made and billed, results() drops it (no key), _ended fails the frame as 'answered no line'
    with billed=False: nothing charged, entry closed, the next build pays again."""
    fake = fake_gemini_batch
    fake.end_at_poll = 1
    fake.faults.add("batch-line", "no-metadata")
    root = make_project(ONE.replace("PROMPT", "a lighthouse"))
    first = build(root)
    second = build(root)
    images = [b.key for b in fake.billed if b.image]
    assert reported(first) + reported(second) == billed(fake), \
        f"reported {reported(first) + reported(second)} billed {billed(fake)}; images {images}"


def test_lane_switch_after_no_wait_collects_the_job_and_pays_once(make_project, build,
                                                                  fake_gemini_batch):
    """(expected to hold) batch --no-wait, then --lane standard: the open entry's lane wins."""
    from tests.engine.test_batch_lane import standard_calls
    fake = fake_gemini_batch
    root = make_project(ONE.replace("PROMPT", "a lighthouse"))
    first = build(root, "--no-wait")
    fake.end_at_poll = 1
    second = build(root, "--lane", "standard")
    assert second["rendered"] == 1 and standard_calls(fake) == 0 and len(fake.creates) == 1
    assert reported(first) + reported(second) == billed(fake)


# --- a second review, after the first one's fixes -------------------------------------------

ONLY_A1 = """version: 1
defaults: {backend: gemini, model: gemini-3.1-flash-image, lane: batch}
targets:
  a1: {prompt: a lighthouse at dusk}
"""


def test_orphan_whose_job_failed_is_not_paid_again(make_project, build, fake_gemini_batch):
    """A frame removed while its job ran; the job FAILS. Nothing of this build wants that
    request: it must not be sent again in a new, paid job."""
    fake = fake_gemini_batch
    root = make_project(ONE_MODEL)
    first = build(root, "--no-wait")
    assert first["pending"] == 2 and len(fake.creates) == 1
    (root / "nbpipe.yaml").write_text(ONLY_A1)
    fake.end_at_poll = 1
    fake.faults.add("batch-job", "fail")
    second = build(root)
    assert second["code"] == 0
    # a1 is resent once (attempt 2); a2 was removed: no job should carry it
    harbour = [b for b in fake.billed if b.prompt == "a harbour at dawn"]
    assert not harbour, "a removed frame's request was sent again in a new, paid job"


def test_orphan_resend_respects_the_budget(make_project, build, fake_gemini_batch):
    """Same, under --max-cost: the build must never spend past its cap."""
    fake = fake_gemini_batch
    root = make_project(ONE_MODEL)
    build(root, "--no-wait")
    (root / "nbpipe.yaml").write_text(ONLY_A1)
    fake.end_at_poll = 1
    fake.faults.add("batch-job", "fail")
    second = build(root, "--max-cost", "0.04")
    harbour = [b for b in fake.billed if b.prompt == "a harbour at dawn"]
    assert not harbour, "a removed frame's request was paid again in a new job"
    assert usd(second["spent_usd"]) <= Decimal("0.04")


def test_another_project_same_request_is_not_reported_twice(make_project, build,
                                                            fake_gemini_batch, tmp_path):
    """Two projects (two caches) on one account, one identical request. The second build's
    look through the account's newest jobs re-attaches to the first project's job (same display
    name: it is made from key and take only, and every fresh cache starts at take 1). One image
    billed; each build reports it as its own spending."""
    fake = fake_gemini_batch
    fake.end_at_poll = 1
    root = make_project(ONLY_A1)
    first = build(root)
    other = tmp_path / "other"
    other.mkdir()
    (other / "nbpipe.yaml").write_text(ONLY_A1)
    second = build(other)
    assert usd(first["spent_usd"]) + usd(second["spent_usd"]) == billed(fake)


def test_force_on_a_fresh_cache_makes_a_new_image(make_project, build, fake_gemini_batch,
                                                  tmp_path):
    """Project A renders and --force renders (takes 1, 2). Project B (own cache) renders, then
    asks for a new take with --force: it is handed A's take-2 job, no new image is made."""
    fake = fake_gemini_batch
    fake.end_at_poll = 1
    root = make_project(ONLY_A1)
    build(root)
    build(root, "--force")
    other = tmp_path / "other"
    other.mkdir()
    (other / "nbpipe.yaml").write_text(ONLY_A1)
    build(other)
    before = len(fake.billed)
    forced = build(other, "--force")
    assert forced["rendered"] == 1 and len(fake.billed) == before + 1, \
        "--force made no new image: an old job re-attached"


FIVE_B = """version: 1
defaults: {backend: gemini, model: gemini-3.1-flash-image, lane: batch}
targets:
""" + "".join(f"  f{i}: {{prompt: picture number {i}}}\n" for i in range(5))


def test_a_results_file_gone_fails_its_frames_as_possibly_billed_then_sent_again(
        make_project, build, fake_gemini_batch):
    """A SUCCEEDED job whose responses file can no longer be downloaded (deleted through the
    Files API, or purged): _download's FrameFailed(retry_later) is taken by _follow as 'stays
    journalled for a later build', so every build polls, fails the download, exits 0 pending."""
    fake = fake_gemini_batch
    root = make_project(FIVE_B)
    assert build(root, "--no-wait")["pending"] == 5
    fake.finish_all()
    with fake.lock:
        for fid, stored in list(fake.files.files.items()):
            if stored.source == "GENERATED":
                del fake.files.files[fid]
    fake.end_at_poll = 1
    first = build(root)
    assert (first["failed"], first["pending"], first["maybe_billed"]) == (5, 0, 5), first["out"]
    again = build(root)  # sent again, once, in a new job
    assert (again["rendered"], again["pending"], len(fake.creates)) == (5, 0, 2)


def test_build_of_one_frame_does_not_send_another_again(make_project, build, fake_gemini_batch):
    """Both requests in one job; `build a1` (a selection): a1 resumes the job; a2, outside
    the selection, is collected by the after-walk pass and, its job having expired, sent again
    in a job of its own (no budget reservation, not selected)."""
    fake = fake_gemini_batch
    root = make_project(ONE_MODEL)
    build(root, "--no-wait")
    fake.end_at_poll = 1
    fake.faults.add("batch-job", "expire", "expire", "expire", "expire")
    build(root, "a1")
    assert len(fake.creates) <= 2, f"{len(fake.creates)} jobs: a2 (not selected) sent again"


def test_fail_fast_sends_no_second_job_after_the_first_is_refused(make_project, build,
                                                                  fake_gemini_batch):
    """Two models, two creates in one round. The first is refused (bad key): its frames fail,
    the stop is set while the second group's look through the recent jobs is out, and the
    second create still goes: _send checks the stop only once per round."""
    from tests.engine.test_batch_lane import TWO_MODELS
    fake = fake_gemini_batch
    fake.end_at_poll = 1
    fake.faults.add("batch-create", "badkey")
    root = make_project(TWO_MODELS)
    build(root, "--fail-fast")
    assert len(fake.creates) == 0, f"job created after the stop: {fake.creates}"


def test_adopt_does_not_close_an_entry_whose_job_is_not_listed_yet(make_project, build,
                                                                   fake_gemini_batch):
    """kill -9 between the create and its reply; the frame is then edited. The next build's
    adopt() looks the job up by display name; the listing lags (stood in for here by hiding
    the job from the list for that one build): adopt closes the entry 'never created' for good.
    The job runs and bills; no build ever collects or reports it."""
    fake = fake_gemini_batch
    root = make_project(ONLY_A1)
    kill_at_the_create(fake, root)
    job = fake.jobs[fake.creates[0].split("/")[1]]
    (root / "nbpipe.yaml").write_text(ONLY_A1.replace("lighthouse", "harbour"))
    fake.end_at_poll = 1
    job.deleted = True  # not listed yet
    total = usd(build(root)["spent_usd"])
    job.deleted = False  # listed now
    fake.finish_all()
    for _ in range(2):
        total += usd(build(root)["spent_usd"])
    assert total == billed(fake), f"reported {total} != billed {billed(fake)}"


def test_a_results_file_line_without_its_key_is_paid_once(make_project, build,
                                                          fake_gemini_batch, monkeypatch):
    """The no-metadata case, on a results file (5 requests: a file job): a line whose key is
    missing is dropped by _file_line (key None), never reaches _unkeyed; its frame fails 'answered
    no line' unbilled, the entry closes, the next build pays again; the first image is never
    reported."""
    import tests.fakes.batch_jobs as jobs
    real = jobs._answer
    dropped = []

    def answer(fake, job, line, fault):
        body, ok = real(fake, job, line, fault)
        if job.source == "file" and not dropped and "response" in body:
            dropped.append(body.pop("key"))
        return body, ok
    monkeypatch.setattr(jobs, "_answer", answer)
    fake = fake_gemini_batch
    fake.end_at_poll = 1
    root = make_project(FIVE)
    first = build(root)
    monkeypatch.setattr(jobs, "_answer", real)
    second = build(root)
    assert usd(first["spent_usd"]) + usd(second["spent_usd"]) == billed(fake)


def kill_at_the_create(fake, root) -> None:
    """`nbpipe build` killed -9 once its first job exists at the fake, its reply held."""
    fake.holds.hold("batch-created")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-m", "nbpipe", "-C", str(root), "build"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: len(fake.creates) >= 1)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        fake.holds.release("batch-created")

