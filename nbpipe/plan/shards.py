"""Which frames a shard builds: `build --shard K/N` and `plan --shard K/N`.

The policy (README "Sharding a build across runners", docs/ci.md):

- Frames go to shards in whole groups. A group is a connected edit chain: a weakly connected
  component of the frame graph (a base, its edits, their edits, and any other base one of
  those edits takes). An edit's key hashes the bytes of its upstream's image, which no runner
  knows before that upstream renders, so the runner that renders an upstream must be the one
  that builds its edits. Frames that send the identical request (one frame key) are one
  group as well: within a build such a request is sent once, and so it is across shards.
- A group's shard is SHA-256 of its name modulo N, plus 1; its name is its root frames' names
  (the frames with no upstream frame), sorted. SHA-256, not Python's salted hash(): every
  runner of the matrix, whatever its machine or Python, computes the same shares. Names, not
  keys: editing a prompt never moves a frame to another runner (whose CI cache would not
  hold its earlier takes); renaming a base may. Adding or removing a group moves no other
  group.
- So the N shares of a selection are disjoint, cover it, and each is closed under upstreams
  (`select` already brought the upstreams of what it chose along).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

from nbpipe.plan import graph
from nbpipe.plan.frame import Frame
from nbpipe.settings import Shard


def shard_of(name: str, count: int) -> int:
    """The 1-based shard of `count` that the group named `name` goes to."""
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") % count + 1


def assign(dependencies: Mapping[str, Sequence[str]], keys: Mapping[str, str | None],
           count: int) -> dict[str, int]:
    """Each frame's 1-based shard of `count`: `dependencies` maps a frame to its upstream
    frames, `keys` a frame to its key (None while an upstream has not rendered)."""
    links = [(up, node) for node, ups in dependencies.items() for up in ups]
    first: dict[str, str] = {}
    for name, key in keys.items():
        if key is not None and first.setdefault(key, name) != name:
            links.append((first[key], name))
    shards: dict[str, int] = {}
    for group in graph.components(dependencies, links):
        roots = sorted(name for name in group if not dependencies.get(name))
        shards.update(dict.fromkeys(group, shard_of("\0".join(roots), count)))
    return shards


def numbers(frames: Mapping[str, Frame], total: int) -> dict[str, int]:
    """Each frame's 1-based shard of `total`; `frames`: every frame of the project, so the
    groups are the project's whatever was selected, and a frame's shard never depends on the
    command line's globs."""
    return assign({name: f.upstreams for name, f in frames.items()},
                  {name: f.key for name, f in frames.items()}, total)


def share(frames: Mapping[str, Frame], selected: list[Frame], shard: Shard | None,
          known: Mapping[str, int] | None = None) -> tuple[list[Frame], int]:
    """The frames of `selected` in `shard` (in their order), and how many of `selected` the
    other shards hold. `known`: `numbers(frames, shard.total)` if already made."""
    if shard is None:
        return selected, 0
    number = numbers(frames, shard.total) if known is None else known
    mine = [f for f in selected if number[f.name] == shard.number]
    return mine, len(selected) - len(mine)
