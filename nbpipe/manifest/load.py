"""Read nbpipe.yaml: YAML 1.2 with positions, bounded expansion, then the pydantic models.

YAML 1.2 matters: under YAML 1.1 an unquoted `16:9` is the sexagesimal integer 969.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import shlex
from dataclasses import dataclass, replace
from pathlib import Path as FsPath
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedOrderedMap
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import CollectionNode, MappingNode, Node

from nbpipe.errors import Diagnostic, ManifestError
from nbpipe.manifest import yaml_hints
from nbpipe.manifest.models import ALLOWED_KEYS, Manifest
from nbpipe.manifest.source import Path, SourceMap, describe, did_you_mean
from nbpipe.projectfile import MANIFEST_CAP, FileRefused, read_inside

MANIFEST_NAME = "nbpipe.yaml"
MAX_VALUES = 1_000_000  # alias bombs expand to billions of values; real manifests hold thousands
MAX_DEPTH = 64
MAX_TEXT = 32 << 20  # characters of text after aliases: a 1 MB string aliased a million times
_LONG_NUMBER = re.compile(r"[-+]?\d{4000,}")
_PLAIN_TAGS = {None, "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"}


@dataclass(frozen=True)
class Loaded:
    """A validated manifest, the plain data it came from, and where everything was written."""

    manifest: Manifest
    data: dict[str, Any]
    source: SourceMap
    root: FsPath  # the project directory
    text: str
    # With `partial`: errors inside some targets, which were left out so that the rest can
    # still be checked in the same pass; whoever expands the manifest must report them.
    diags: tuple[Diagnostic, ...] = ()
    broken_targets: frozenset[str] = frozenset()
    digest: str = ""  # SHA-256 of the file's bytes as read (what the no-op fingerprint holds)


def load_manifest(root: FsPath, name: str = MANIFEST_NAME, partial: bool = False) -> Loaded:
    """Read and validate `root/name`; errors name the file as the user would type it.
    A manifest that leads out of the project (a symbolic link), is not a regular file or is
    larger than MANIFEST_CAP is refused unread: its lines are never quoted (SECURITY.md)."""
    path = root / name
    label = name if str(root) in (".", "") else str(path)
    try:
        raw = read_inside(root, path, MANIFEST_CAP)
    except FileRefused as exc:
        raise ManifestError([Diagnostic(label, 0, 0, f"not read: it {exc}",
                                        "nbpipe reads only a regular file inside the project "
                                        "as its manifest")]) from None
    except FileNotFoundError:
        # The hint's init must land where the manifest was looked for, not in the shell's cwd.
        hint = "run `nbpipe init` to start a project here, or `nbpipe -C DIR` to use one " \
            "elsewhere" if label == name else \
            f"run `nbpipe -C {shlex.quote(str(root))} init` to start a project there"
        raise ManifestError([Diagnostic(label, 0, 0, "no such file", hint)]) from None
    except OSError as exc:
        raise ManifestError([Diagnostic(label, 0, 0, f"cannot read it: {exc.strerror}")]) from None
    loaded = parse_manifest(_decode(raw, label), root, label, partial)
    return replace(loaded, digest=hashlib.sha256(raw).hexdigest())


def parse_manifest(text: str, root: FsPath, name: str = MANIFEST_NAME,
                   partial: bool = False) -> Loaded:
    source = SourceMap(name, text)
    doc = _parse_yaml(text, source)
    data = _Plain(source).convert(doc)
    if not isinstance(data, dict):
        raise ManifestError([source.at(1, 1, "the manifest must be a mapping of keys",
                                       "start with `version: 1`")])
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as exc:
        diags = _translate(exc, data, source)
        salvaged = _without_broken_targets(exc, data) if partial else None
        if salvaged is None:
            raise ManifestError(diags) from None
        manifest, broken = salvaged
        return Loaded(manifest, data, source, root, text, tuple(diags), broken)
    return Loaded(manifest, data, source, root, text)


def _without_broken_targets(exc: ValidationError,
                            data: dict[str, Any]) -> tuple[Manifest, frozenset[str]] | None:
    """(the manifest without the targets that failed validation, their names), when every
    error lies inside a target: the other targets can then be checked in the same pass."""
    broken = set()
    for error in exc.errors(include_url=False):
        loc = error["loc"]
        if len(loc) < 2 or loc[0] != "targets" or not isinstance(data.get("targets"), dict):
            return None
        broken.add(str(loc[1]))
    rest = {**data, "targets": {k: v for k, v in data["targets"].items() if k not in broken}}
    try:
        return Manifest.model_validate(rest), frozenset(broken)
    except ValidationError:
        return None


def _decode(raw: bytes, name: str) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        diag = Diagnostic(name, line, col, "the manifest is not valid UTF-8 text",
                          f"byte 0x{raw[exc.start]:02x} cannot start a character")
        raise ManifestError([diag]) from None


_DUPLICATE = re.compile(r'found duplicate key "(.*)" with value')


def _parse_yaml(text: str, source: SourceMap) -> Any:
    try:
        return YAML(typ="rt", pure=True).load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        dup = _DUPLICATE.search(exc.problem or "")
        if dup:
            first = exc.context_mark.line + 1 if exc.context_mark else None
            hint = f"the mapping starts at line {first}" if first else None
            raise ManifestError([source.at(line, col, f"duplicate key '{dup.group(1)}'",
                                           hint)]) from None
        problem = (exc.problem or "invalid YAML").strip()
        context = exc.context_mark.line + 1 if exc.context_mark else None
        said = yaml_hints.explain(problem, line, col, context, source.lines)
        hint = said.hint
        if hint is None and exc.context and exc.context_mark and exc.context_mark is not mark:
            hint = f"{exc.context.strip()} (line {context})"
        raise ManifestError([source.at(said.line, said.col, said.message, hint)]) from None
    except YAMLError as exc:
        raise ManifestError([source.at(0, 0, f"YAML syntax: {exc}")]) from None
    except RecursionError:
        raise ManifestError([source.at(0, 0, "the manifest is nested too deeply")]) from None
    except TypeError as exc:  # ruamel hashes a key: `? [a, [b]]` or `{{x: [y]}: 1}` is none
        if "unhashable" not in str(exc):
            raise
        line, col = _nested_key(text)
        raise ManifestError([source.at(line, col, "a mapping key holds a list or mapping",
                                       "keys are names. A value that starts with `{` or `[` "
                                       "is a YAML mapping or list: quote it if it is text, "
                                       "e.g. \"{{ name }} at dusk\"")]) from None
    except ValueError as exc:  # Python refuses to read an integer of more than 4,300 digits
        long = _LONG_NUMBER.search(text)
        if long is None:
            raise ManifestError([source.at(0, 0, f"YAML value refused: {exc}")]) from None
        line = text.count("\n", 0, long.start()) + 1
        col = long.start() - (text.rfind("\n", 0, long.start()) + 1) + 1
        raise ManifestError([source.at(line, col, f"a number of {len(long.group()):,} digits",
                                       "quote it if it is text; no setting takes a number "
                                       "that large")]) from None


def _nested_key(text: str) -> tuple[int, int]:
    """Where (1-based) the first mapping key that holds a list or mapping starts; (0, 0) when
    none is found. Composing makes nodes only: aliases stay references, nothing is hashed."""
    try:
        root = YAML(typ="rt", pure=True).compose(text)
    except YAMLError:
        return 0, 0
    seen: set[int] = set()
    stack: list[Node] = [root] if root is not None else []
    while stack:
        node = stack.pop()
        if id(node) in seen or not isinstance(node, CollectionNode):
            continue
        seen.add(id(node))
        if isinstance(node, MappingNode):
            for key, _ in node.value:
                if isinstance(key, CollectionNode) and \
                        any(isinstance(c, CollectionNode) for c in _members(key)):
                    return key.start_mark.line + 1, key.start_mark.column + 1
        stack.extend(reversed(_members(node)))
    return 0, 0


def _members(node: CollectionNode) -> list[Node]:
    if isinstance(node, MappingNode):
        return [c for pair in node.value for c in pair]
    return list(node.value)


class _Plain:
    """ruamel's round-trip nodes → plain dicts/lists/scalars, recording positions on the way.

    Aliases are expanded here, with a budget, so an alias bomb is refused instead of eating memory.
    """

    source: SourceMap
    count: int  # values so far, counting each alias again
    text: int

    def __init__(self, source: SourceMap) -> None:
        self.source = source
        self.count = 0
        self.text = 0  # characters of text so far, counting each alias again

    def convert(self, node: Any, path: Path = (), depth: int = 0) -> Any:
        self.count += 1
        if self.count > MAX_VALUES:
            raise ManifestError([self.source.diagnostic(
                path, f"the manifest expands to more than {MAX_VALUES:,} values",
                "YAML anchors and aliases multiply; write the values out or use a matrix")])
        if depth > MAX_DEPTH:
            raise ManifestError([self.source.diagnostic(
                path, f"the manifest is nested more than {MAX_DEPTH} levels deep")])
        tag = getattr(getattr(node, "tag", None), "value", None)
        if isinstance(node, (dict, list)) and tag not in _PLAIN_TAGS \
                or isinstance(node, (set, CommentedOrderedMap)):
            raise ManifestError([self.source.diagnostic(
                path, f"YAML tag '{_short_tag(tag, node)}' is not supported",
                "use plain strings, numbers, booleans, lists and mappings (mappings keep their "
                "order)")])
        if isinstance(node, dict):
            return self._mapping(node, path, depth)
        if isinstance(node, list):
            return self._sequence(node, path, depth)
        return self._scalar(node, path)

    def _mapping(self, node: Any, path: Path, depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        lc = getattr(node, "lc", None)
        for key, value in node.items():
            name = self._text(_key_text(key), path)
            child = (*path, name)
            if name in out:  # `1:` and `'1':` are two YAML keys but one name
                line, col = _position(lc.key, key, lc) if lc is not None else (-1, -1)
                raise ManifestError([self.source.at(line + 1, col + 1, f"duplicate key '{name}'",
                                                    "a number and a quoted string of the same "
                                                    "text name the same thing here")])
            if lc is not None:
                # A key merged in with `<<: *anchor` has no position of its own: it is then
                # located at the mapping it was merged into.
                kl, kc = _position(lc.key, key, lc)
                vl, vc = _position(lc.value, key, lc)
                self.source.keys.setdefault(child, (kl + 1, kc + 1))
                self.source.values.setdefault(child, (vl + 1, vc + 1))
            out[name] = self.convert(value, child, depth + 1)
        return out

    def _sequence(self, node: Any, path: Path, depth: int) -> list[Any]:
        out = []
        lc = getattr(node, "lc", None)
        for index, value in enumerate(node):
            child = (*path, index)
            if lc is not None:
                line, col = _position(lc.item, index, lc)
                self.source.values.setdefault(child, (line + 1, col + 1))
            out.append(self.convert(value, child, depth + 1))
        return out

    def _scalar(self, node: Any, path: Path) -> Any:
        if node is None or isinstance(node, bool):
            return node
        if isinstance(node, int):
            return int(node)
        if isinstance(node, float):
            return float(node)
        if isinstance(node, str):
            self.text += len(node)
            if self.text > MAX_TEXT:
                raise ManifestError([self.source.diagnostic(
                    path, f"the manifest expands to more than {MAX_TEXT:,} characters of text",
                    "YAML aliases repeat their text; write long text once")])
            return self._text(str(node), path)
        if isinstance(node, (dt.date, dt.datetime)):
            return node.isoformat()
        raise ManifestError([self.source.diagnostic(
            path, f"unsupported YAML value of type {type(node).__name__}",
            "use plain strings, numbers, booleans, lists and mappings")])


    def _text(self, text: str, path: Path) -> str:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise ManifestError([self.source.diagnostic(
                path, "a string holds an unpaired surrogate escape (like \\ud800)",
                "write the character itself, or a valid \\U0001F600-style escape")]) from None
        return text


def _position(lookup: Any, item: Any, lc: Any) -> tuple[int, int]:
    try:
        found = lookup(item)
    except (KeyError, IndexError, TypeError):
        found = None
    return tuple(found) if isinstance(found, (tuple, list)) and len(found) == 2 \
        else (lc.line or 0, lc.col or 0)


def _short_tag(tag: str | None, node: Any) -> str:
    if tag is None:
        return "!!omap" if isinstance(node, CommentedOrderedMap) else f"!!{type(node).__name__}"
    return tag.replace("tag:yaml.org,2002:", "!!")


def _key_text(key: Any) -> str:
    if isinstance(key, bool):
        return "true" if key else "false"
    return "null" if key is None else str(key)


# --- pydantic errors → located diagnostics --------------------------------------------------

_TYPE_NAMES = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean",
               int: "a number", float: "a number", type(None): "nothing (null)"}
_EXPECTED = {
    "string_type": "a string", "dict_type": "a mapping", "list_type": "a list",
    "int_type": "a whole number", "int_parsing": "a whole number", "float_type": "a number",
    "float_parsing": "a number", "bool_type": "true or false", "model_type": "a mapping",
    "model_attributes_type": "a mapping", "greater_than_equal": "a number ≥ 0",
    "greater_than": "a number > 0",
}


_RANGES = ("greater_than_equal", "greater_than", "less_than_equal", "less_than")
_SCALAR_TAGS = {"str": str, "int": int, "float": float, "bool": bool}


def _branch_fits(tag: str, node: Any) -> bool:
    """Does the union member named `tag` (pydantic's loc entry) match the value's shape?"""
    tag = tag.removeprefix("constrained-")  # a number with bounds, e.g. a price
    if tag in _SCALAR_TAGS:
        return isinstance(node, _SCALAR_TAGS[tag]) \
            and not (tag != "bool" and isinstance(node, bool))
    if tag.startswith("list["):
        return isinstance(node, list)
    return isinstance(node, dict)  # dict[...] or a model name


def _is_tag(part: str, node: Any) -> bool:
    if isinstance(node, dict) and part in node:
        return False
    tag = part.removeprefix("constrained-")
    return tag in _SCALAR_TAGS or "[" in part or part[:1].isupper()


def _walk(data: Any, loc: tuple[str | int, ...]) -> tuple[Path, Path | None, bool]:
    """Follow a pydantic loc through the data.

    Returns the path it names, the path of the union it went through (if any), and whether
    the union member it took fits the value's shape (pydantic reports every member's failure).
    """
    path: list[str | int] = []
    node: Any = data
    union_at, fits = None, True
    for part in loc:
        if isinstance(part, str) and _is_tag(part, node):
            if union_at is None:
                union_at, fits = tuple(path), _branch_fits(part, node)
            continue
        path.append(part)
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            break  # a missing or an extra key: the path ends here
    return tuple(path), union_at, fits


def _kind(path: Path) -> str:
    if not path:
        return "manifest"
    if path == ("defaults",):
        return "defaults"
    if path[0] == "targets":
        return "variant" if len(path) == 4 and path[2] == "variants" else "target"
    if path[0] == "bibles":
        return "bible"
    if path[0] == "limits" and len(path) == 2:
        return "limits"
    if path[0] == "profiles" and len(path) == 2:
        return "profile"
    if path == ("cache",):
        return "cache"
    return ""


def _translate(exc: ValidationError, data: dict[str, Any],
               source: SourceMap) -> list[Diagnostic]:
    walked = [(error, *_walk(data, error["loc"])) for error in exc.errors(include_url=False)]
    # Where some union member fits the value, the other members' complaints are noise.
    fitting = {union for _, _, union, fits in walked if union is not None and fits}
    by_path: dict[Path, list[ErrorDetails]] = {}
    for error, path, union, fits in walked:
        if union in fitting and not fits:
            continue
        by_path.setdefault(path, []).append(error)
    return [_one(path, errors, source) for path, errors in by_path.items()]


def _one(path: Path, errors: list[ErrorDetails], source: SourceMap) -> Diagnostic:
    error = errors[0]
    kind = error["type"]
    parent, key = path[:-1], path[-1] if path else None
    if kind == "extra_forbidden":
        kind = _kind(parent)
        hint = did_you_mean(key, ALLOWED_KEYS.get(kind, ()))
        if hint is None and kind in ("target", "variant"):
            # Most often a template variable that slipped out of the `vars:` block above it.
            hint = f"if '{key}' is a template variable, indent it under `vars:`"
        return source.diagnostic(path, f"unknown key '{key}' in {describe(parent)}", hint,
                                 at_key=True)
    if kind == "missing":
        return source.diagnostic(parent, f"{describe(parent)} is missing the required key '{key}'",
                                 at_key=True)
    if kind == "literal_error" and path == ("version",):
        return source.diagnostic(path, f"unsupported manifest version {error['input']!r}",
                                 "this nbpipe reads `version: 1`")
    if kind == "too_short" and len(path) >= 2 and path[-2] == "matrix":
        return source.diagnostic(path, f"matrix axis '{key}' has no values",
                                 "give at least one value, or remove the axis")
    if kind == "greater_than" and path == ("max_frames",):
        return source.diagnostic(path, "max_frames must be a positive whole number")
    if kind == "less_than_equal" and path == ("max_frames",):
        return source.diagnostic(path, "max_frames may be at most 10,000,000",
                                 "a build that large needs splitting into projects")
    expected = sorted({_EXPECTED.get(e["type"], "") for e in errors} - {""})
    got = _TYPE_NAMES.get(type(error["input"]), type(error["input"]).__name__)
    if kind in _RANGES and isinstance(error["input"], (int, float)):
        got = repr(error["input"])  # the right type, out of range: say which value
    if expected:
        want = " or ".join(expected)
        slip = yaml_hints.missing_colon(error["input"]) if "a mapping" in expected and \
            isinstance(error["input"], str) else None
        hint = f"'{slip[0]}' has no ':' after it: write `{slip[1]}`" \
            if slip and slip[0] in ALLOWED_KEYS.get(_kind(path), ()) else None
        return source.diagnostic(path, f"'{key}' in {describe(parent)} must be {want}, not {got}",
                                 hint)
    return source.diagnostic(path, f"'{key}' in {describe(parent)}: {error['msg']}")
