"""The batch lane's money model (tests/engine/money_batch_model.py) in CI: a bounded run at a
fixed seed, and fixed walks through what each rule is there to catch (benchmarks/money_soak.py
--machine batch runs fresh seeds)."""

from __future__ import annotations

import pytest

from tests.engine.money_batch_model import BatchMoneyMachine
from tests.engine.money_model import ci_settings, walk

pytestmark = pytest.mark.slow  # real processes

BatchMoneyMachine.TestCase.settings = ci_settings(examples=3, steps=10)
test_batch_money_invariants = BatchMoneyMachine.TestCase

WALKS = {
    "no-wait, a kill at the create, expiry, then settle": [
        lambda m: m.build_no_wait(),
        lambda m: m.edit_prompt(name="a", words="a tin robot"),
        lambda m: m.kill_9(at_create=True),
        lambda m: m.two_days_pass(),
        lambda m: m.build(polls=1),
        lambda m: m.settle(),
    ],
    "a lost create, a kill while waiting, a line error, a cancel": [
        lambda m: m.inject(fault="lost create"),
        lambda m: m.kill_9(at_create=False),
        lambda m: m.inject(fault="line error"),
        lambda m: m.jobs_end(),
        lambda m: m.build(polls=2),
        lambda m: m.edit_prompt(name="b", words="a paper moon"),
        lambda m: m.build_no_wait(),
        lambda m: m.cancel_one(pick=0),
        lambda m: m.settle(),
    ],
    "forced takes in jobs, collected by a build on the standard lane (priced on batch)": [
        lambda m: m.build(polls=1),
        lambda m: m.force_no_wait(name="a"),
        lambda m: m.force_no_wait(name="b"),
        lambda m: m.jobs_end(),
        lambda m: m.build_on_the_standard_lane(polls=1),
        lambda m: m.settle(),
    ],
    "a frame edited away while its job runs (its paid image collected all the same)": [
        lambda m: m.build_no_wait(),
        lambda m: m.edit_prompt(name="c", words="a blue kite"),
        lambda m: m.jobs_end(),
        lambda m: m.build(polls=1),
        lambda m: m.settle(),
    ],
}


@pytest.mark.parametrize("name", sorted(WALKS))
def test_batch_walk(name):
    walk(BatchMoneyMachine, WALKS[name])
