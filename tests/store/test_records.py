"""The strict models of stored records (store/records.py) accept what the hand-written checks
they replaced accepted, and refuse what they refused: old caches still read."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nbpipe.store.records import journal_line, read_state, valid_price_list
from nbpipe.store.state import STATE_VERSION, _checked, _versioned
from nbpipe.store.takes import Take

SHA = "a" * 64
ODD = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=True),
                st.text(max_size=3), st.just(SHA), st.just("out/a.png"), st.just("../x"),
                st.just("1.5"), st.just([]), st.just({}))
STAT = st.one_of(st.tuples(st.integers(0, 9), st.integers(0, 9), st.integers(0, 9),
                           st.integers(0, 9), st.sampled_from([SHA, "b" * 64, "x"]))
                 .map(list), st.lists(ODD, max_size=6))
REL = st.sampled_from(["out/a.png", "b.png", "../c.png", "/abs", "c:/x", "", "a\\b", "x\x00"])


def _maybe(strategy):
    return st.one_of(strategy, ODD)


STATE = st.fixed_dictionaries({}, optional={
    "version": st.sampled_from([STATE_VERSION, 2, "1", None, True, 1.0]),
    "outputs": _maybe(st.dictionaries(REL, STAT, max_size=3)),
    "orphans": _maybe(st.dictionaries(REL, _maybe(st.just(SHA)), max_size=3)),
    "failed": _maybe(st.dictionaries(st.text(max_size=3), ODD, max_size=3)),
    "totals": _maybe(st.fixed_dictionaries({}, optional={
        "spent_usd": _maybe(st.sampled_from(["0.5", "-1", "NaN", "inf", "x"])),
        "saved_usd": _maybe(st.just("0")), "other": ODD})),
    "unpushed": _maybe(st.lists(_maybe(st.lists(_maybe(st.just(SHA)), max_size=3)),
                                max_size=3)),
    "synced": ODD,
    "fingerprint": _maybe(st.fixed_dictionaries({}, optional={
        "inputs": _maybe(st.dictionaries(REL, _maybe(st.just([1, 2])), max_size=2)),
        "outputs": _maybe(st.lists(_maybe(REL), max_size=2)),
        "manifest": _maybe(st.just(SHA)), "lock": _maybe(st.just(SHA)),
        "frames": ODD, "nbpipe": ODD})),
    "durations": _maybe(st.dictionaries(st.sampled_from(["hiapi", "x"]), _maybe(
        st.dictionaries(st.sampled_from(["m", "n"]), _maybe(st.lists(_maybe(st.sampled_from(
            [10, 10.5, -1, 0, float("inf"), True])), max_size=3)), max_size=2)), max_size=2)),
    "extra": ODD,
})


def _stdlib(doc: object) -> dict:
    return _checked(doc) if _versioned(doc) else {}


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(STATE)
def test_state_model_and_fast_path_reader_agree(doc):
    assert read_state(doc) == _stdlib(doc)


def test_state_reads_its_own_writing_byte_for_byte():
    doc = {"version": 1, "outputs": {"out/a.png": [1, 2, 3, 4, SHA]}, "orphans": {"b": SHA},
           "failed": {"f": "why"}, "totals": {"spent_usd": "0.5", "saved_usd": "0"},
           "unpushed": [[SHA, SHA]], "synced": "s3://x",
           "fingerprint": {"manifest": SHA, "lock": SHA, "frames": 2, "inputs": {"a": [1]},
                           "outputs": ["out/a.png"], "until": None},
           "durations": {"hiapi": {"Nano-Banana": [10, 10.5]}}}
    text = json.dumps(doc, separators=(",", ":"))
    assert json.dumps(read_state(json.loads(text)), separators=(",", ":")) == text


GOOD_TAKE = {"digest": SHA, "backend": "hiapi", "model": "m", "format": "png",
             "cost_usd": "0.04", "created": 1.5}


@pytest.mark.parametrize("change", [
    {"digest": "../etc/passwd"}, {"digest": "A" * 64}, {"cost_usd": "-1"}, {"cost_usd": "NaN"},
    {"cost_usd": 0.04}, {"created": True}, {"created": "1"}, {"created": float("inf")},
    {"take": 0}, {"take": True}, {"take": 1.0}, {"task_id": 5}, {"url": []},
    {"url_expires": float("nan")}, {"backend": None}, {"created": 10 ** 400},
])
def test_a_take_of_the_wrong_shape_is_refused(change):
    with pytest.raises(ValueError):
        Take.from_json({**GOOD_TAKE, **change})


def test_a_take_as_older_nbpipe_wrote_it_reads():
    take = Take.from_json({**GOOD_TAKE, "created": 2, "unknown": "kept out"})
    assert (take.digest, take.created, take.take, take.url) == (SHA, 2, None, None)
    assert Take.from_json({**GOOD_TAKE, "take": 3, "task_id": "t", "url": "https://x",
                           "url_expires": 9}).take == 3


INTENT = {"op": "intent", "key": SHA, "take": 1, "frame": "f", "backend": "hiapi",
          "request": {"model": "Nano-Banana", "prompt": "p", "params": {}}}


def test_journal_lines_keep_unknown_fields_and_check_known_ones():
    line = journal_line({**INTENT, "reported": True})
    assert line.model_extra == {"reported": True}
    assert journal_line({**INTENT, "account": 7}).account is None  # an older, damaged account
    for bad in ({**INTENT, "take": True}, {**INTENT, "key": "k"}, {**INTENT, "frame": 1},
                {**INTENT, "request": {"model": "no such model"}},
                {"op": "task", "key": "k", "take": 1, "task_id": 5},
                {"op": "sent", "key": "k", "take": 1}, {"op": "done", "take": 1}, []):
        with pytest.raises(ValueError):
            journal_line(bad)


def test_price_lists():
    assert valid_price_list({"hiapi": {}, "fetched": "2026-01-01", "source": "x"})
    assert not valid_price_list({"hiapi": {"no such model": 0.1}})
    assert not valid_price_list({"hiapi": {}, "fetched": 5})
    assert not valid_price_list([])


def test_a_take_says_its_lane_and_an_older_record_is_standard():
    doc = {"digest": "a" * 64, "backend": "gemini", "model": "m", "format": "png",
           "cost_usd": "0.03", "created": 1.0}
    assert Take.from_json(doc).lane == "standard"
    assert Take.from_json({**doc, "lane": "flex"}).lane == "flex"
    with pytest.raises(ValueError):  # a damaged record is a miss
        Take.from_json({**doc, "lane": 5})
