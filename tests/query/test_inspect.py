"""`takes` and `pin`: a take named by its number or by its digest as `takes` prints it."""

from __future__ import annotations

import re

import pytest

from nbpipe.errors import UsageError
from nbpipe.query.inspect import choose_take
from nbpipe.store.cache import Take

MANIFEST = """\
version: 1
defaults: {backend: hiapi, model: Nano-Banana, aspect_ratio: "1:1", output: "out/{frame}.{ext}"}
targets:
  hero: {prompt: a red kite over a beach}
"""


def take(digest: str) -> Take:
    return Take(digest, "hiapi", "Nano-Banana", "png", "0.05", 0.0)


TAKES = [take("2d3b76544487" + "0" * 52), take("2d3b76aaaaaa" + "1" * 52),
         take("9f00c0ffee00" + "2" * 52)]


@pytest.mark.parametrize("which,index", [("1", 0), ("3", 2), ("sha256:2d3b76544487", 0),
                                         ("2d3b76a", 1), ("SHA256:9F00C0", 2)])
def test_a_take_by_number_or_by_digest_as_takes_prints_it(which, index):
    assert choose_take(TAKES, which, "hero") is TAKES[index]


@pytest.mark.parametrize("which,message,hint", [
    ("sha256:2d3b76", "'sha256:2d3b76' matches 2 takes of hero: 1 sha256:2d3b765444870000, "
     "2 sha256:2d3b76aaaaaa1111", "give more digits, or the take's number"),
    ("sha256:abcdef12", "no take of hero has a digest starting with 'sha256:abcdef12'",
     "its takes: 1 sha256:2d3b76544487; 2 sha256:2d3b76aaaaaa; 3 sha256:9f00c0ffee00"),
    ("4", "'4' is neither a take number of hero (1 to 3) nor a digest prefix of 6 hex digits "
     "or more", "its takes: 1 sha256:2d3b76544487; 2 sha256:2d3b76aaaaaa; 3 sha256:9f00c0ffee00"),
    ("sha256:2d3", "'sha256:2d3' is neither a take number of hero (1 to 3) nor a digest prefix "
     "of 6 hex digits or more",
     "its takes: 1 sha256:2d3b76544487; 2 sha256:2d3b76aaaaaa; 3 sha256:9f00c0ffee00"),
])
def test_an_ambiguous_or_unknown_take_is_a_usage_error_naming_the_candidates(which, message,
                                                                             hint):
    with pytest.raises(UsageError) as raised:
        choose_take(TAKES, which, "hero")
    assert (str(raised.value), raised.value.hint) == (message, hint)


def test_pin_takes_the_digest_copied_from_takes(make_project, fake_hiapi, run):
    root = make_project(MANIFEST)
    assert run("-C", str(root), "build").code == 0
    assert run("-C", str(root), "build", "--force").code == 0
    listed = run("-C", str(root), "takes", "hero").out
    first = re.search(r"  1  (sha256:[0-9a-f]{12})  ", listed).group(1)
    result = run("-C", str(root), "pin", "hero", first)
    assert result.code == 0, result.err
    assert result.out == f"pinned hero to {first} and wrote out/hero.png\n"
    wrong = run("-C", str(root), "pin", "hero", "sha256:000000000000")
    assert wrong.code == 2
    assert wrong.err.startswith("error: no take of hero has a digest starting with "
                                "'sha256:000000000000'\nhint: its takes: 1 sha256:")
