"""The money state machine with a shared remote and a second clone
(tests/engine/money_remote_model.py) in CI: a fixed seed, a bounded run, and fixed walks through
each way the remote fails, the second clone, and builds in both clones at once, so CI covers
them whatever the bounded run happens to draw."""

from __future__ import annotations

import pytest

from tests.engine.money_model import ci_settings, walk
from tests.engine.money_remote_model import RemoteMoneyMachine

pytestmark = pytest.mark.slow  # real processes: minutes

RemoteMoneyMachine.TestCase.settings = ci_settings(examples=3, steps=10)
test_money_remote_invariants = RemoteMoneyMachine.TestCase

WALKS = {
    "outages of every kind, then back": [
        lambda m: m.start(shared=True),
        lambda m: m.edit_prompt(name="a", words="a storm"),
        lambda m: m.build_clone(jobs=4, anyway=False, outage="unplugged"),
        lambda m: m.clone_project(fresh=False),
        lambda m: m.build_clone(jobs=1, anyway=False, outage="dead port"),
        lambda m: m.build_clone(jobs=4, anyway=False, outage="unknown key"),
        lambda m: m.pull_clone(outage="no permission"),
        lambda m: m.plan(),
        lambda m: m.remote_fails(how="no permission"),
        lambda m: m.plan(),
        lambda m: m.push(second=False),
        lambda m: m.build_anyway(outage=None),  # pays, the push waits
        lambda m: m.remote_back(),
        lambda m: m.build_clone(jobs=4, anyway=False, outage=None),  # pays nothing
        lambda m: m.settle(),
    ],
    "a second clone, pull and push": [
        lambda m: m.remote_fails(how="dead port"),
        lambda m: m.build(jobs=4, cap=None, force=None),  # waits: the remote may hold them
        lambda m: m.build_anyway(outage="unplugged"),
        lambda m: m.clone_project(fresh=True),
        lambda m: m.pull_clone(outage=None),  # missing: not pushed yet
        lambda m: m.push(second=False),
        lambda m: m.remote_back(),
        lambda m: m.push(second=False),
        lambda m: m.pull_clone(outage=None),
        lambda m: m.build_clone(jobs=4, anyway=False, outage=None),
        lambda m: m.settle(),
    ],
    "both clones at once, the cable pulled and put back": [
        lambda m: m.start(shared=True),
        lambda m: m.edit_prompt(name="b", words="a boat at dawn"),
        lambda m: m.clone_project(fresh=False),
        lambda m: m.build_both(moment=0.3, flip="unplug"),
        lambda m: m.interrupt(moment=0.8, presses=0),  # kill -9 while the remote is out
        lambda m: m.edit_prompt(name="c", words="a storm"),
        lambda m: m.clone_project(fresh=False),
        lambda m: m.build_both(moment=0.5, flip="plug"),
        lambda m: m.interrupt(moment=0.8, presses=1),
        lambda m: m.settle(),
    ],
    "both clones at once with claims: each request paid once": [
        lambda m: m.start(shared=False),
        lambda m: m.clone_project(fresh=False),
        lambda m: m.build_both(moment=0.0, flip=None),
        lambda m: m.edit_prompt(name="a", words="a lighthouse in fog"),
        lambda m: m.edit_prompt(name="b", words="a boat at dawn"),
        lambda m: m.clone_project(fresh=False),
        lambda m: m.build_both(moment=0.0, flip=None),
        lambda m: m.settle(),
    ],
}


@pytest.mark.parametrize("name", sorted(WALKS))
def test_money_remote_walk(name):
    walk(RemoteMoneyMachine, WALKS[name])
