"""What an edit of the manifest can reach: the targets to plan again, and those whose frames
the last complete build proved fresh and nothing since could have changed (the edit path).

A target's frames depend on its own entry, the entries it `extends`, everything outside
`targets:` (defaults, templates, bibles, profiles, pricing...) and the targets whose images
it takes (an edit is keyed on its upstream's pinned bytes), named by its inputs or its
bible's references. So each target gets a digest of its
entry with its `extends` chain, the manifest one digest of the rest, and a target is planned
again when its digest changed, when it is new, when an input reaches a target planned again
(transitively), or when what it reads cannot be told without planning (an input rendered
from a template, an input path that was not a file the last build read). The targets planned
again bring their upstreams along, fresh, since their keys hash the upstreams' pinned bytes.

Everything here is conservative: when in doubt a target is planned, and when the rest of the
manifest changed, or nothing would be left out, the whole project is (`None`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from nbpipe.plan.frame import Frame

ANY = "*"  # a dependency on whatever any target writes: planned whenever anything is


def _sha(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Digests:
    """The manifest split where an edit may reach: `context` (everything but `targets:`) and
    each target's entry with its `extends` chain."""

    context: str
    targets: dict[str, str]

    def as_json(self) -> dict[str, object]:
        return {"context": self.context, "targets": self.targets}

    @staticmethod
    def from_json(value: object) -> Digests | None:
        """As a fingerprint holds them; None when they are not there or not of this shape."""
        if not isinstance(value, dict):
            return None
        context, targets = value.get("context"), value.get("targets")
        if not isinstance(context, str) or not isinstance(targets, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in targets.items()):
            return None
        return Digests(context, dict(targets))


def _entries(data: Mapping[str, Any]) -> dict[str, Any]:
    targets = data.get("targets")
    return dict(targets) if isinstance(targets, Mapping) else {}


def digests(data: Mapping[str, Any]) -> Digests:
    """The digests of a manifest's plain data (manifest.load.Loaded.data)."""
    entries = _entries(data)
    done: dict[str, str] = {}

    def of(name: str, seen: tuple[str, ...] = ()) -> str:
        if name not in done:
            entry = entries.get(name)
            parent = entry.get("extends") if isinstance(entry, Mapping) else None
            # a cycle or an unknown parent is the planner's error to report; digested as written
            inherited = of(parent, (*seen, name)) if isinstance(parent, str) and \
                parent in entries and parent not in (*seen, name) else None
            done[name] = _sha([entry, inherited])
        return done[name]

    context = _sha({k: v for k, v in data.items() if k != "targets"})
    return Digests(context, {name: of(name) for name in entries})


def _inputs_of(entry: Any) -> list[str]:
    """The input strings a target entry declares, its variants' too."""
    if not isinstance(entry, Mapping):
        return []
    found = list(entry.get("inputs") or [])
    variants = entry.get("variants")
    for variant in variants.values() if isinstance(variants, Mapping) else ():
        if isinstance(variant, Mapping):
            found += list(variant.get("inputs") or [])
    return found


def _templated(text: str) -> bool:
    return "{{" in text or "{%" in text


def _references_of(data: Mapping[str, Any], entry: Any) -> list[str]:
    """The reference images of the bible a target entry names (plan/inputs.py sends them
    after its inputs: a frame's output among them is an edge, as an input is)."""
    bibles = data.get("bibles")
    name = entry.get("bible") if isinstance(entry, Mapping) else None
    bible = bibles.get(name) if isinstance(bibles, Mapping) and isinstance(name, str) else None
    refs = bible.get("references") if isinstance(bible, Mapping) else None
    return list(refs) if isinstance(refs, list) else []


def _images(data: Mapping[str, Any], entry: Any) -> list[Any]:
    """Every image a target entry names: its inputs and its bible's references."""
    return [*_inputs_of(entry), *_references_of(data, entry)]


def needs(data: Mapping[str, Any], reads: Collection[str]) -> dict[str, set[str]]:
    """Each target → the targets its frames may take an input from (ANY: cannot be told
    without planning). `reads` are the project files the last complete build hashed into keys:
    an input path among them was a file then; any other path may be a frame's output."""
    entries = _entries(data)
    own: dict[str, set[str]] = {}
    for name, entry in entries.items():
        found = own[name] = set()
        for ref in _images(data, entry):
            if isinstance(ref, str) and ref.startswith(("https://", "http://")):
                continue  # a URL is keyed on its text, never on a frame
            head = ref.split("/")[0] if isinstance(ref, str) else ""
            if not isinstance(ref, str) or _templated(head):
                found.add(ANY)
            elif head in entries:
                found.add(head)
            elif _templated(ref) or ref not in reads:
                found.add(ANY)
    return {name: _inherited(name, entries, own) for name in entries}


def _inherited(name: str, entries: Mapping[str, Any], own: Mapping[str, set[str]]) -> set[str]:
    """A target's needs with those of the targets it extends (it inherits their inputs)."""
    found: set[str] = set()
    seen: set[str] = set()
    while name in entries and name not in seen:
        seen.add(name)
        found |= own[name]
        entry = entries[name]
        parent = entry.get("extends") if isinstance(entry, Mapping) else None
        name = parent if isinstance(parent, str) else ""
    return found


def reach(data: Mapping[str, Any], before: Digests,
          reads: Collection[str]) -> frozenset[str] | None:
    """The targets to plan after an edit of the manifest (`before`: the digests of the last
    complete build, `reads` its project files); None: plan them all."""
    now = digests(data)
    if now.context != before.context:
        return None
    wanted = needs(data, reads)
    removed = set(before.targets) - set(now.targets)  # what took their images must say so
    changed = {name for name, digest in now.targets.items() if before.targets.get(name) != digest}
    again = _dependants(changed | removed, wanted)
    planned = _upstreams(again, wanted)
    if planned is None or len(planned - removed) >= len(now.targets):
        return None
    return frozenset(planned - removed)


def _dependants(changed: set[str], wanted: Mapping[str, set[str]]) -> set[str]:
    """The changed targets and every target whose inputs reach one of them."""
    again = set(changed)
    grew = bool(again)
    while grew:
        grew = False
        for name, needed in wanted.items():
            if name not in again and (needed & again or (ANY in needed and again)):
                again.add(name)
                grew = True
    return again


def _upstreams(again: set[str], wanted: Mapping[str, set[str]]) -> set[str] | None:
    """`again` with every target its frames take inputs from; None if that is every target."""
    planned = set(again)
    todo = list(again)
    while todo:
        needed = wanted.get(todo.pop(), set())
        if ANY in needed:
            return None
        for name in needed - planned:
            planned.add(name)
            todo.append(name)
    return planned


def reached(data: Mapping[str, Any], since: Mapping[str, object] | None,
            section: str | None) -> frozenset[str] | None:
    """The targets an edit since the fingerprint `since` can reach, planning into the lock
    section `section` (None: plan them all: no fingerprint of this shape, another section,
    or a last plan that warned, since the whole plan says its warnings on every build)."""
    recorded = since.get("reach") if since is not None else None
    before = Digests.from_json(recorded)
    reads = since.get("inputs") if since is not None else None
    if before is None or not isinstance(recorded, dict) or not isinstance(reads, dict) or \
            recorded.get("warned") is not False or recorded.get("section", "?") != section:
        return None
    return reach(data, before, set(reads))


def carries(data: Mapping[str, Any], only: frozenset[str], planned: Iterable[Frame],
            since: Mapping[str, object]) -> bool:
    """Whether the frames of the targets outside `only` may be carried once those in it are
    `planned`: no file one side reads is a file the other side writes (under any image
    extension), which the whole plan would make an edge to its writer, keyed on its image."""
    frames = list(planned)
    written = {stem(f.output) for f in frames}
    entries = _entries(data)
    if any(stem(os.path.normpath(ref)) in written for name, entry in entries.items()
           if name not in only for ref in _images(data, entry) if isinstance(ref, str)):
        return False
    outputs = since.get("outputs")
    pinned = {stem(o) for o in outputs if isinstance(o, str)} if isinstance(outputs, list) \
        else set()
    return not any(image.kind == "file" and stem(image.ref) in pinned
                   for frame in frames for image in frame.inputs)


def stem(path: str) -> str:
    """A path without its extension: one file to the planner under any image extension."""
    return path.rpartition(".")[0] if "." in path.rpartition("/")[2] else path
