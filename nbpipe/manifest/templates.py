"""Prompt templates: Jinja2 in a sandbox, inside string leaves only, undefined variables an error.

A template is a string (a text prompt) or a mapping (a JSON-structured prompt). Each string leaf
that contains Jinja syntax is compiled once; constant leaves are copied as they are. A mapping
renders to JSON text in the declared key order, after any variant's RFC 7386 merge patch.
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Iterable, Iterator
from typing import Any, cast

from jinja2 import StrictUndefined, TemplateSyntaxError, nodes
from jinja2 import Template as JinjaTemplate
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer

from nbpipe.manifest.source import Path

MAX_RENDERED = 200_000  # characters any one expression may build ("x" * 10**9 is refused)
MAX_STEPS = 100_000  # loop iterations one frame's prompt may take
MAX_TOTAL_STEPS = 10_000_000  # loop iterations all frames of one manifest may take (~10 s)
_JINJA_MARK = re.compile(r"\{[{%#]")
_BARE_VAR = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_UNDEFINED = re.compile(r"'([^']+)' is undefined|has no attribute '([^']+)'")


class TemplateFault(Exception):
    """A template that cannot compile or render; `subpath` locates the leaf inside it."""

    subpath: Path
    hint: str | None
    missing: str | None

    def __init__(self, subpath: Path, message: str, hint: str | None = None,
                 missing: str | None = None) -> None:
        super().__init__(message)
        self.subpath = subpath
        self.hint = hint
        self.missing = missing  # the undefined variable's name, when that is the fault


# Templates are deterministic: the same manifest makes the same request (so the same key) on
# every run and every machine; a random prompt would pay for a new render on every build.
NONDETERMINISTIC = {"random": "filter", "lipsum": "function"}
DETERMINISM_HINT = ("templates are deterministic, so a manifest always makes the same request; "
                    "list the values you want in `matrix:` or `variants:` instead")
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")  # the repr of a function or object: new every run


class _Steps:
    """The loop budget: iterations left for the frame being rendered, and for the manifest."""

    frame = MAX_STEPS
    total = MAX_TOTAL_STEPS

    @classmethod
    def take(cls) -> None:
        cls.frame -= 1
        cls.total -= 1
        if cls.frame < 0:
            raise SecurityError(f"the template loops more than {MAX_STEPS:,} times for one frame")
        if cls.total < 0:
            raise SecurityError(f"the templates loop more than {MAX_TOTAL_STEPS:,} times in all")


def _counted(iterable: Iterable[Any]) -> Iterator[Any]:
    for item in iterable:
        _Steps.take()
        yield item


def _sized(value: Any) -> Any:
    if isinstance(value, (str, list, tuple, dict)) and len(value) > MAX_RENDERED:
        raise SecurityError(f"a value of {len(value):,} items is too large for a prompt")
    return value


def _bounded_filter(function: Any) -> Any:
    def bounded(*args: Any, **kwargs: Any) -> Any:
        _check_args(args, kwargs)
        return _sized(function(*args, **kwargs))
    for attr in ("jinja_pass_arg",):  # keep how Jinja passes it the context or environment
        if hasattr(function, attr):
            setattr(bounded, attr, getattr(function, attr))
    return bounded


def _check_args(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """A number larger than a prompt may be (center(10**9), indent(10**9)) is refused before
    the call, which would otherwise build it."""
    for value in (*args, *kwargs.values()):
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_RENDERED:
            raise SecurityError(f"the number {value} is too large for a prompt")


class _Budgeted(NodeTransformer):
    """Every loop draws on the step budget; every `a ~ b` is size-checked like `a + b`."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = nodes.Filter(node.iter, "nbpipe_counted", [], [], None, None,
                                 lineno=node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return nodes.Filter(node, "nbpipe_sized", [], [], None, None, lineno=node.lineno)


class _Sandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox, deterministic, plus a rendering budget: loop iterations (per
    frame and in all), and the size of every value built on the way, not only of the final
    prompt."""

    intercepted_binops = frozenset({"*", "**", "+", "-"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        for name, kind in NONDETERMINISTIC.items():
            (self.filters if kind == "filter" else self.globals).pop(name, None)
        self.filters = {name: _bounded_filter(f) for name, f in self.filters.items()}
        self.filters["nbpipe_counted"] = _counted
        self.filters["nbpipe_sized"] = _sized

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        # Jinja types visit() as Any; a transformer returns the (changed) node it was given.
        return cast(nodes.Template, _Budgeted().visit(super()._parse(source, name, filename)))

    def call(self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _check_args(args, kwargs)
        return _sized(super().call(__context, __obj, *args, **kwargs))

    def call_binop(self, context: Any, operator_name: str, left: Any, right: Any) -> Any:
        if operator_name == "-":
            result = operator.sub(left, right)
            if isinstance(result, (set, frozenset)):  # keys() - keys(): its order is per process
                raise SecurityError("'-' on keys makes a set, whose order changes from run to "
                                    "run; use `|reject('in', ...)` on a list")
            return result
        if operator_name == "**":
            if isinstance(right, (int, float)) and isinstance(left, (int, float)) and \
                    abs(right) * max(abs(int(left)).bit_length(), 1) > 4096:
                raise SecurityError("the power is too large")
            return operator.pow(left, right)
        if operator_name == "+":
            return _sized(operator.add(left, right))
        for seq, count in ((left, right), (right, left)):
            if isinstance(seq, (str, list, tuple)) and isinstance(count, int) \
                    and len(seq) * count > MAX_RENDERED:
                raise SecurityError("repetition builds a value too large for a prompt")
        return operator.mul(left, right)


class _Null(Exception):
    """A `{{ ... }}` printed None: an empty YAML value (`scene:`), never meant as "None"."""

    name: str | None

    def __init__(self, name: str | None = None) -> None:
        super().__init__(name)
        self.name = name


def _refuse_null(value: Any) -> Any:
    if value is None:
        raise _Null()
    return value


ENV = _Sandbox(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True,
               finalize=_refuse_null)


class _Fill:
    """A leaf of literal text and bare `{{ name }}` placeholders, filled without Jinja.

    Most prompt leaves look like this; rendering them through Jinja costs a context object per
    leaf per frame. The result is the same as Jinja's: str() of each value, undefined an error.
    """

    parts: list[str]

    def __init__(self, parts: list[str]) -> None:
        self.parts = parts  # even indexes: literal text; odd: variable names

    def render(self, context: dict[str, Any]) -> str:
        out = []
        for i, part in enumerate(self.parts):
            if i % 2 == 0:
                out.append(part)
            elif part in context:
                if context[part] is None:
                    raise _Null(part)
                out.append(str(context[part]))
            else:
                raise UndefinedError(f"'{part}' is undefined")
        return "".join(out)


def _compile_leaf(text: str, subpath: Path) -> Any:
    if not _JINJA_MARK.search(text):
        return text
    parts = _BARE_VAR.split(text)
    if not any(_JINJA_MARK.search(literal) or "}}" in literal for literal in parts[::2]):
        return _Fill(parts)
    try:
        return ENV.from_string(text)
    except TemplateSyntaxError as exc:
        removed = any(f"named '{name}'" in str(exc.message) for name in NONDETERMINISTIC)
        raise TemplateFault(subpath, f"template syntax: {exc.message}",
                            DETERMINISM_HINT if removed else None) from None


class _Const:
    """A subtree with no template in it: rendered by returning it as it is (never mutated)."""

    value: Any

    def __init__(self, value: Any) -> None:
        self.value = value


def _compile(node: Any, subpath: Path) -> Any:
    if isinstance(node, str):
        leaf = _compile_leaf(node, subpath)
        return _Const(node) if isinstance(leaf, str) else leaf
    if isinstance(node, (dict, list)):
        items = node.items() if isinstance(node, dict) else enumerate(node)
        compiled = {key: _compile(value, (*subpath, key)) for key, value in items}
        if all(isinstance(c, _Const) for c in compiled.values()):
            return _Const(node)
        return compiled if isinstance(node, dict) else list(compiled.values())
    return _Const(node)


class Template:
    """A compiled prompt template (string or JSON-structured); `render` is called per frame."""

    is_json: bool
    _tree: Any  # the compiled leaves, in the source's shape

    def __init__(self, source: str | dict[str, Any]) -> None:
        self.is_json = isinstance(source, dict)
        self._tree = _compile(source, ())

    def render(self, context: dict[str, Any]) -> Any:
        """The rendered string, or the rendered mapping for a JSON-structured template."""
        _Steps.frame = MAX_STEPS
        return _render(self._tree, context, ())


def reset_budget() -> None:
    """A new manifest: the budget of loop iterations for all its frames starts again."""
    _Steps.total = MAX_TOTAL_STEPS


def _render_leaf(leaf: Any, context: dict[str, Any]) -> str:
    if isinstance(leaf, _Fill):
        return leaf.render(context)
    out, size = [], 0
    for chunk in leaf.generate(context):  # the prompt is checked as it grows, not once built
        size += len(chunk)
        if size > MAX_RENDERED:
            raise SecurityError(f"the template renders more than {MAX_RENDERED:,} characters")
        out.append(chunk)
    return "".join(out)


def _template_line(exc: BaseException) -> str:
    """ " (line N)" of the template where `exc` arose, from Jinja's rewritten traceback."""
    line, tb = None, exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return f" (line {line} of the template)" if line and line > 1 else ""


def _render(node: Any, context: dict[str, Any], subpath: Path) -> Any:
    if isinstance(node, _Const):
        return node.value
    if isinstance(node, dict):
        return {key: _render(value, context, (*subpath, key)) for key, value in node.items()}
    if isinstance(node, list):
        return [_render(value, context, (*subpath, i)) for i, value in enumerate(node)]
    try:
        text = _render_leaf(node, context)
    except UndefinedError as exc:
        match = _UNDEFINED.search(str(exc))
        name = next((g for g in match.groups() if g), None) if match else None
        if name in NONDETERMINISTIC:
            raise TemplateFault(subpath, f"'{name}' is not available in nbpipe templates "
                                "(it makes a different prompt on every run)",
                                DETERMINISM_HINT) from None
        message = f"undefined variable '{name}'" if name else f"undefined value: {exc}"
        raise TemplateFault(subpath, message, missing=name) from None
    except _Null as exc:
        name = f"variable '{exc.name}'" if exc.name else "a value it prints"
        raise TemplateFault(subpath, f"{name} is null: it would be sent as the word 'None'",
                            f"give `{exc.name or 'it'}` a value (YAML reads an empty value as "
                            'null; "" is empty text)') from None
    except SecurityError as exc:
        raise TemplateFault(subpath, f"the sandbox refused: {str(exc).rstrip('.')}"
                            f"{_template_line(exc)}") from None
    except Exception as exc:
        raise TemplateFault(subpath, f"template failed: {type(exc).__name__}: {exc}"
                            f"{_template_line(exc)}") from None
    if len(text) > MAX_RENDERED:
        raise TemplateFault(subpath, f"the template renders to {len(text):,} characters")
    if isinstance(node, JinjaTemplate) and _ADDRESS.search(text):
        raise TemplateFault(subpath, "the template prints a function or object, whose text "
                            "changes on every run", "print a value: a call missing its `()`?")
    return text


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON Merge Patch: mappings merge, `null` deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def prompt_text(rendered: Any) -> str:
    """The prompt as sent: a string as it is, a mapping as JSON text in declared key order."""
    if isinstance(rendered, str):
        return rendered
    return json.dumps(rendered, ensure_ascii=False)
