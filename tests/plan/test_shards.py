"""Which frames a shard builds (nbpipe/plan/shards.py): stable, edit chains whole, and the N
shares of any frame graph disjoint and covering it."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nbpipe.plan.frame import Frame, InputImage
from nbpipe.plan.shards import assign, shard_of, share
from nbpipe.settings import Shard


def frame(name: str, ups: tuple[str, ...] = (), key: str | None = None) -> Frame:
    inputs = tuple(InputImage("frame", up, None) for up in ups)
    return Frame(name=name, target=name.partition("/")[0], backend="preview", model="m",
                 parts=(name,), params={}, inputs=inputs, output=f"out/{name}.png",
                 cost=Decimal(0), key=key if ups == () else None)


@st.composite
def graphs(draw) -> dict[str, Frame]:
    """A frame graph: frames in build order, each edit taking 1-3 earlier frames; some bases
    send the same request as another (one key)."""
    count = draw(st.integers(1, 40))
    frames: dict[str, Frame] = {}
    keys = [f"k{i}" for i in range(draw(st.integers(1, count)))]
    for i in range(count):
        name = f"f{i}"
        ups = ()
        if frames and draw(st.booleans()):
            ups = tuple(sorted(set(draw(st.lists(st.sampled_from(list(frames)), min_size=1,
                                                 max_size=3)))))
        frames[name] = frame(name, ups, draw(st.sampled_from(keys)) if not ups else None)
    return frames


def groups_of(frames: dict[str, Frame]) -> list[set[str]]:
    """The groups by hand (union-find), not through graph.py: edits join their inputs, and
    one key joins its frames."""
    parent = {name: name for name in frames}

    def find(name: str) -> str:
        while parent[name] != name:
            name = parent[name]
        return name

    by_key: dict[str, str] = {}
    for name, f in frames.items():
        for up in f.upstreams:
            parent[find(up)] = find(name)
        if f.key is not None:
            parent[find(by_key.setdefault(f.key, name))] = find(name)
    out: dict[str, set[str]] = {}
    for name in frames:
        out.setdefault(find(name), set()).add(name)
    return list(out.values())


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(graphs(), st.integers(1, 5))
def test_shares_are_disjoint_cover_everything_and_keep_groups_whole(frames, total):
    everything = list(frames.values())
    shares = [share(frames, everything, Shard(k, total)) for k in range(1, total + 1)]
    names = [[f.name for f in mine] for mine, _ in shares]
    assert sorted(n for ns in names for n in ns) == sorted(frames)  # covering, no frame twice
    for (mine, others), ns in zip(shares, names, strict=True):
        assert others == len(frames) - len(mine)
        assert ns == [n for n in frames if n in set(ns)]  # in build order
        for n in ns:  # closed under upstreams: no shard waits on another's image
            assert set(frames[n].upstreams) <= set(ns)
    where = {n: k for k, ns in enumerate(names) for n in ns}
    for group in groups_of(frames):
        assert len({where[n] for n in group}) == 1, group


@settings(max_examples=100, deadline=None, derandomize=True, database=None)
@given(graphs(), st.integers(1, 5), st.randoms(use_true_random=False))
def test_the_assignment_is_stable(frames, total, rnd):
    deps = {n: f.upstreams for n, f in frames.items()}
    keys = {n: f.key for n, f in frames.items()}
    first = assign(deps, keys, total)
    order = list(frames)
    rnd.shuffle(order)  # another order of the same graph: the same shares
    assert assign({n: deps[n] for n in order}, {n: keys[n] for n in order}, total) == first
    # a new group moves nothing else
    grown = {**deps, "zz-new": (), "zz-edit": ("zz-new",)}
    again = assign(grown, {**keys, "zz-new": "a-key-of-its-own"}, total)
    assert {n: again[n] for n in deps} == first


def test_a_group_is_named_by_its_roots_so_the_shares_do_not_drift():
    # pinned: every runner, on any machine or Python (no salted hash()), agrees; a change
    # here moves frames between the runners of a matrix whose jobs run two nbpipe versions
    assert {name: shard_of(name, 5) for name in ("a", "b", "c", "shoe/red", "a\0b")} == \
        {"a": 1, "b": 2, "c": 1, "shoe/red": 3, "a\0b": 3}
    script = "from nbpipe.plan.shards import shard_of; print(shard_of('shoe/red', 5))"
    for seed in ("1", "2"):
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                              env={**os.environ, "PYTHONHASHSEED": seed}, check=True)
        assert done.stdout == "3\n"


def test_an_edit_chain_follows_its_bases_and_a_shared_key_joins_frames():
    frames = {"a": frame("a", key="ka"), "b": frame("b", key="kb"),
              "ab": frame("ab", ("a", "b")), "ab2": frame("ab2", ("ab",)),
              "twin": frame("twin", key="ka"), "lone": frame("lone", key="kl")}
    shards = assign({n: f.upstreams for n, f in frames.items()},
                    {n: f.key for n, f in frames.items()}, 1000)
    assert len({shards[n] for n in ("a", "b", "ab", "ab2", "twin")}) == 1
    # the group's name: its roots' names, sorted
    assert shards["a"] == shard_of("a\0b\0twin", 1000)
    assert shards["lone"] == shard_of("lone", 1000)


def test_no_shard_is_everything():
    frames = {"a": frame("a", key="k")}
    assert share(frames, list(frames.values()), None) == (list(frames.values()), 0)


def test_a_selection_keeps_the_project_s_groups():
    frames = {f"s{i}": frame(f"s{i}", key=f"k{i}") for i in range(30)}
    chosen = [frames["s3"], frames["s7"]]
    whole = {f.name: k for k in (1, 2, 3)
             for f in share(frames, list(frames.values()), Shard(k, 3))[0]}
    for k in (1, 2, 3):
        mine, others = share(frames, chosen, Shard(k, 3))
        assert [f.name for f in mine] == [f.name for f in chosen if whole[f.name] == k]
        assert others == 2 - len(mine)


@pytest.mark.parametrize("total", [2, 3, 5])
def test_many_groups_spread_over_every_shard(total):
    rnd = random.Random(7)
    names = [f"frame-{rnd.getrandbits(32):08x}" for _ in range(600)]
    counts = [sum(1 for n in names if shard_of(n, total) == k) for k in range(1, total + 1)]
    assert min(counts) > 600 / total * 0.7, counts
