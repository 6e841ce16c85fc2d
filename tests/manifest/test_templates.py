"""Templates: sandboxed Jinja in string leaves, JSON prompts in declared order, merge patches."""

from __future__ import annotations

import pytest

from nbpipe.manifest.templates import Template, TemplateFault, merge_patch, prompt_text


def test_string_template_renders():
    assert Template("{{ a }} | Scene: {{ b }}").render({"a": "x", "b": "y"}) == "x | Scene: y"


def test_mapping_template_keeps_declared_order_and_constants():
    tpl = Template({"z": "{{ c }}", "a": {"k": 1, "j": "fixed"}})
    rendered = tpl.render({"c": "red"})
    assert prompt_text(rendered) == '{"z": "red", "a": {"k": 1, "j": "fixed"}}'


def test_undefined_variable_names_the_variable_and_the_leaf():
    with pytest.raises(TemplateFault) as info:
        Template({"subject": {"color": "{{ colour }}"}}).render({"color": "red"})
    assert info.value.missing == "colour"
    assert info.value.subpath == ("subject", "color")


@pytest.mark.parametrize("source", [
    "{{ ''.__class__.__mro__ }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ range(10**9) | list }}",
    "{% for i in range(10**9) %}x{% endfor %}",
    "{{ 'x' * 10**9 }}",
    "{{ 2 ** 10000000 }}",
    "{{ (((10 ** 60) ** 60) ** 60) ** 60 }}",
    "{% include 'self' %}",
    "{{ [1] * 10**8 }}",
])
def test_sandbox_refuses_escapes_and_blowups(source):
    with pytest.raises(TemplateFault):
        Template(source).render({})


def test_syntax_error_is_a_fault():
    with pytest.raises(TemplateFault, match="template syntax"):
        Template("{{ a | }}")


def test_merge_patch_rfc7386():
    target = {"a": "b", "c": {"d": "e", "f": "g"}}
    patch = {"a": "z", "c": {"f": None}, "n": [1]}
    assert merge_patch(target, patch) == {"a": "z", "c": {"d": "e"}, "n": [1]}
    assert merge_patch({"a": [1, 2]}, {"a": [3]}) == {"a": [3]}
    assert merge_patch({"a": "b"}, ["c"]) == ["c"]


# --- property: any template text ends in a string or a TemplateFault, quickly ---------------

import os  # noqa: E402

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

PIECES = ["{{", "}}", "{%", "%}", "{#", "#}", " x ", " y ", "|", "upper", "range(", ")", "(",
          "10**9", "*", "''", "'a'", ".__class__", ".__mro__", "[0]", "for i in", "endfor",
          "if", "endif", "include", "import", "macro", "set z =", "cycler", "lipsum", "self",
          "loop", "namespace()", "dict", "joiner", ".__globals__", "~", "\n", "bible"]


@settings(max_examples=int(os.environ.get("NBPIPE_FUZZ_EXAMPLES", "1000")), deadline=None,
          derandomize="NBPIPE_FUZZ_EXAMPLES" not in os.environ)
@given(st.lists(st.sampled_from(PIECES) | st.text(max_size=4), max_size=14))
def test_any_template_renders_or_faults(pieces):
    source = "".join(pieces)
    try:
        result = Template(source).render({"x": "a", "y": 3, "bible": "b"})
    except TemplateFault:
        return
    assert isinstance(result, str) and len(result) <= 200_000
