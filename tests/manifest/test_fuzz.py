"""Property tests: random edits to good manifests end in success or a located ManifestError.

Derandomized (a fixed seed), so CI is deterministic; benchmarks can run longer searches.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from nbpipe.errors import ManifestError
from nbpipe.plan.planner import open_project
from tests.conftest import EXAMPLES_DIR

SEEDS = [(EXAMPLES_DIR / p / "nbpipe.yaml").read_text("utf-8") for p in
         ("mira-storyboard", "aria-lookbook", "sneaker-colorways", "golden-hour-edit")]
FRAGMENTS = ["", ":", "- ", "  ", "\n", "{", "}", "[", "]", "&a ", "*a", "!!str ", "'", '"',
             "{{", "}}", "{{ x }}", "{% for %}", "null", "1e999", "-1", "0", "true",
             "version: 1", "targets:", "matrix: {c: [a, b]}", "inputs: [x]", "extends: cover",
             "model: Nano-Banana-Pro", "resolution: 9K", "output: /etc/x", "\t", "\x00", "é",
             "aspect_ratio: 16:9", "variants: {v: {patch: {a: null}}}", "bible: mira"]

# CI: 1,000 examples per property with a fixed seed; benchmarks/fuzz.py runs many more.
EXAMPLES = int(os.environ.get("NBPIPE_FUZZ_EXAMPLES", "1000"))
SETTINGS = settings(max_examples=EXAMPLES, derandomize="NBPIPE_FUZZ_EXAMPLES" not in os.environ,
                    deadline=None, suppress_health_check=list(HealthCheck))


def outcome(text: str) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "nbpipe.yaml").write_text(text, "utf-8", errors="surrogatepass")
        try:
            open_project(Path(tmp))
        except ManifestError as exc:
            rendered = exc.render()
            assert "Traceback" not in rendered
            for d in exc.diagnostics:
                assert d.line >= 0 and d.col >= 0 and d.message
            return "error"
        return "ok"


@st.composite
def edited(draw) -> str:
    text = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        kind = draw(st.sampled_from(["delete", "insert", "truncate", "dupline"]))
        if kind == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 40)):]
        elif kind == "insert":
            piece = draw(st.sampled_from(FRAGMENTS) | st.text(max_size=8))
            text = text[:at] + piece + text[at:]
        elif kind == "truncate":
            text = text[:at]
        else:
            lines = text.splitlines(keepends=True) or [""]
            i = draw(st.integers(0, len(lines) - 1))
            text = "".join(lines[: i + 1] + lines[i:])
    return text


@SETTINGS
@given(edited())
def test_text_edits_never_crash(text):
    event(outcome(text))


scalars = st.none() | st.booleans() | st.integers(-3, 3) | st.text(max_size=6) | \
    st.sampled_from(["Nano-Banana", "hiapi", "3:2", "1K", "png", "mira", "cover"])
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=6) | st.sampled_from(
                          ["prompt", "template", "matrix", "vars", "inputs", "extends", "patch",
                           "variants", "model", "bible", "output"]), inner, max_size=3),
                      max_leaves=12)


@st.composite
def swapped(draw) -> str:
    """A seed manifest with one value anywhere replaced by a random structure (type swaps)."""
    data = json.loads(json.dumps(YAML(typ="safe").load(draw(st.sampled_from(SEEDS)))))
    node = data
    for _ in range(draw(st.integers(0, 3))):
        if isinstance(node, dict) and node:
            key = draw(st.sampled_from(sorted(node)))
            if not isinstance(node[key], (dict, list)) or draw(st.booleans()):
                node[key] = draw(values)
                break
            node = node[key]
    else:
        if isinstance(node, dict) and node:
            node[draw(st.sampled_from(sorted(node)))] = draw(values)
    return json.dumps(data)  # JSON is YAML


@SETTINGS
@given(swapped())
def test_type_swaps_never_crash(text):
    event(outcome(text))


def test_seeds_are_valid():
    assert [outcome(s) for s in SEEDS] == ["ok"] * 4
