"""Requests a killed build queued, met by a build whose FAL_BASE_URL is spelled differently
(localhost vs 127.0.0.1, a proxy in front of fal; review of #25, M2): the journalled URLs are
off its origin, so the key is not sent there, but the paid requests stay open (never marked
failed and submitted again), the build says which base URL collects them, and a build pointed
there does, with 0 new submits for them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal

from tests.backends.test_fal_kill import fal_env, killed, project, start, wait_for  # noqa: F401


def rebuild(root, env) -> dict:
    done = subprocess.run([sys.executable, "-m", "nbpipe", "-C", str(root), "build", "--json"],
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=120)
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    return {**lines[-1], "notes": [e.get("message", "") + e.get("detail", "") for e in lines
                                   if e["event"] in ("note", "frame", "render")]}


def said(summary: dict) -> Decimal:
    return Decimal(str(summary["spent_usd"])) + Decimal(str(summary.get("spent_earlier_usd", 0)))


def test_paid_requests_stay_open_for_their_base_url_when_it_is_spelled_differently(
        fal_env, tmp_path):
    fake, env = fal_env
    fake.holds.hold("queue")
    root = project(tmp_path)
    proc = start(root, env)
    try:
        wait_for(lambda: len(fake.requests) == 4 and
                 all(q.polls for q in list(fake.requests.values())))
    finally:
        killed(proc)
    fake.holds.release()
    moved = {**env, "FAL_BASE_URL": fake.url.replace("127.0.0.1", "localhost")}
    fake.answer_base = moved["FAL_BASE_URL"]  # new submits answer on the new spelling
    elsewhere = rebuild(root, moved)
    assert fake.counts["submits"] == 4, "paid requests submitted again"
    # still out, and fal bills no request it fails: due, counted by the build collecting them
    assert (said(elsewhere), elsewhere["due_usd"]) == (0, float(fake.spent()))
    assert any(f"whose FAL_BASE_URL is {fake.url}" in note for note in elsewhere["notes"])
    fake.answer_base = ""
    home = rebuild(root, env)
    assert home["rendered"] == 5 and fake.counts["submits"] == 5  # the edit, once
    assert Decimal(str(home["spent_earlier_usd"])) == Decimal("0.100")  # the four collected
    assert said(elsewhere) + said(home) == fake.spent()


def test_a_handle_is_journalled_as_json_and_an_older_one_still_reads():
    from nbpipe.backends.fal import Queued

    base = "http://127.0.0.1:9"
    queued = Queued("r-1", f"{base}/a/b/requests/r-1/status?x=a b", f"{base}/a/b/requests/r-1")
    assert Queued.of(queued.handle(), base) == queued  # a space in a URL survives
    older = f"r-1 {base}/a/b/requests/r-1/status {base}/a/b/requests/r-1"
    assert Queued.of(older, base).status_url == f"{base}/a/b/requests/r-1/status"
