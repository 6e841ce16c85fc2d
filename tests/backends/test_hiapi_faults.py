"""HiAPI faults whose wrong handling costs money or never ends: a task HiAPI does not know
(404), a 404 from something that is not HiAPI, a server that keeps asking to retry later, an
`expireAt` in the wrong unit."""

from __future__ import annotations

import json
import time

import pytest

from tests.fakes.server import Elsewhere
from tests.samples import ONE, failures, journal, notes

NOW = 1_790_000_000.0  # a fixed "now" for unit tests of time arithmetic


def open_tasks(root) -> list[str]:
    """The task ids the journal still holds open (each would be polled by the next build)."""
    return [e.task_id for e in journal(root).open.values() if e.task_id]


def test_a_task_hiapi_forgot_is_closed_as_lost_and_rendered_anew_once(fake_hiapi, build,
                                                                      make_project):
    root = make_project(ONE)
    fake_hiapi.faults.add("task", "vanish")  # every poll of it answers 404 NOT_FOUND
    summary = build(root)
    (task_id,) = fake_hiapi.tasks
    message = (f"HiAPI no longer knows task {task_id} (HTTP 404 NOT_FOUND: task not found): it "
               "was created with another account's key, or HiAPI dropped it; if it had "
               "succeeded, its image is lost")
    assert failures(summary) == {"a": message}
    assert (summary["lost"], fake_hiapi.counts["polls"]) == (1, 2)  # asked twice, then closed
    assert notes(summary) == [f"lost      a: {message}; the next render is a new task"]
    assert open_tasks(root) == []
    again = build(root)
    assert (again["rendered"], again["failed"], fake_hiapi.counts["creates"]) == (1, 0, 2)
    requests = fake_hiapi.counts["requests"]
    assert build(root)["fresh"] == 1
    assert fake_hiapi.counts["requests"] == requests  # the forgotten task is never polled again


def test_a_task_of_another_account_is_left_for_its_key_and_never_paid_twice(
        fake_hiapi, build, make_project, monkeypatch):
    """Another key (a cache shared by projects with different accounts) cannot see the task:
    the task is not closed as lost (its own key still collects it), and the frame is rendered
    once under the new account, not on every build."""
    root = make_project(ONE)
    monkeypatch.setenv("NBPIPE_HIAPI_TIMEOUT", "0.5")
    fake_hiapi.faults.add("task", "stuck")
    assert build(root)["left"] == 1  # timed out: its task is left for the next build
    (task_id,) = open_tasks(root)
    fake_hiapi.tasks[task_id].outcome = "success"
    first_key = fake_hiapi.key
    fake_hiapi.add_account("sk-fake-other-account")
    monkeypatch.setenv("HIAPI_API_KEY", "sk-fake-other-account")
    summary = build(root)
    assert notes(summary)[0] == (
        f"task {task_id} of an earlier build of a was sent with another API key and is not "
        "this account's: left for a build with that key to collect")
    assert (summary["rendered"], summary["failed"], summary.get("lost", 0)) == (1, 0, 0)
    assert fake_hiapi.counts["creates"] == 2 and open_tasks(root) == [task_id]
    assert build(root)["fresh"] == 1 and fake_hiapi.counts["creates"] == 2
    monkeypatch.setenv("HIAPI_API_KEY", first_key)  # the key that paid for it
    again = build(root)
    assert notes(again)[0] == (f"recovered a: the image of task {task_id}, paid for by an "
                               "earlier build, is in the cache")
    assert fake_hiapi.counts["creates"] == 2 and open_tasks(root) == []


def test_with_no_key_a_lost_create_waits_for_the_key_and_is_not_called_another_key_s(
        fake_hiapi, build, make_project, monkeypatch):
    """A create whose reply was lost stays open; a build with no HiAPI key (the project now
    renders on preview) does not resend it, and says so: not as "another API key's" (no
    account is known), but as a request this project no longer makes (issue #22 finding 1: a
    journalled create is resent only by a build whose frame makes that body now)."""
    root = make_project(ONE)
    fake_hiapi.faults.add("create", "drop", *["503"] * 12)  # created; reply lost; resends fail
    assert build(root)["failed"] == 1 and fake_hiapi.counts["creates"] == 1
    (entry,) = journal(root).open.values()
    assert entry.body is not None and entry.task_id is None
    (root / "nbpipe.yaml").write_text(ONE.replace("backend: hiapi", "backend: preview"))
    monkeypatch.delenv("HIAPI_API_KEY")
    summary = build(root)
    assert summary["rendered"] == 1 and fake_hiapi.counts["creates"] == 1
    assert notes(summary) == ["1 journal entry this project does not make (a): not resent; "
                              "left in the journal for the project that made them"]
    assert list(journal(root).open) == [(entry.key, entry.take)]  # for a build with the key


def test_a_404_that_hiapi_did_not_send_keeps_the_task_and_stops(fake_hiapi, build, make_project,
                                                                 monkeypatch):
    root = make_project(ONE)
    monkeypatch.setenv("NBPIPE_HIAPI_TIMEOUT", "0.5")
    fake_hiapi.faults.add("task", "stuck")
    build(root)
    (task_id,) = open_tasks(root)
    with Elsewhere() as proxy:  # answers 404 {"error": "nothing here"} to everything
        monkeypatch.setenv("HIAPI_BASE_URL", proxy.url)
        summary = build(root)
    message = (f"HiAPI endpoint not found at {proxy.url}/v1/tasks/{task_id} (HTTP 404, not an "
               "error reply of HiAPI's); check HIAPI_BASE_URL")
    assert (failures(summary), summary["code"]) == ({"a": message}, 1)
    assert open_tasks(root) == [task_id]  # kept: HiAPI never said it was gone
    monkeypatch.setenv("HIAPI_BASE_URL", fake_hiapi.url)
    fake_hiapi.tasks[task_id].outcome = "success"
    again = build(root)
    assert (again["rendered"], fake_hiapi.counts["creates"]) == (1, 1)  # resumed, not paid again


def test_a_create_answered_404_by_something_else_is_not_a_retired_model(fake_hiapi, build,
                                                                         make_project,
                                                                         monkeypatch):
    with Elsewhere() as proxy:
        monkeypatch.setenv("HIAPI_BASE_URL", proxy.url + "/api")
        summary = build(make_project(ONE))
    assert failures(summary) == {"a": f"HiAPI endpoint not found at {proxy.url}/api/v1/tasks "
                                      "(HTTP 404, not an error reply of HiAPI's); check "
                                      "HIAPI_BASE_URL"}
    assert summary["code"] == 1


def test_retries_stop_at_the_retry_deadline_and_honour_retry_after_below_it(
        fake_hiapi, build, make_project, monkeypatch):
    monkeypatch.setenv("NBPIPE_RETRY_DEADLINE", "3")
    fake_hiapi.faults.add("create", *["429:2"] * 5)
    summary = build(make_project(ONE))  # tries at 0 s and 2 s; at 2 s only 1 s is left
    assert failures(summary) == {"a": (
        "gave up after 2 attempts: HiAPI answered HTTP 429 RATE_LIMITED: too many requests; it "
        "asked to retry in 2 s, past the retry deadline (NBPIPE_RETRY_DEADLINE=3 s)")}
    monkeypatch.setenv("NBPIPE_RETRY_DEADLINE", "30")
    fake_hiapi.faults.clear("create")
    fake_hiapi.faults.add("poll", "429:2")
    started = time.monotonic()
    again = build(make_project(ONE))  # the create left in the journal, then a poll told to wait
    assert (again["rendered"], fake_hiapi.counts["creates"]) == (1, 1)
    assert time.monotonic() - started >= 2  # Retry-After honoured, below the deadline


@pytest.mark.parametrize("fault, lifetime", [
    (None, 7 * 86400),  # documented: Unix seconds, about 7 days ahead
    ("msexpiry", 7 * 86400),  # milliseconds, told by their size
    ("ttlexpiry", 6 * 86400),  # 604800: a lifetime, not a time; the documented one, a day short
])
def test_expire_at_is_read_as_seconds_and_an_implausible_one_sanely(fault, lifetime, fake_hiapi,
                                                                     build, make_project):
    from nbpipe.store.cache import Cache

    root = make_project(ONE)
    if fault:
        fake_hiapi.faults.add("task", fault)
    assert build(root)["rendered"] == 1
    digest = json.loads((root / "nbpipe.lock").read_text())["frames"]["a"]["digest"]
    cache = Cache(root / ".nbpipe", create=False)
    try:
        url, expires = cache.served_at(digest)  # what an edit of `a` would be sent, until when
    finally:
        cache.close()
    assert url.startswith(fake_hiapi.url + "/files/tk-hiapi-")
    assert abs(expires - (time.time() + lifetime)) < 120


@pytest.mark.parametrize("expire_at, read", [
    (1_800_000_000, 1_800_000_000), (1_800_000_000_000, 1_800_000_000),
    (1_800_000_000_500, 1_800_000_000.5), (1_700_000_000, 1_700_000_000),  # passed: expired
    (None, NOW + 6 * 86400), (0, NOW + 6 * 86400), (-5, NOW + 6 * 86400),
    (604_800, NOW + 6 * 86400), (1.8e15, NOW + 6 * 86400),  # microseconds
    (NOW + 400 * 86400, NOW + 6 * 86400)])
def test_expiry_units(expire_at, read):
    from nbpipe.backends.hiapi import expiry

    assert expiry(expire_at, NOW) == read
