"""The money state machine with a shared remote and a second clone
(tests/run/money_remote_model.py) in CI: a fixed seed, a bounded run."""

from __future__ import annotations

from hypothesis import HealthCheck, settings

from tests.run.money_remote_model import RemoteMoneyMachine

RemoteMoneyMachine.TestCase.settings = settings(
    max_examples=10, stateful_step_count=10, deadline=None, derandomize=True, database=None,
    suppress_health_check=list(HealthCheck))
test_money_remote_invariants = RemoteMoneyMachine.TestCase
