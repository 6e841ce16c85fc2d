"""What an edit of the manifest can reach (plan/reach.py): the targets planned again."""

from __future__ import annotations

import copy

from nbpipe.plan.reach import ANY, Digests, digests, needs, reach

BASE = {
    "version": 1,
    "defaults": {"backend": "preview"},
    "targets": {
        "tile": {"prompt": "a tile {{ a }}", "matrix": {"a": ["x", "y"]}},
        "hero": {"prompt": "a hero"},
        "hero-wide": {"extends": "hero", "aspect_ratio": "16:9"},
        "edit": {"inputs": ["hero"], "prompt": "golden hour"},
        "edit2": {"inputs": ["edit/"], "prompt": "night"},
        "lone": {"prompt": "alone", "inputs": ["refs/a.png"]},
    },
}
READS = {"refs/a.png"}


def edited(**targets: object) -> dict:
    data = copy.deepcopy(BASE)
    for name, entry in targets.items():
        if entry is None:
            del data["targets"][name]
        else:
            data["targets"][name] = entry
    return data


def test_nothing_changed_plans_nothing():
    assert reach(BASE, digests(BASE), READS) == frozenset()


def test_an_edited_target_brings_its_dependants_and_their_upstreams():
    data = edited(hero={"prompt": "a hero, v2"})
    # hero-wide extends it, edit takes its image, edit2 takes edit's: all planned, tile carried
    assert reach(data, digests(BASE), READS) == {"hero", "hero-wide", "edit", "edit2"}


def test_an_edited_edit_plans_its_upstream_fresh_too():
    data = edited(edit2={"inputs": ["edit/"], "prompt": "night, v2"})
    assert reach(data, digests(BASE), READS) == {"edit2", "edit", "hero"}


def test_a_new_target_alone():
    data = edited(new={"prompt": "new"})
    assert reach(data, digests(BASE), READS) == {"new"}


def test_a_removed_target_plans_nothing_but_is_not_carried():
    data = edited(lone=None)
    assert reach(data, digests(BASE), READS) == frozenset()


def test_anything_outside_targets_plans_everything():
    data = copy.deepcopy(BASE)
    data["defaults"]["aspect_ratio"] = "3:2"
    assert reach(data, digests(BASE), READS) is None


def test_a_rendered_input_or_an_unknown_path_cannot_be_told():
    templated = edited(lone={"prompt": "alone", "inputs": ["{{ which }}/x"]})
    assert needs(templated, READS)["lone"] == {ANY}
    output = edited(lone={"prompt": "alone", "inputs": ["out/hero.png"]})  # not a file read
    assert needs(output, READS)["lone"] == {ANY}
    assert needs(BASE, READS)["lone"] == set()  # a file the last build read


def test_a_target_that_cannot_be_told_plans_everything_once_anything_changed():
    data = edited(lone={"prompt": "alone", "inputs": ["out/hero.png"]},
                  hero={"prompt": "a hero, v2"})
    assert reach(data, digests(BASE), READS) is None


def test_variant_inputs_count():
    data = edited(lone={"prompt": "alone", "variants": {"v": {"inputs": ["tile/x"]}}})
    assert needs(data, READS)["lone"] == {"tile"}


def test_everything_planned_is_the_whole_plan():
    data = {"version": 1, "targets": {"only": {"prompt": "v2"}}}
    before = digests({"version": 1, "targets": {"only": {"prompt": "v1"}}})
    assert reach(data, before, set()) is None


def test_the_order_of_a_json_prompt_is_part_of_a_target():
    one = {"version": 1, "targets": {"a": {"prompt": {"x": 1, "y": 2}}, "b": {"prompt": "b"}}}
    two = {"version": 1, "targets": {"a": {"prompt": {"y": 2, "x": 1}}, "b": {"prompt": "b"}}}
    assert digests(one).targets["a"] != digests(two).targets["a"]
    assert reach(two, digests(one), set()) == {"a"}


def test_an_extends_cycle_is_digested_not_followed_forever():
    data = {"version": 1, "targets": {"a": {"extends": "b"}, "b": {"extends": "a"}}}
    assert set(digests(data).targets) == {"a", "b"}
    assert needs(data, set()) == {"a": set(), "b": set()}


def test_digests_round_trip_and_refuse_other_shapes():
    found = digests(BASE)
    assert Digests.from_json(found.as_json()) == found
    for bad in (None, [], {"context": 1, "targets": {}}, {"context": "x", "targets": {"a": 2}}):
        assert Digests.from_json(bad) is None


def test_a_removed_upstream_plans_its_dependants():
    """`edit` took hero's image: with hero gone it must be planned, to say so (an error)."""
    data = edited(hero=None, **{"hero-wide": None})
    assert needs(data, READS)["edit"] == {ANY}  # `hero` is now a path no build read
    assert reach(data, digests(BASE), READS) is None
