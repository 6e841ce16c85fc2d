"""`build --shard K/N` across runners (README "Sharding a build across runners", docs/ci.md):
each shard renders its share and pushes it to the team's remote, the shares are disjoint and
cover the project, and a final plain build restores everything with no render and writes the
whole lock."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nbpipe.launch import probe
from tests.conftest import REPO
from tests.engine.test_prloop import clone, git, identity, needs_git, origin  # noqa: F401

COLOURS = ["red", "blue", "green", "yellow", "black", "white", "teal", "pink"]
PLACES = ["harbour", "forest", "desert", "city", "cave", "glacier", "market", "bridge",
          "meadow", "tower"]
# 30 frames: 8 shoes, an edit of each (8), an edit of 4 of those (4), 10 lone scenes; the
# edit chains must stay on one runner: an edit is keyed on its upstream's image bytes
MANIFEST = f"""\
version: 1
name: shards
defaults:
  {{backend: hiapi, model: Nano-Banana, aspect_ratio: "1:1", output: "out/{{frame}}.{{ext}}"}}
targets:
  shoe: {{prompt: "a {{{{ colour }}}} running shoe", matrix: {{colour: {COLOURS}}}}}
  trail:
    inputs: ["shoe/{{{{ colour }}}}"]
    prompt: "Put this {{{{ colour }}}} shoe on a forest trail."
    model: Nano-Banana-2
    matrix: {{colour: {COLOURS}}}
  night:
    inputs: ["trail/{{{{ colour }}}}"]
    prompt: "The same trail at night."
    model: Nano-Banana-2
    matrix: {{colour: {COLOURS[:4]}}}
  scene: {{prompt: "a quiet {{{{ place }}}} at dawn", matrix: {{place: {PLACES}}}}}
"""
PREVIEW = MANIFEST.replace("backend: hiapi", "backend: preview")


@pytest.fixture
def team(monkeypatch):
    """The team's shared remote: moto's S3 server on loopback, nbpipe pointed at it."""
    from tests.fakes.team_remote import TeamRemote

    remote = TeamRemote()
    for name, value in remote.env().items():
        monkeypatch.setenv(name, value)
    yield remote
    remote.close()


def runner(tmp_path: Path, name: str, manifest: str = MANIFEST) -> Path:
    """A CI runner's checkout: the manifest, no lock, an empty local cache."""
    root = tmp_path / name
    root.mkdir()
    (root / "nbpipe.yaml").write_text(manifest)
    return root


def statuses(result: dict) -> dict[str, str]:
    return {e["frame"]: e["status"] for e in result["events"] if e.get("event") == "frame"}


def locked(root: Path) -> dict[str, dict]:
    return json.loads((root / "nbpipe.lock").read_text())["frames"]


def test_three_shards_render_disjoint_shares_and_a_plain_build_restores_them_all(
        team, fake_hiapi, build, tmp_path):
    every = {f"shoe/{c}" for c in COLOURS} | {f"trail/{c}" for c in COLOURS} | \
        {f"night/{c}" for c in COLOURS[:4]} | {f"scene/{p}" for p in PLACES}
    assert len(every) == 30
    shares: list[set[str]] = []
    for k in (1, 2, 3):
        before = fake_hiapi.counts["creates"]
        root = runner(tmp_path, f"shard-{k}")
        result = build(root, "--shard", f"{k}/3")
        assert result["code"] == 0, result["err"]
        seen = statuses(result)
        mine = {name for name, status in seen.items() if status == "rendered"}
        assert set(seen) == mine  # a runner only renders: nothing of its share was anywhere
        assert fake_hiapi.counts["creates"] - before == len(mine)  # counted at the API
        assert result["other_shards"] == 30 - len(mine)
        assert result["failed"] == result["skipped"] == 0
        # an edit chain is whole: each edit's input was rendered on the same runner
        for name in mine - {n for n in every if n.startswith(("shoe/", "scene/"))}:
            target, _, colour = name.partition("/")
            assert ("shoe" if target == "trail" else "trail") + f"/{colour}" in mine
        # this runner's lock pins its own share only (nobody commits it: see docs/ci.md)
        assert set(locked(root)) == mine
        shares.append(mine)
    assert sum(len(s) for s in shares) == 30 and set().union(*shares) == every  # disjoint, all
    assert all(shares), [len(s) for s in shares]  # each runner had work
    assert fake_hiapi.counts["creates"] == 30
    assert len(team.blobs()) == 30  # every shard pushed what it rendered

    final = runner(tmp_path, "restore")
    result = build(final)
    assert result["code"] == 0, result["err"]
    assert (result["restored"], result["rendered"]) == (30, 0)
    assert "other_shards" not in result
    assert fake_hiapi.counts["creates"] == 30  # 0 creates: every image came from the remote
    pins = locked(final)
    assert set(pins) == every
    for k, mine in enumerate(shares, 1):  # the very takes each shard paid for
        shard_lock = locked(tmp_path / f"shard-{k}")
        assert {n: (pins[n]["key"], pins[n]["digest"]) for n in mine} == \
            {n: (e["key"], e["digest"]) for n, e in shard_lock.items()}


def test_a_restore_at_a_cap_of_0_pays_for_nothing_a_shard_did_not_push(
        team, fake_hiapi, build, tmp_path):
    """docs/ci.md's restore job runs at NBPIPE_MAX_COST 0: a share missing from the remote
    (its job never ran) is skipped and the job is red, never rendered there."""
    pushed = set()
    for k in (1, 2):
        result = build(runner(tmp_path, f"shard-{k}"), "--shard", f"{k}/3")
        assert result["code"] == 0, result["err"]
        pushed |= set(statuses(result))
    creates = fake_hiapi.counts["creates"]
    result = build(runner(tmp_path, "restore"), "--max-cost", "0")
    assert result["code"] == 1
    assert fake_hiapi.counts["creates"] == creates  # nothing sent
    seen = statuses(result)
    assert {n for n, status in seen.items() if status == "restored"} == pushed
    assert seen.keys() - pushed and all(seen[n] == "skipped" for n in seen.keys() - pushed)
    assert result["rendered"] == 0 and result["spent_usd"] == 0


def test_shards_in_one_checkout_take_turns_and_add_up_to_the_whole_lock(build, run, tmp_path):
    root = runner(tmp_path, "one", PREVIEW)
    first = build(root, "--shard", "1/2")
    mine = set(statuses(first))
    assert first["rendered"] == len(mine) and first["other_shards"] == 30 - len(mine)
    assert set(locked(root)) == mine
    # --check under --shard checks that shard's frames only
    assert run("-C", str(root), "build", "--check", "--shard", "1/2").code == 0
    said = run("-C", str(root), "build", "--check", "--shard", "2/2")
    assert said.code == 1
    assert f"{30 - len(mine)} of {30 - len(mine)} frames of shard 2/2 ({len(mine)} in other " \
        "shards, not checked here) not fresh" in said.out
    assert run("-C", str(root), "build", "--check").code == 1
    again = run("-C", str(root), "build", "--shard", "1/2")
    assert again.out.strip().splitlines()[-1] == \
        f"nothing to do: {len(mine)} frames fresh · {30 - len(mine)} frames in other shards"
    second = build(root, "--shard", "2/2")
    theirs = set(statuses(second))
    assert theirs.isdisjoint(mine) and second["rendered"] == len(theirs) == 30 - len(mine)
    assert len(locked(root)) == 30
    assert run("-C", str(root), "build", "--check").code == 0
    assert run("-C", str(root), "build").out == "nothing to do: 30 frames fresh\n"


def test_plan_shows_a_share_and_nbpipe_shard_is_the_default(run, tmp_path, monkeypatch):
    root = runner(tmp_path, "plan", PREVIEW)
    sizes = []
    for k in (1, 2, 3):
        doc = json.loads(run("-C", str(root), "plan", "--json", "--shard", f"{k}/3").out)
        assert doc["summary"]["shard"] == f"{k}/3"
        assert doc["summary"]["other_shards"] == 30 - len(doc["frames"])
        sizes.append(len(doc["frames"]))
        monkeypatch.setenv("NBPIPE_SHARD", f"{k}/3")
        assert json.loads(run("-C", str(root), "plan", "--json").out) == doc
        monkeypatch.delenv("NBPIPE_SHARD")
    assert sum(sizes) == 30
    text = run("-C", str(root), "plan", "--shard", "1/3").out
    assert f"· {30 - sizes[0]} in other shards (this is shard 1/3)" in text
    assert "shard" not in json.loads(run("-C", str(root), "plan", "--json").out)["summary"]


@pytest.mark.parametrize("value", ["0/3", "4/3", "3", "1/0", "x/y"])
def test_a_bad_shard_is_a_usage_error(value, run, tmp_path):
    root = runner(tmp_path, "bad", PREVIEW)
    for command in ("build", "plan"):
        result = run("-C", str(root), command, "--shard", value)
        assert result.code == 2
        assert f"must be K/N, whole numbers with 1 <= K <= N (like 2/3), not '{value}'" in \
            result.err
        assert "Traceback" not in result.err
    assert not (root / "nbpipe.lock").exists()


def test_nbpipe_shard_keeps_a_plain_build_off_the_fast_path(run, tmp_path, monkeypatch):
    root = runner(tmp_path, "fast", PREVIEW)
    assert run("-C", str(root), "build").code == 0
    assert probe(["-C", str(root), "build"]).summary == "nothing to do: 30 frames fresh"
    monkeypatch.setenv("NBPIPE_SHARD", "2/3")
    assert probe(["-C", str(root), "build"]).summary is None  # a share is planned, and said
    said = run("-C", str(root), "build").out.strip()
    assert said.startswith("nothing to do: ") and said.endswith(" frames in other shards")


def sharded_workflow() -> dict:
    """The matrix workflow docs/ci.md gives, as GitHub would read it."""
    from ruamel.yaml import YAML

    text = (REPO / "docs" / "ci.md").read_text("utf-8")
    section = text[text.index("## Sharding a big build across runners"):]
    block = section[section.index("```yaml\n") + 8:]
    return YAML(typ="safe").load(block[:block.index("```")])


def test_the_sharded_workflow_runs_n_shards_then_one_restore_that_commits():
    workflow = sharded_workflow()
    shard, restore = workflow["jobs"]["shard"], workflow["jobs"]["restore"]
    assert shard["strategy"]["matrix"]["shard"] == [1, 2, 3, 4]
    assert shard["strategy"]["fail-fast"] is False
    assert restore["needs"] == "shard" and restore["permissions"] == {"contents": "write"}
    assert workflow["concurrency"] == {"group": "nbpipe-main", "cancel-in-progress": False}
    step = next(s for s in shard["steps"] if "nbpipe build" in s.get("run", ""))
    assert step["env"]["NBPIPE_SHARD"] == "${{ matrix.shard }}/${{ strategy.job-total }}"
    last = restore["steps"][-1]
    assert (last["run"], last["env"]["NBPIPE_MAX_COST"]) == ("bash .github/nbpipe-ci.sh main", "0")


@needs_git
def test_the_sharded_workflow_pays_each_frame_once_and_commits_the_whole_lock(
        team, fake_hiapi, origin, tmp_path):
    """docs/ci.md's matrix, its steps' own scripts run here: three shard jobs, each in a fresh
    clone, then the restore job (nbpipe-ci.sh main) in another; a bare repository as GitHub."""
    dev = tmp_path / "dev"
    subprocess.run(["git", "clone", "-q", str(origin), str(dev)], check=True, capture_output=True)
    git(dev, "symbolic-ref", "HEAD", "refs/heads/main")
    (dev / "nbpipe.yaml").write_text(MANIFEST)
    (dev / ".gitignore").write_text(".nbpipe/\n")
    git(dev, "add", ".")
    git(dev, "commit", "-q", "-m", "catalogue")
    git(dev, "push", "-q", "origin", "main")
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "nbpipe").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m nbpipe "$@"\n')
    (shim / "nbpipe").chmod(0o755)
    path = f"{shim}{os.pathsep}{os.environ['PATH']}"

    workflow = sharded_workflow()
    step = next(s for s in workflow["jobs"]["shard"]["steps"]
                if "nbpipe build" in s.get("run", ""))
    total = 3
    for k in range(1, total + 1):
        job = clone(origin, tmp_path / f"shard-{k}")
        env = {**os.environ, "PATH": path, "NBPIPE_SHARD": f"{k}/{total}",
               "NBPIPE_MAX_COST": "1"}
        done = subprocess.run(["bash", "-e", "-c", step["run"]], cwd=job, env=env,
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert "frames in other shards" in done.stdout
        assert git(job, "status", "--porcelain") != ""  # its lock changed: never committed
    assert fake_hiapi.counts["creates"] == 30

    restore = workflow["jobs"]["restore"]["steps"][-1]
    job = clone(origin, tmp_path / "restore")
    env = {**os.environ, "NBPIPE": f"{sys.executable} -m nbpipe",
           **{k: v for k, v in restore["env"].items() if "${{" not in v}}  # secrets: the fakes'
    done = subprocess.run(["bash", str(REPO / "docs" / "nbpipe-ci.sh"), "main"], cwd=job,
                          env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "30 restored" in done.stdout and "0 rendered" in done.stdout
    assert fake_hiapi.counts["creates"] == 30  # the restore job paid for nothing
    git(dev, "pull", "-q")
    assert len(locked(dev)) == 30
    assert git(dev, "log", "-1", "--format=%s").strip() == "nbpipe build [skip ci]"
    for k in range(1, total + 1):  # each frame pinned to the take its shard rendered
        mine = locked(tmp_path / f"shard-{k}")
        assert {n: locked(dev)[n]["digest"] for n in mine} == \
            {n: e["digest"] for n, e in mine.items()}
