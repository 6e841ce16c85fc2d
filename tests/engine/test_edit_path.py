"""The edit path (plan/reach.py, engine/carried.py), judged from outside.

Twin projects take the same random edits of their manifest (prompts, new and removed targets,
edit chains, `extends`, output patterns that collide, matrix values, the rest of the manifest,
comments, deleted outputs); one builds as a user's would (the edit path whenever it may), the
other forgets its fingerprint before each build, so it plans every frame. After every build
both must agree on everything a user sees: the exit code, what was said, the lock's bytes and
every output's bytes. And the edit path must actually have been taken.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import pytest

from tests.conftest import tiny_png

DEFAULTS = {"backend": "preview", "model": "gemini-3.1-flash-image", "resolution": "512",
            "aspect_ratio": "1:1"}


def manifest_text(data: dict, comment: int) -> str:
    # YAML reads JSON: the twins get the same bytes, so the same lines in any error
    return f"# edit {comment}\n" + json.dumps(data, indent=1) + "\n"


class Twins:
    """Two copies of one project: `fast` builds as users do, `whole` plans every frame."""

    def __init__(self, base: Path, run, monkeypatch, settle: bool = True):
        self.run, self.monkeypatch = run, monkeypatch
        self.fast, self.whole = base / "fast", base / "whole"
        for root in (self.fast, self.whole):
            (root / "refs").mkdir(parents=True)
            (root / "refs" / "a.png").write_bytes(tiny_png())
        if settle:  # else the caller waits, once for many twins
            time.sleep(0.12)  # past the racy window: the reference's stat proves it unchanged
        self.comment = 0
        self.carried = 0  # builds that took the edit path

    def write(self, data: dict) -> None:
        self.comment += 1
        for root in (self.fast, self.whole):
            (root / "nbpipe.yaml").write_text(manifest_text(data, self.comment))

    def _forget_fingerprint(self) -> None:
        state = self.whole / ".nbpipe" / "state.json"
        if state.exists():
            doc = json.loads(state.read_text())
            doc.pop("fingerprint", None)
            state.write_text(json.dumps(doc))

    def _build(self, root: Path) -> tuple[int, list[str], list[str]]:
        self.monkeypatch.setenv("NBPIPE_EXPLAIN", "1")
        result = self.run("-C", str(root), "build", "-j", "1")
        said = [line.replace(str(root), "ROOT") for line in result.out.splitlines()]
        err = [line.replace(str(root), "ROOT") for line in result.err.splitlines()
               if not line.startswith("nbpipe: ")]
        if any(line.startswith("nbpipe: the edit path plans") for line in
               result.err.splitlines()):
            self.carried += root == self.fast
        return result.code, sorted(said), err

    def build_and_compare(self, step: str) -> None:
        self._forget_fingerprint()
        fast, whole = self._build(self.fast), self._build(self.whole)
        assert fast == whole, step
        assert _bytes(self.fast, "nbpipe.lock") == _bytes(self.whole, "nbpipe.lock"), step
        assert _outputs(self.fast) == _outputs(self.whole), step


def _bytes(root: Path, name: str) -> bytes | None:
    path = root / name
    return path.read_bytes() if path.exists() else None


def _outputs(root: Path) -> dict[str, bytes]:
    out = root / "out"
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file()} if out.exists() else {}


class Editor:
    """Random edits of a manifest's data, each named for the failure message."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.version = 0
        self.data: dict = {"version": 1, "defaults": dict(DEFAULTS), "targets": {
            "tile": {"prompt": "a tile {{ a }} v0", "matrix": {"a": ["x", "y"]}},
            "hero": {"prompt": "a hero v0"},
            "edit": {"inputs": ["hero"], "prompt": "golden hour v0"},
            "lone": {"prompt": "alone v0", "inputs": ["refs/a.png"]},
        }}

    def _target(self) -> str | None:
        names = sorted(self.data["targets"])
        return self.rng.choice(names) if names else None

    def _new_name(self) -> str:
        self.version += 1
        return f"t{self.version}"

    def step(self) -> str:
        op = self.rng.choice(["bump", "bump", "bump", "add", "add_edit", "remove", "context",
                              "collide", "comment", "matrix", "extends", "delete_output",
                              "nothing", "variant_inputs", "variant", "jpeg", "unjpeg",
                              "matrix_input", "casefold", "rename", "extends_edit", "bible",
                              "use_bible"])
        getattr(self, op)()
        return op

    def bump(self) -> None:
        name = self._target()
        if name is not None:
            self.version += 1
            entry = self.data["targets"][name]
            text = entry.get("prompt", "p")
            entry["prompt"] = text.rsplit(" v", 1)[0] + f" v{self.version}"

    def add(self) -> None:
        self.data["targets"][self._new_name()] = {"prompt": f"new {self.version}"}

    def add_edit(self) -> None:
        upstream = self._target()
        if upstream is not None:  # a matrix upstream is an error both twins must say
            self.data["targets"][self._new_name()] = {"inputs": [upstream],
                                                      "prompt": f"an edit {self.version}"}

    def remove(self) -> None:
        name = self._target()
        if name is not None:  # a removed upstream is an error both twins must say
            del self.data["targets"][name]

    def context(self) -> None:
        self.version += 1
        self.data["name"] = f"project {self.version}"

    def collide(self) -> None:
        one, other = self._target(), self._target()
        if one is not None and other is not None:
            self.data["targets"][one]["output"] = f"out/{other}.{{ext}}"

    def comment(self) -> None:
        pass  # the comment line changes with every write

    def matrix(self) -> None:
        tile = self.data["targets"].get("tile")
        if tile is not None and "matrix" in tile:
            self.version += 1
            tile["matrix"]["a"].append(f"v{self.version}")

    def extends(self) -> None:
        parent = self._target()
        if parent is not None:
            self.data["targets"][self._new_name()] = {"extends": parent,
                                                      "aspect_ratio": "3:2"}

    def delete_output(self) -> None:
        self.data.setdefault("_delete", 0)  # marker read by the walk below
        self.data["_delete"] += 1

    def nothing(self) -> None:
        pass

    # The review's richer edits (and a bible whose references may be a frame's output)

    def variant_inputs(self) -> None:
        name, upstream = self._target(), self._target()
        if name and upstream and name != upstream:
            self.version += 1
            self.data["targets"][name].setdefault("variants", {})[f"v{self.version}"] = {
                "inputs": [upstream]}

    def variant(self) -> None:
        name = self._target()
        if name:
            self.version += 1
            self.data["targets"][name].setdefault("variants", {})[f"w{self.version}"] = {
                "vars": {"q": 1}}

    def jpeg(self) -> None:
        name = self._target()
        if name:
            self.data["targets"][name].update({"model": "gpt-image-2", "resolution": "1K",
                                               "output_format": "jpeg"})

    def unjpeg(self) -> None:
        name = self._target()
        if name:
            for setting in ("model", "resolution", "output_format"):
                self.data["targets"][name].pop(setting, None)

    def matrix_input(self) -> None:
        tile = self.data["targets"].get("tile")
        if tile and "matrix" in tile:
            self.data["targets"][self._new_name()] = {
                "matrix": {"a": list(tile["matrix"]["a"])}, "inputs": ["tile/{{ a }}"],
                "prompt": "edit {{ a }}"}

    def casefold(self) -> None:
        one, other = self._target(), self._target()
        if one and other:
            self.data["targets"][one]["output"] = f"out/{other.upper()}.{{ext}}"

    def rename(self) -> None:
        name = self._target()
        if name:
            entry = self.data["targets"].pop(name)
            self.data["targets"][self._new_name()] = entry

    def extends_edit(self) -> None:
        parent, upstream = self._target(), self._target()
        if parent and upstream:
            self.data["targets"][self._new_name()] = {"extends": parent, "inputs": [upstream],
                                                      "prompt": f"x {self.version}"}

    def bible(self) -> None:
        outputs = [f"out/{name}.png" for name in sorted(self.data["targets"])]
        reference = self.rng.choice(["refs/a.png", *outputs])
        self.version += 1
        self.data["bibles"] = {"face": {"text": f"a face {self.version}",
                                        "references": [reference]}}

    def use_bible(self) -> None:
        name = self._target()
        if name and "bibles" in self.data:
            self.data["targets"][name]["bible"] = "face"


def walk(twins: Twins, seed: int, steps: int) -> None:
    rng = random.Random(seed)
    editor = Editor(rng)
    twins.write(editor.data)
    twins.build_and_compare("first build")
    for index in range(steps):
        op = editor.step()
        if editor.data.pop("_delete", 0):
            files = sorted(_outputs(twins.fast))
            if files:
                doomed = rng.choice(files)
                for root in (twins.fast, twins.whole):
                    (root / doomed).unlink(missing_ok=True)
        if op != "nothing":
            twins.write(editor.data)
        twins.build_and_compare(f"seed {seed}, step {index}: {op}\n{editor.data}")


@pytest.fixture
def twins(tmp_path, run, monkeypatch):
    monkeypatch.delenv("NBPIPE_CACHE_DIR", raising=False)
    return Twins(tmp_path, run, monkeypatch)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_edit_path_ends_as_the_whole_plan(twins, seed):
    walk(twins, seed, 14)
    assert twins.carried > 0  # the path under test was taken


@pytest.mark.slow
def test_the_edit_path_ends_as_the_whole_plan_longer(tmp_path, run, monkeypatch):
    monkeypatch.delenv("NBPIPE_CACHE_DIR", raising=False)
    carried = 0
    seeds = range(100, 112)  # a walk may end in a manifest that errs or warns for good
    all_twins = [Twins(tmp_path / str(seed), run, monkeypatch, settle=False) for seed in seeds]
    time.sleep(0.12)  # past the racy window, for every twin's reference at once
    for seed, twins in zip(seeds, all_twins, strict=True):
        walk(twins, seed, 25)
        carried += twins.carried
    assert carried >= 12  # the path under test was taken, often


def _built(twins: Twins) -> Editor:
    """The twins built once from the first manifest; its editor."""
    editor = Editor(random.Random(0))
    twins.write(editor.data)
    twins.build_and_compare("first")
    return editor


def test_an_edit_of_one_target_plans_it_alone(twins, run):
    editor = _built(twins)
    editor.data["targets"]["tile"]["prompt"] = "a tile {{ a }} v9"
    twins.write(editor.data)
    result = run("-C", str(twins.fast), "build")
    assert "the edit path plans 1 target (tile) and carries 3" in result.err
    assert result.out.splitlines()[-1].startswith("2 rendered · 0 restored · 3 fresh")
    assert "nothing to do: 5 frames fresh" in run("-C", str(twins.fast), "build").out


def test_a_lock_changed_after_the_check_falls_back_to_the_whole_plan(twins, run,
                                                                     monkeypatch):
    """Another build (or a checkout) may change the lock between the fast check and the build
    lock: carried frames are then not trusted, and the whole project is planned."""
    from nbpipe.engine import carried as module

    editor = _built(twins)
    real = module.carried_frames

    def lock_moved(project, lock):
        lock.digest = "0" * 64  # as if the file read under the build lock were another
        return real(project, lock)

    monkeypatch.setattr("nbpipe.engine.session.carried_frames", lock_moved)
    editor.data["targets"]["hero"]["prompt"] = "a hero v9"
    twins.write(editor.data)
    result = run("-C", str(twins.fast), "build")
    assert "the edit path fell back" in result.err
    assert result.out.splitlines()[-1].startswith("2 rendered · 0 restored · 3 fresh")


def test_a_fingerprint_carried_to_another_checkout_is_not_an_edit_path(twins, run, tmp_path):
    """A store restored into a fresh checkout (a CI cache) holds a fingerprint whose lock has
    the same bytes but is another file: the whole project is planned."""
    import shutil

    editor = _built(twins)
    clone = tmp_path / "clone"
    shutil.copytree(twins.fast, clone)
    editor.data["targets"]["hero"]["prompt"] = "a hero v9"
    (clone / "nbpipe.yaml").write_text(manifest_text(editor.data, 99))
    result = run("-C", str(clone), "build")
    assert "the edit path plans" not in result.err
    assert result.code == 0


def test_an_edit_of_an_upstream_plans_what_takes_its_image(twins, run):
    editor = _built(twins)
    editor.data["targets"]["hero"]["prompt"] = "a hero v9"
    twins.write(editor.data)
    twins.build_and_compare("hero edited")
    assert twins.carried == 1
    editor.data["targets"]["hero"]["prompt"] = "a hero v10"
    twins.write(editor.data)
    result = run("-C", str(twins.fast), "build")
    assert "the edit path plans 2 targets (edit, hero) and carries 2" in result.err
    assert "rendered edit  input 'hero' changed" in result.out


def test_a_new_frame_writing_a_carried_targets_input_plans_the_whole(twins):
    """`lone` reads refs/a.png as a file; once a frame writes it, it is an edge to that frame
    (keyed on the frame's image): `lone` cannot be carried with its old key."""
    editor = _built(twins)
    editor.data["targets"]["maker"] = {"prompt": "a reference", "output": "refs/a.{ext}"}
    twins.write(editor.data)
    twins.build_and_compare("a frame now writes lone's input")
    assert twins.carried == 0
