"""A create that never connected is not "a create whose reply was lost" (issue #23 item 13).

With no network (the base URL's port closed, a DNS failure), no byte of the create left: no task
can exist. The journal must not keep it for the next build to resend, wait on and call "of an
earlier build"; the failure says nothing was sent, and the next build creates the task once.
"""

from __future__ import annotations

import socket

from tests.samples import ONE, failures, journal, notes


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # closed when the with ends: connections are refused


def test_a_create_that_never_connected_leaves_nothing_to_resend(fake_hiapi, build, make_project,
                                                                monkeypatch):
    root = make_project(ONE)
    monkeypatch.setenv("HIAPI_BASE_URL", f"http://127.0.0.1:{closed_port()}")
    offline = build(root)
    said = " ".join([*failures(offline).values(), *notes(offline)])
    assert offline["failed"] == 1 and "nothing was sent" in said, offline["events"]
    assert "reply was lost" not in said and "earlier build" not in said, said
    assert journal(root).open == {}  # no create to resend: none was sent
    monkeypatch.setenv("HIAPI_BASE_URL", fake_hiapi.url)  # the network is back
    online = build(root)
    assert (online["rendered"], online["failed"]) == (1, 0), online["events"]
    assert notes(online) == [] and fake_hiapi.counts["creates"] == 1
    assert fake_hiapi.counts["replays"] == 0 and len(fake_hiapi.created_keys) == 1


def test_a_lost_create_resent_with_no_network_stays_open(fake_hiapi, build, make_project,
                                                         monkeypatch):
    """A create an earlier build sent (its reply lost) may exist: a resend that cannot connect
    proves nothing about it, so its entry stays open, and the build with the network back finds
    the original task under the same Idempotency-Key."""
    root = make_project(ONE)
    fake_hiapi.faults.add("create", "drop", *["503"] * 12)  # created; reply lost; resends fail
    assert build(root)["failed"] == 1 and fake_hiapi.counts["creates"] == 1
    (entry,) = journal(root).open.values()
    monkeypatch.setenv("HIAPI_BASE_URL", f"http://127.0.0.1:{closed_port()}")
    assert build(root)["failed"] == 1
    assert list(journal(root).open) == [(entry.key, entry.take)]
    monkeypatch.setenv("HIAPI_BASE_URL", fake_hiapi.url)
    fake_hiapi.faults.clear("create")
    assert build(root)["rendered"] == 1 and fake_hiapi.counts["creates"] == 1
