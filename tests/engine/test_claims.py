"""Two runners building the same frames at the same moment (two clones, two caches, one moto
remote) send each request once: one runner claims a frame key on the remote before paying, the
other waits for its take and restores it (engine/claiming.py). A runner killed with requests out
has its claims taken over once their lease lapses, and the other runner completes.

Deterministic: the fakes hold every request until all 20 are out, so both runners have met every
claim before any take lands; the lease only bounds how long a dead runner's claims stand."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.engine.test_shards import team  # noqa: F401  (the fixture)

SCENES = [f"{colour} {thing}" for colour in ("red", "blue", "green", "amber")
          for thing in ("kite", "boat", "lamp", "door", "fern")]  # 20 frames


def manifest(backend: str) -> str:
    model = {"hiapi": "Nano-Banana", "gemini": "gemini-3.1-flash-image"}[backend]
    output = "out/{frame}.{ext}"
    return ("version: 1\nname: claims\n"
            f"defaults: {{backend: {backend}, model: {model}, output: \"{output}\"}}\n"
            "targets:\n"
            f"  scene: {{prompt: \"a {{{{ s }}}}\", matrix: {{s: {json.dumps(SCENES)}}}}}\n")


def clone(tmp_path: Path, name: str, backend: str) -> Path:
    """A runner's checkout: the manifest, no lock, its own empty cache."""
    root = tmp_path / name
    root.mkdir()
    (root / "nbpipe.yaml").write_text(manifest(backend))
    return root


def start(root: Path, lease: float) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "NBPIPE_CLAIM_LEASE": str(lease),
           "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "nbpipe", "-C", str(root), "build", "--json",
                             "-j", "20"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=300)
    assert "Traceback" not in err + out, err[-3000:]
    assert proc.returncode == 0, err[-3000:]
    events = [json.loads(line) for line in out.splitlines()]
    frames = {e["frame"]: e for e in events[:-1] if e.get("event") == "frame"}
    return {**events[-1], "frames": frames, "err": err}


def pins(root: Path) -> dict[str, tuple[str, str]]:
    doc = json.loads((root / "nbpipe.lock").read_text())["frames"]
    return {name: (entry["key"], entry["digest"]) for name, entry in doc.items()}


def split(first: dict, second: dict) -> None:
    """Each frame rendered by exactly one runner and restored by the other, free."""
    mine = {n for n, e in first["frames"].items() if e["status"] == "rendered"}
    theirs = {n for n, e in second["frames"].items() if e["status"] == "rendered"}
    assert len(first["frames"]) == len(second["frames"]) == 20
    assert mine.isdisjoint(theirs) and len(mine | theirs) == 20
    for result, rendered in ((first, mine), (second, theirs)):
        restored = {n for n, e in result["frames"].items() if e["status"] == "restored"}
        assert restored == set(result["frames"]) - rendered
        assert all("made by another runner" in result["frames"][n]["detail"] for n in restored)
        assert (result["rendered"], result["restored"]) == (len(rendered), len(restored))
        assert "claims are off" not in result["err"]


@pytest.mark.parametrize("backend, point", [("hiapi", "POST /v1/tasks"), ("gemini", "reply")])
def test_two_runners_building_the_same_frames_together_pay_for_each_once(
        backend, point, team, request, tmp_path):
    fake = request.getfixturevalue(f"fake_{backend}")
    fake.holds.hold(point)  # no reply until all 20 are out: both runners meet every claim
    first, second = (start(clone(tmp_path, name, backend), lease=30) for name in ("a", "b"))
    try:
        fake.holds.wait_held(point, 20, unless=lambda: first.poll() is not None
                             or second.poll() is not None)
        assert fake.holds.waiting(point) == 20  # 20 frames, 20 requests: none twice
    finally:
        fake.holds.release()
    a, b = finish(first), finish(second)
    split(a, b)
    if backend == "hiapi":  # one create per frame: not even a replay of the same key
        assert (fake.counts["creates"], fake.counts.get("replays", 0)) == (20, 0)
    else:  # a second call is a second bill: there is none
        assert fake.counts["generates"] == 20
    assert pins(tmp_path / "a") == pins(tmp_path / "b")  # the very same takes
    assert len(team.blobs()) == 20 and team.objects("claims") == []



@pytest.mark.parametrize("backend, point", [("hiapi", "POST /v1/tasks"), ("gemini", "reply")])
def test_a_killed_runners_claims_are_taken_over_within_the_lease(
        backend, point, team, request, tmp_path):
    fake = request.getfixturevalue(f"fake_{backend}")
    fake.holds.hold(point)
    dead = start(clone(tmp_path, "dead", backend), lease=2)
    try:
        fake.holds.wait_held(point, 20, unless=lambda: dead.poll() is not None)
        assert len(team.objects("claims")) == 20  # it claimed every frame, requests out
        dead.send_signal(signal.SIGKILL)
        dead.communicate(timeout=60)
    finally:
        fake.holds.release()  # its requests go on at the provider: nobody hears the replies
    fake.wait_idle()
    assert len(team.objects("claims")) == 20  # nobody released them: they lapse
    survivor = finish(start(clone(tmp_path, "survivor", backend), lease=2))
    assert survivor["rendered"] == 20 and survivor["failed"] == 0  # it completes
    assert team.objects("claims") == []  # taken over, then released as each take landed
    assert len(team.blobs()) == 20
    if backend == "hiapi":  # the same Idempotency-Key: the survivor's creates find the tasks
        assert (fake.counts["creates"], fake.counts["replays"]) == (20, 20)
    else:  # the documented worst case: each call the dead runner had out is paid twice
        assert fake.counts["generates"] == 40


def test_force_renders_anew_past_a_take_the_remote_had(team, fake_hiapi, build, tmp_path):
    """A claim waits for another runner's new take, never for one the plan already weighed:
    --force pays for a new take even though the remote holds one (and claims it first)."""
    first = build(clone(tmp_path, "a", "hiapi"))
    assert first["rendered"] == 20
    again = build(clone(tmp_path, "b", "hiapi"), "--force", "scene/red-kite")
    assert again["rendered"] == 1 and again["restored"] == 0, again["err"]
    assert fake_hiapi.counts["creates"] == 21
    assert team.objects("claims") == []
