"""The money state machine (tests/run/money_model.py) in CI: a fixed seed, a bounded run."""

from __future__ import annotations

from hypothesis import HealthCheck, settings

from tests.run.money_model import MoneyMachine

MoneyMachine.TestCase.settings = settings(
    max_examples=8, stateful_step_count=10, deadline=None, derandomize=True, database=None,
    suppress_health_check=list(HealthCheck))
test_money_invariants = MoneyMachine.TestCase
