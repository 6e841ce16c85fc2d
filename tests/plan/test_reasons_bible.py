"""A changed bible inside a JSON prompt: explain shows a word diff, not the paragraph twice."""

from __future__ import annotations

import json
from decimal import Decimal

from nbpipe.plan.frame import Frame
from nbpipe.plan.reasons import changes

OLD = ("Mira, a 28-year-old field engineer with short dark hair, a rust-orange beanie, a small "
       "mole on the right cheek and grease on her left sleeve")
NEW = OLD.replace("rust-orange", "forest-green")


def _frame(bible: str) -> Frame:
    prompt = {"subject": {"identity": bible, "pose": "kneeling"}}
    return Frame(name="shoe/red", target="shoe", backend="preview", model="Nano-Banana",
                 parts=(json.dumps(prompt),), params={}, inputs=(), output="out/shoe/red.png",
                 cost=Decimal(0), is_json=True, bible="mira", template="product",
                 vars={}, sources={"bible": "new", "template": "t"}, key="k")


def test_a_long_json_leaf_that_changed_is_shown_as_a_word_diff():
    old = {"backend": "preview", "model": "Nano-Banana", "params": {}, "bible": "mira",
           "template": "product", "vars": {}, "sources": {"bible": "old", "template": "t"},
           "prompt": json.dumps({"subject": {"identity": OLD, "pose": "kneeling"}}),
           "prompt_json": {"subject": {"identity": OLD, "pose": "kneeling"}}, "inputs": []}
    lines = [line for change in changes(_frame(NEW), old) for line in change.lines]
    assert lines == [
        "bible 'mira' changed",
        "prompt subject.identity: … dark hair, a [-rust-orange-] {+forest-green+} beanie, a "
        "small …"]
