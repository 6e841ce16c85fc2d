"""Review3 finding on docs/nbpipe-ci.sh's job budget (`said_spent`, `build_and_commit`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.engine.test_prloop import (  # noqa: F401 - fixtures
    DEV_MOVES_ONCE,
    MANIFEST,
    SCRIPT,
    git,
    identity,
    needs_git,
    origin,
)


@needs_git
def test_a_stale_state_restored_by_the_cache_never_raises_the_jobs_cap(origin, fake_hiapi,
                                                                       tmp_path):
    dev = tmp_path / "dev"
    subprocess.run(["git", "clone", "-q", str(origin), str(dev)], check=True,
                   capture_output=True)
    git(dev, "symbolic-ref", "HEAD", "refs/heads/main")
    (dev / "nbpipe.yaml").write_text(MANIFEST)  # six frames on HiAPI: USD 0.30
    (dev / ".gitignore").write_text(".nbpipe/\n")
    git(dev, "add", ".")
    git(dev, "commit", "-q", "-m", "storyboard")
    git(dev, "push", "-q", "origin", "main")
    job = tmp_path / "ci-main"
    subprocess.run(["git", "clone", "-q", "--depth", "1", origin.as_uri(), str(job)],
                   check=True, capture_output=True)
    (job / ".nbpipe").mkdir()  # restored by actions/cache: written by another nbpipe version
    (job / ".nbpipe" / "state.json").write_text(json.dumps(
        {"version": 2, "totals": {"spent_usd": "1.00", "saved_usd": "0"}}))
    hook = job / ".git" / "hooks" / "pre-push"  # the developer pushes as the job first pushes
    hook.write_text(DEV_MOVES_ONCE)
    hook.chmod(0o755)
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1", "PY": sys.executable,
           "NBPIPE": f"{sys.executable} -m nbpipe", "NBPIPE_MAX_COST": "0.3",
           "DEV": str(dev), "MOVED": str(tmp_path / "moved"),
           "GITHUB_STEP_SUMMARY": str(tmp_path / "main.md")}
    done = subprocess.run(["bash", str(SCRIPT), "main"], cwd=job, env=env, capture_output=True,
                          text=True)
    assert "building again on it" in done.stdout  # the replay conflicted (both added the lock)
    assert fake_hiapi.counts["creates"] * 0.05 <= 0.3 + 1e-9, done.stdout
