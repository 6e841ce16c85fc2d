"""The money state machine (tests/engine/money_model.py) in CI: a fixed seed, a bounded run, and
fixed walks through the Gemini, OpenAI and fal faults, interrupts, gc/pin/pull beside a live
build and every kind of project edit with profiles, so CI covers them whatever the bounded run
happens to draw.
Five walks stage what a careless edit of the safety code breaks (issue 27 item 11; each names the
mutation it kills, measured by hand): the body journalled after the create, an Idempotency-Key
without the take number, the budget measured at manifest prices, the fast path ignoring open
journal entries, gc ignoring its grace period. Measured (each a one-line change, reverted):

    body journalled after the create   walks "a create killed ...", "a failed task ...",
                                       "a killed --force ...", and the random run
    Idempotency-Key without the take   walks "a failed task ...", "a killed --force ...",
                                       "gc inside the grace" (plan != spend), random runs
    budget at manifest prices          walk "manifest prices below list, beside a cap"
    fast path ignoring the journal     walk "a killed --force ...", and the random run
    gc ignoring its grace              walk "gc inside the grace"
"""

from __future__ import annotations

import pytest

from tests.engine.money_model import BIBLES, MoneyMachine, ci_settings, walk

pytestmark = pytest.mark.slow  # real processes: minutes

MoneyMachine.TestCase.settings = ci_settings(examples=4, steps=12)  # the walks carry the rest
test_money_invariants = MoneyMachine.TestCase

WALKS = {
    "gemini faults": [
        lambda m: m.inject(fault="gemini lost reply"),
        lambda m: m.build(jobs=4, cap=None, force=None),  # g1 and g2: one request, lost
        lambda m: m.inject(fault="gemini safety"),
        lambda m: m.inject(fault="gemini 429"),
        lambda m: m.edit_gemini_prompt(name="g2", words="a paper moon"),
        lambda m: m.build(jobs=1, cap="0.2", force=None),
        lambda m: m.inject(fault="gemini no image"),
        lambda m: m.inject(fault="gemini prompt blocked"),
        lambda m: m.build(jobs=4, cap=None, force="g1"),
        lambda m: m.settle(),
    ],
    "fal faults, a kill with fal requests queued": [
        lambda m: m.inject(fault="fal lost submit"),
        lambda m: m.build(jobs=4, cap=None, force=None),  # f1 or fe: possibly billed, not resent
        lambda m: m.inject(fault="fal 429"),
        lambda m: m.inject(fault="fal nsfw"),
        lambda m: m.edit_fal_prompt(words="a pier at dusk"),
        lambda m: m.build(jobs=1, cap="0.2", force=None),
        lambda m: m.inject(fault="fal expired URL"),
        lambda m: m.inject(fault="fal gateway"),
        lambda m: m.build(jobs=4, cap=None, force=None),
        lambda m: m.edit_fal_prompt(words="a jetty in rain"),
        lambda m: m.rewrite_input(image=3, same_stat=False),  # fe: a new edit
        lambda m: m.interrupt(moment=1.0, presses=0),  # kill -9, fal's queue held
        lambda m: m.build(jobs=4, cap=None, force=None),  # collected: 0 new submits for them
        lambda m: m.inject(fault="fal runner failure"),
        lambda m: m.settle(),
    ],
    # a fresh-seed soak (seed 4069096227): a fal request left out at Ctrl-C was counted by the
    # build that left it; fal's runner then failed it (unbilled), and the next build paid anew
    "a fal request left out at Ctrl-C, then failed by fal's runner": [
        lambda m: m.inject(fault="fal runner failure"),
        lambda m: m.interrupt(moment=1.5, presses=1),  # fal's queue held past the grace
        lambda m: m.settle(),  # Σ reported = Σ billed
    ],
    "interrupts with Gemini in flight": [
        lambda m: m.edit_gemini_prompt(name="g1", words="a blue kite"),
        lambda m: m.interrupt(moment=1.0, presses=2),
        lambda m: m.edit_gemini_prompt(name="g2", words="a paper moon"),
        lambda m: m.interrupt(moment=1.0, presses=0),
        lambda m: m.edit_gemini_prompt(name="g1", words="a red kite"),
        lambda m: m.interrupt(moment=1.0, presses=1),
        lambda m: m.settle(),
    ],
    "gc, pin and pull beside a live build": [
        lambda m: m.build(jobs=4, cap=None, force=None),
        lambda m: m.beside_build(moment=0.3, frame="g2", take="1"),
        lambda m: m.edit_prompt(name="a", words="a storm"),
        lambda m: m.beside_build(moment=0.0, frame="a", take="2"),
        lambda m: m.settle(),
        lambda m: m.gc_and_pin(),
    ],
    "vars, matrix, bible, file input and profiles": [
        lambda m: m.build(jobs=4, cap=None, force=None),  # plan's total = the spend, each build
        lambda m: m.build(jobs=4, cap=None, force=None, profile="hero"),  # Gemini Pro, JPEG
        lambda m: m.edit_var(change=("thing", "kite")),  # v = m/dawn: one request, restored
        lambda m: m.edit_matrix(value="dusk", at=None),
        lambda m: m.edit_bible(text=BIBLES[1]),
        lambda m: m.build(jobs=4, cap=None, force=None, profile="draft"),
        lambda m: m.rewrite_input(image=1, same_stat=False),
        lambda m: m.build(jobs=1, cap=None, force=None),
        lambda m: m.rewrite_input(image=2, same_stat=True),  # only the ctime tells
        lambda m: m.build(jobs=4, cap=None, force=None),
        lambda m: m.remove_matrix_value(at=0),
        lambda m: m.edit_matrix(value="dawn", at=0),
        lambda m: m.rewrite_input(image=1, same_stat=True),  # back: restored, not paid
        lambda m: m.build(jobs=4, cap=None, force="m", profile="hero"),
        lambda m: m.build(jobs=4, cap="0.1", force=None, profile="hero"),
        lambda m: m.settle(),
        lambda m: m.gc_and_pin(),
        lambda m: m.build(jobs=4, cap=None, force=None, profile="hero"),
    ],
    "openai faults, an edit among them": [
        lambda m: m.inject(fault="openai lost reply"),
        lambda m: m.build(jobs=4, cap=None, force=None),  # o1 or oe: its reply lost, billed
        lambda m: m.inject(fault="openai moderation"),
        lambda m: m.inject(fault="openai 429"),
        lambda m: m.edit_openai_prompt(words="a glass crane"),
        lambda m: m.rewrite_input(image=1, same_stat=False),  # the edit's input: a new request
        lambda m: m.build(jobs=1, cap="0.2", force=None),
        lambda m: m.inject(fault="openai 503"),
        lambda m: m.edit_openai_prompt(words="a crane at dusk"),
        lambda m: m.interrupt(moment=1.0, presses=0),  # kill -9, OpenAI calls in flight
        lambda m: m.edit_openai_prompt(words="a paper crane"),
        lambda m: m.interrupt(moment=1.0, presses=1),  # one Ctrl-C waits for them
        lambda m: m.settle(),
    ],
    # the body journalled after the create: the killed create's entry has no body, so no build
    # resends it once no frame wants it; it stays open, its paid image never collected
    "a create killed at HiAPI, its frame changed": [
        lambda m: m.kill_at_create(name="a", away=True),
        lambda m: m.settle(),
    ],
    # an Idempotency-Key without the take number: the rebuild replays the failed task
    "a failed task, then a rebuild": [
        lambda m: m.fail_then_rebuild(name="b"),
        lambda m: m.a_day_passes(),
        lambda m: m.kill_at_create(name="c", away=False),
        lambda m: m.a_day_passes(),  # its resend is a new task now: HiAPI forgot the key
        lambda m: m.settle(),
    ],
    # the budget measured at manifest prices: the cap lets through list-price bills past it
    "manifest prices below list, beside a cap": [
        lambda m: m.cheap_prices(on=True),
        lambda m: m.build(jobs=4, cap="0.1", force=None),
        lambda m: m.edit_prompt(name="a", words="a storm"),
        lambda m: m.build(jobs=1, cap="0.05", force=None, profile="hero"),
        lambda m: m.cheap_prices(on=False),
        lambda m: m.settle(),
    ],
    # the fast path ignoring open journal entries: "nothing to do" with a paid task out
    "a killed --force, then a build that looks like a no-op": [
        lambda m: m.noop_after_a_killed_force(name="a"),
    ],
    # gc ignoring its grace period: the image not yet indexed goes
    "gc inside the grace": [
        lambda m: m.gc_inside_grace(),
        lambda m: m.build(jobs=4, cap=None, force=None),
        lambda m: m.gc_and_pin(),
    ],
}


@pytest.mark.parametrize("name", sorted(WALKS))
def test_money_walk(name):
    walk(MoneyMachine, WALKS[name])
