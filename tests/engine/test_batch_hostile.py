"""The batch lane against what an independent hostile review tried (issue #24): each test is a
way a build once paid twice, lost a paid image, hung, or reported the wrong money, and must
not. Each test's docstring tells the failure as the review found it (before the fix)."""
from __future__ import annotations

import json
from decimal import Decimal

from tests.engine.test_batch_lane import billed, usd

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
    import os
    import signal
    import subprocess
    import sys

    from tests.conftest import wait_for
    fake = fake_gemini_batch
    root = make_project(ONE.replace("PROMPT", "a lighthouse"))
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
