"""The word diff behind a changed prompt's reason stays bounded on long prompts (issue #22 item 7):
difflib's matcher is quadratic, so it only ever sees a bounded middle."""

from __future__ import annotations

import difflib

import pytest

from nbpipe.plan import reasons
from nbpipe.plan.reasons import MAX_DIFF_PAIRS, word_diff, word_ops


@pytest.fixture
def matched(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The word pairs each SequenceMatcher is handed; one past the bound fails the test at once
    (on the old code it would have run for minutes)."""
    seen: list[int] = []
    real = difflib.SequenceMatcher

    def counting(*, a: list[str], b: list[str], autojunk: bool) -> difflib.SequenceMatcher[str]:
        seen.append(len(a) * len(b))
        assert len(a) * len(b) <= MAX_DIFF_PAIRS, "the quadratic matcher saw an unbounded diff"
        return real(a=a, b=b, autojunk=autojunk)

    monkeypatch.setattr(reasons.difflib, "SequenceMatcher", counting)
    return seen


def _words(n: int, salt: str) -> str:
    return " ".join(f"{salt}{i % 7}" for i in range(n))


def test_a_long_prompt_rewritten_throughout_is_named_not_diffed(matched: list[int]) -> None:
    old, new = _words(30_000, "a"), _words(30_000, "b")
    assert word_diff(old, new, what="prompt") == \
        "long prompt changed (30000 words; they differ from word 1)"
    ops = word_ops(old, new)  # review's side by side: one delete, one insert, in linear time
    assert ops == [("delete", old), ("insert", new)]
    assert matched == []


def test_one_word_changed_in_a_long_prompt_is_still_diffed_word_by_word(
        matched: list[int]) -> None:
    words = _words(30_000, "w").split()
    new = [*words[:15_000], "CHANGED", *words[15_001:]]
    text = word_diff(" ".join(words), " ".join(new))
    assert "[-w6-] {+CHANGED+}" in text and len(text) < 200
    assert matched == [1]  # only the one differing word reached the matcher


def test_a_long_change_in_the_middle_reports_where_it_starts(matched: list[int]) -> None:
    head, tail = _words(100, "h"), _words(100, "t")
    old = f"{head} {_words(1000, 'x')} {tail}"
    new = f"{head} {_words(1000, 'y')} {tail}"
    assert word_diff(old, new, what="prompt") == \
        "long prompt changed (1200 words; they differ from word 101)"
    ops = word_ops(old, new)
    assert [op for op, _ in ops] == ["equal", "delete", "insert", "equal"]
    assert " ".join(text for op, text in ops if op != "delete") == new


def test_short_diffs_are_unchanged() -> None:
    assert word_diff("a red fox jumps", "a blue fox jumps") == "a [-red-] {+blue+} fox jumps"
    assert word_ops("same words", "same words") == [("equal", "same words")]
