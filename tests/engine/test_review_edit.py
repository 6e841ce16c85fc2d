"""Review of the edit path (branch `edit`): cases where it ends otherwise than the whole plan.

Each test uses the twin projects of tests/engine/test_edit_path.py: `fast` builds as a user
does (the edit path whenever the fingerprint allows it), `whole` forgets its fingerprint before
every build and so plans every frame. They must agree on what is said, the lock and the images.
"""

from __future__ import annotations

import copy

from tests.engine.test_edit_path import DEFAULTS, Twins, twins  # noqa: F401 (a fixture)


def _portrait_built(twins: Twins, reference: str) -> dict:
    """A portrait under a bible that references `reference`, built once; the data to edit."""
    data = _base()
    data["bibles"] = {"face": {"text": "a face", "references": [reference]}}
    data["targets"]["portrait"] = {"prompt": "a portrait v0", "bible": "face"}
    twins.write(data)
    twins.build_and_compare("first")
    return copy.deepcopy(data)


def _hero_edited_under_a_bible_reference(twins: Twins) -> None:
    """A bible references hero's output; built once, then hero's prompt edited."""
    data = _portrait_built(twins, "out/hero.png")
    data["targets"]["hero"]["prompt"] = "a hero v1"
    twins.write(data)


def _base() -> dict:
    return {"version": 1, "defaults": dict(DEFAULTS), "targets": {
        "hero": {"prompt": "a hero v0"},
        "other": {"prompt": "something else v0"},
    }}


def test_a_bible_reference_to_a_frame_output_is_an_edge_the_edit_path_misses(twins: Twins):
    """A bible's `references` may name a frame's output: the whole plan makes that an edge
    (plan/inputs.py _file_input), so a target using the bible is keyed on the upstream's pinned
    image. reach.needs() reads only `inputs`, so after an edit of the upstream the bible user
    is carried, said fresh, with the old key."""
    _hero_edited_under_a_bible_reference(twins)
    twins.build_and_compare("the bible's referenced frame edited")



def test_a_file_read_no_more_stays_a_file_for_the_reach_after_a_frame_writes_it(twins: Twins):
    """The fingerprint after an edit path keeps every file the last one read (finish.py
    `_recorded(since.inputs)`), also those no target reads any more. reach.needs() takes a
    path among them for a file, though a frame now writes it (under another extension here,
    so the user's refs/a.png stays and its stat still matches): the target naming it is
    planned without that frame, which plan/inputs.py then cannot see as the writer."""
    data = _base()
    data["targets"]["lone"] = {"prompt": "alone v0", "inputs": ["refs/a.png"]}
    twins.write(data)
    twins.build_and_compare("first")
    data = copy.deepcopy(data)
    data["targets"]["lone"] = {"prompt": "alone v1"}  # refs/a.png read no more
    data["targets"]["maker"] = {"prompt": "a reference", "output": "refs/a.{ext}",
                                "model": "gpt-image-2", "resolution": "1K",
                                "output_format": "jpeg"}
    twins.write(data)
    twins.build_and_compare("lone reads no file; maker writes refs/a.jpg")
    assert twins.carried == 1  # the edit path was taken
    data = copy.deepcopy(data)
    data["targets"]["lone"] = {"prompt": "alone v2", "inputs": ["refs/a.png"]}
    twins.write(data)
    twins.build_and_compare("lone takes refs/a.png again: maker's image, by the whole plan")


def test_a_new_frame_writing_a_carried_targets_bible_reference_plans_the_whole(twins: Twins):
    """As tests/engine/test_edit_path.py's `lone` reading refs/a.png, but through a bible:
    once a frame writes a file a carried target's bible names as a reference, that reference
    is an edge to the frame (plan/inputs.py _references → _file_input), which changes the
    carried target's key. planner._writes_carried_input looks at `inputs` only."""
    data = _portrait_built(twins, "refs/a.png")
    data["targets"]["maker"] = {"prompt": "a reference", "output": "refs/a.{ext}"}
    twins.write(data)
    twins.build_and_compare("a frame now writes the bible's reference")


def test_a_warning_on_a_carried_target_is_said_as_the_whole_plan_says_it(twins: Twins):
    """The whole plan warns on every build that a bible's references are not sent to a model
    that takes no input image (plan/inputs.py); the edit path resolves only the targets it
    plans, so the warning of a carried target goes unsaid after an edit elsewhere."""
    data = _base()
    data["bibles"] = {"face": {"text": "a face", "references": ["refs/a.png"]}}
    data["targets"]["portrait"] = {"prompt": "a portrait v0", "bible": "face",
                                   "model": "Nano-Banana"}
    data["targets"]["lone"] = {"prompt": "alone", "inputs": ["refs/a.png"]}  # a file read
    twins.write(data)
    twins.build_and_compare("first")
    data = copy.deepcopy(data)
    data["targets"]["hero"]["prompt"] = "a hero v1"
    twins.write(data)
    twins.build_and_compare("an edit elsewhere")


def test_after_the_bible_miss_build_says_nothing_to_do_and_ci_says_stale(twins: Twins, run):
    """The consequence of the first miss: the edit path's fingerprint covers the stale frame,
    so `nbpipe build` (and `build --check`) answer "fresh" on this machine for good, while a
    checkout without the state (CI: `nbpipe build --check` plans everything) finds the frame
    stale and fails, on the same files."""
    import shutil

    _hero_edited_under_a_bible_reference(twins)
    run("-C", str(twins.fast), "build")
    here = run("-C", str(twins.fast), "build", "--check")
    shutil.rmtree(twins.fast / ".nbpipe")  # as a CI checkout has it: no state
    ci = run("-C", str(twins.fast), "build", "--check")
    assert (here.code, ci.code) != (0, 1), (here.out, ci.out)


class _With(Twins):
    """Twins whose builds pass `args` (e.g. --backend preview)."""

    args: tuple[str, ...] = ()

    def _build(self, root):
        real = self.run

        def run(*argv):
            return real(*argv, *self.args)

        self.run = run
        try:
            return super()._build(root)
        finally:
            self.run = real


def test_an_edit_that_makes_backend_an_override_moves_every_frame(tmp_path, run, monkeypatch):
    """`--backend preview` on a manifest all on preview is the usual build (planner
    `_overrides`: lock section None, out/...). A new target on another backend makes the same
    flag an override: the whole plan moves every frame to the `@preview` section and folder
    (restored there from the cache). The edit path plans only the new target, opens the
    `@preview` section (empty: nothing carried) and leaves the others out of it."""
    monkeypatch.delenv("NBPIPE_CACHE_DIR", raising=False)
    twins = _With(tmp_path, run, monkeypatch)
    twins.args = ("--backend", "preview")
    data = _base()
    twins.write(data)
    twins.build_and_compare("first")
    data = copy.deepcopy(data)
    data["targets"]["g"] = {"prompt": "on gemini", "backend": "gemini"}
    twins.write(data)
    twins.build_and_compare("a target on gemini: --backend preview now overrides")


def test_an_edit_that_ends_an_override_carries_another_sections_stale_pins(tmp_path, run,
                                                                           monkeypatch):
    """The other way round, worse: the fingerprint was made in the `@preview` section; an edit
    makes `--backend preview` the usual build again (section None), whose pins are older
    (hero at v0). The edit path carries them as fresh, since the lock's bytes are the
    fingerprinted ones; the whole plan re-renders hero ("prompt changed")."""
    monkeypatch.delenv("NBPIPE_CACHE_DIR", raising=False)
    twins = _With(tmp_path, run, monkeypatch)
    data = _base()
    twins.write(data)
    twins.build_and_compare("plain build: section None pins hero v0")
    twins.args = ("--backend", "preview")
    data = copy.deepcopy(data)
    data["targets"]["g"] = {"prompt": "on gemini", "backend": "gemini"}
    data["targets"]["hero"]["prompt"] = "a hero v1"
    twins.write(data)
    twins.build_and_compare("--backend preview overrides g: section @preview, hero v1")
    data = copy.deepcopy(data)
    del data["targets"]["g"]
    twins.write(data)
    twins.build_and_compare("g removed: --backend preview is the usual build again")
