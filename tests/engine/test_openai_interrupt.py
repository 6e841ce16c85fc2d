"""OpenAI calls in real processes: kill -9 with requests sent and unanswered (announced by the
next build, counted as possibly billed, then sent once more), and Ctrl-C, which waits for them.
The fake holds the billed replies until the test releases them: no clock involved."""

from __future__ import annotations

import signal
from decimal import Decimal

import pytest

from tests.conftest import read_until
from tests.engine.test_interrupt import project, rebuild, start, wait_for
from tests.samples import journal

MODEL = "gpt-image-1-mini"  # medium at 1024x1024 by default: USD 0.011 each, 0.044 for four


@pytest.fixture
def openai_sent(tmp_path):
    """Four OpenAI requests sent, billed, their replies held: fake, env, root, process."""
    from tests.fakes.openai import FakeOpenAI

    with FakeOpenAI() as fake:
        fake.holds.hold("reply")
        env = {"OPENAI_API_KEY": fake.key, "OPENAI_BASE_URL": fake.base}
        root = project(tmp_path, "openai", MODEL)
        proc = start(root, env)
        try:
            wait_for(lambda: fake.counts.get("billed", 0) == 4)
            yield fake, env, root, proc
        finally:
            if proc.poll() is None:  # a failed test leaves no build running
                proc.kill()
                proc.communicate()


def test_after_kill_9_openai_requests_in_flight_are_announced_counted_and_sent_once_more(
        openai_sent):
    fake, env, root, proc = openai_sent
    proc.kill()
    proc.communicate(timeout=30)
    fake.holds.release()
    summary = rebuild(root, env)
    assert any(n.startswith("4 OpenAI request(s) were in flight when an earlier build stopped")
               and "may have been billed (USD 0.044)" in n for n in summary["notes"])
    assert (summary["maybe_billed"], summary["maybe_billed_usd"]) == (4, 0.044)
    assert summary["rendered"] == 4 and len(fake.billed) == 8
    reported = Decimal(str(summary.get("spent_usd", 0))) + \
        Decimal(str(summary.get("spent_earlier_usd", 0)))
    assert reported == sum((b.usd for b in fake.billed), Decimal(0))  # Σ reported = Σ billed
    assert journal(root).open == {}
    again = rebuild(root, env)  # said once, never again
    assert again["notes"] == [] or not any("in flight" in n for n in again["notes"])
    assert again.get("fresh") == 4 and len(fake.billed) == 8


def test_ctrl_c_waits_for_openai_requests_in_flight(openai_sent):
    fake, env, root, proc = openai_sent
    proc.send_signal(signal.SIGINT)
    heard = read_until(proc.stdout, "already sent")
    assert "waiting for 4 OpenAI request(s) (USD 0.044) already sent" in heard
    fake.holds.release()  # the replies come only now: the build waited for them
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    summary = rebuild(root, env)
    assert (summary["rendered"], len(fake.billed)) == (0, 4)  # 0 re-sent
