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
