"""Warnings: what is valid YAML and a valid manifest, but almost surely not what was meant."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

from nbpipe.errors import Diagnostic
from nbpipe.manifest.load import Loaded
from nbpipe.manifest.source import Path


def warnings(loaded: Loaded) -> list[Diagnostic]:
    """Every warning of a manifest that loaded, located like an error."""
    found: list[Diagnostic] = []
    prompts: list[tuple[Path, Any]] = [(("templates", name), source) for name, source
                                       in loaded.manifest.templates.items()]
    prompts += [(("targets", name, "prompt"), target.prompt) for name, target
                in loaded.manifest.targets.items()]
    for path, prompt in prompts:
        if isinstance(prompt, dict):
            found += _null_leaves(loaded, path, prompt)
    for name, target in loaded.manifest.targets.items():
        values: list[tuple[Path, Any]] = [(("targets", name, "vars", k), v)
                                          for k, v in (target.vars or {}).items()]
        values += [(("targets", name, "variants", variant, "vars", k), v)
                   for variant, spec in (target.variants or {}).items()
                   for k, v in spec.vars.items()]
        values += [(("targets", name, "matrix", axis, i), v)
                   for axis, axis_values in (target.matrix or {}).items()
                   for i, v in enumerate(axis_values)]
        found += [_jinja_value(loaded, path, name) for path, value in values
                  if isinstance(value, str) and _JINJA.search(value)]
    return found


_JINJA = re.compile(r"\{\{|\{%")


def _jinja_value(loaded: Loaded, path: Path, target: str) -> Diagnostic:
    """Values are data: Jinja in one would reach the paid API as the characters `{{ x }}`."""
    what = f"matrix value of '{path[3]}'" if path[2] == "matrix" else f"var '{path[-1]}'"
    diag = loaded.source.diagnostic(
        path, f"the {what} in target '{target}' holds Jinja, which is sent as written: "
        "values are not rendered", "put the expression in the template, where it is rendered")
    return replace(diag, severity="warning")


def _null_leaves(loaded: Loaded, path: Path, node: Any) -> list[Diagnostic]:
    """A `null` in a JSON prompt is sent as null: usually a YAML slip, like
    `{background: oak table, soft light}` (a flow mapping reads `soft light` as a key)."""
    if isinstance(node, dict):
        return [d for key, value in node.items() for d in _null_leaves(loaded, (*path, key), value)]
    if isinstance(node, list):
        return [d for i, value in enumerate(node) for d in _null_leaves(loaded, (*path, i), value)]
    if node is not None:
        return []
    key = path[-1]
    hint = (f"a comma inside {{...}} starts a new key: quote a value that holds a comma, "
            f"or write `{key}: VALUE`" if isinstance(key, str) else
            "write a value, or remove the empty item")
    where = ".".join(str(p) for p in path[2 if path[0] == "templates" else 3:])
    diag = loaded.source.diagnostic(path, f"'{where}' is null in the JSON prompt of "
                                    f"{_describe(path)}: it will be sent as null", hint,
                                    at_key=isinstance(key, str))
    return [replace(diag, severity="warning")]


def _describe(path: Path) -> str:
    return f"template '{path[1]}'" if path[0] == "templates" else f"target '{path[1]}'"
