"""The first hour of a new user, scripted: a fresh clone, README's commands as written, then a
project of their own from `nbpipe init`, built on the offline preview backend."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.conftest import REPO

README = (REPO / "README.md").read_text("utf-8")
FIRST_BLOCK = re.search(r"^```sh\n(.*?)^```", README, re.S | re.M).group(1).splitlines()


def readme_command(label: str) -> str:
    """The command on README's first code block's line commented `# LABEL`."""
    line = next(line for line in FIRST_BLOCK if line.rstrip().endswith(f"# {label}"))
    return line.rsplit("#", 1)[0].strip()


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    """A fresh clone of this repository's HEAD: only what is committed, no build state."""
    if not (REPO / ".git").exists() or shutil.which("git") is None:
        pytest.skip("not a git checkout: nothing to clone")
    target = tmp_path_factory.mktemp("newcomer") / "nbpipe"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(target)], check=True)
    return target


def nbpipe_on_path(clone: Path, tmp: Path) -> dict[str, str]:
    """The environment after README's install step: an `nbpipe` command made from the
    clone's own console-script declaration, running the clone's code.

    The install itself (`pip install -e .`) needs the network for its build backend; CI's
    `bash scripts/test` does a real one from the same pyproject.toml."""
    project = tomllib.loads((clone / "pyproject.toml").read_text("utf-8"))["project"]
    module, _, function = project["scripts"]["nbpipe"].partition(":")
    bin_dir = tmp / "bin"
    bin_dir.mkdir(exist_ok=True)
    shim = bin_dir / "nbpipe"
    code = f"import sys; from {module} import {function}; sys.exit({function}())"
    shim.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} -c '{code}' \"$@\"\n")
    shim.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("NBPIPE_")}
    return {**env, "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
            "PYTHONPATH": str(clone), "CI": ""}


def sh(command: str, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-euo", "pipefail", "-c", command], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def test_readme_main_job_then_a_starter_project_of_ones_own(clone, tmp_path):
    main = readme_command("the main job")
    install, _, job = main.partition(" && ")
    assert install == "python3 -m pip install -e ."
    assert job.startswith("nbpipe ")
    env = nbpipe_on_path(clone, tmp_path)

    first = sh(job, clone, env)  # verbatim, from the clone's top, as README says
    assert first.returncode == 0, first.stdout + first.stderr
    # mira renders on hiapi: `--backend preview` is its own section and folder (never over pins)
    assert len(list((clone / "projects/mira-storyboard/out/@preview").glob("*.png"))) == 5
    again = sh(job, clone, env)
    assert again.returncode == 0
    assert "nothing to do: 5 frames fresh" in again.stdout + again.stderr

    # The main job left its lock, cache and outputs in the example; the tests still pass.
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                            "tests/test_cli.py", "-k", "mira_plan_table or example_plan_json"],
                           cwd=clone, env=env, capture_output=True, text=True, timeout=600)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert re.search(r"^5 passed", tests.stdout, re.M), tests.stdout

    mine = tmp_path / "my-project"
    mine.mkdir()
    for command in ("nbpipe init", "nbpipe validate", "nbpipe build --backend preview"):
        done = sh(command, mine, env)
        assert done.returncode == 0, f"{command}:\n{done.stdout}{done.stderr}"
        assert "warning" not in done.stderr and "Traceback" not in done.stderr
    assert sorted(p.relative_to(mine / "out").as_posix() for p in (mine / "out").rglob("*.png")) \
        == ["mug/blue.png", "mug/red.png", "mug/sage.png", "studio.png"]


def test_ci_runs_exactly_readmes_test_command(clone):
    command = readme_command("the tests")
    assert command == "bash scripts/test"
    steps = [line for line in (clone / ".ci/run").read_text("utf-8").splitlines()
             if line and not line.startswith("#")]
    assert steps[-1] == f"exec {command}"
    script = (clone / "scripts/test").read_text("utf-8")
    assert "pip install" in script and "'.[test]'" in script and "apt-get update" in script


def test_without_chromium_each_browser_test_skips_with_its_reason(clone, tmp_path):
    """No module-level skip: the report test that needs no browser still runs."""
    env = {**nbpipe_on_path(clone, tmp_path), "PATH": str(tmp_path / "bin")}  # no chromium
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
                           "tests/ui/test_report.py"], cwd=clone, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"=+ 1 passed, 7 skipped in [\d.]+s =+$", done.stdout, re.M), done.stdout
    assert "SKIPPED [4] tests/ui/test_report.py:" in done.stdout
    assert done.stdout.count("chromium is not installed (scripts/test installs it)") == 4


def test_the_pr_loop_on_the_preview_lane_without_a_remote(clone, tmp_path):
    """The offline trial docs/ci.md invites, in a project of one's own: main built on the
    preview lane and committed, then a pull request changing the mugs' table. No remote is
    configured: the script says so and still writes the diff and the review page, and the diff
    counts exactly the changed frames (BASE's `@preview` section, not its default one)."""
    env = {**nbpipe_on_path(clone, tmp_path), "NBPIPE_BACKEND": "preview"}
    mine = tmp_path / "shop"
    mine.mkdir()
    steps = ["nbpipe init", "sed -i 's/  backend: preview/  backend: hiapi/' nbpipe.yaml",
             "git init -q -b main", "nbpipe build", "git add -A",
             "git -c user.name=n -c user.email=n@example.com commit -q -m main",
             "git checkout -q -b feature",
             "sed -i 's/light oak table/slate counter/' nbpipe.yaml"]
    for command in steps:
        done = sh(command, mine, env)
        assert done.returncode == 0, f"{command}:\n{done.stdout}{done.stderr}"
    assert (mine / "out" / "@preview" / "studio.png").is_file()  # the lane's own folder
    summary = tmp_path / "summary.md"
    done = subprocess.run(["bash", str(clone / "docs" / "nbpipe-ci.sh"), "pr"], cwd=mine,
                          env={**env, "NBPIPE_BASE": "main", "GITHUB_STEP_SUMMARY": str(summary)},
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "nbpipe: no remote cache is configured: nothing pushed" in done.stderr
    text = summary.read_text("utf-8")
    assert "No remote cache is configured" in text
    diff = text[text.index("### nbpipe diff"):]
    assert "**3 changed · nothing to render**" in diff, text
    assert re.findall(r"^\| `(\S+)` \| changed \| rendered \|", diff, re.M) == \
        ["mug/red", "mug/blue", "mug/sage"]
    assert "studio" not in diff
    assert (mine / "review" / "index.html").is_file()
    assert done.stdout.rstrip().endswith("(3 changed frames)")


def test_the_workflow_has_no_placeholder_and_no_project_at_the_root_assumed(tmp_path):
    from ruamel.yaml import YAML

    text = (REPO / "docs" / "github-workflow.yml").read_text("utf-8")
    assert "YOUR-ORG" not in text and "@COMMIT" not in text
    workflow = YAML(typ="safe").load(text)
    assert workflow["env"]["NBPIPE_PROJECT"] == "${{ vars.NBPIPE_PROJECT || '.' }}"
    assert workflow["env"]["NBPIPE_CACHE_DIR"] == "${{ github.workspace }}/.nbpipe"
    for job in workflow["jobs"].values():
        cached = [s for s in job["steps"] if s.get("uses", "").startswith("actions/cache")]
        assert [s["with"]["path"] for s in cached] == [".nbpipe"]  # where NBPIPE_CACHE_DIR is
        assert "hashFiles('**/nbpipe.lock')" in cached[0]["with"]["key"]
        (install,) = [s for s in job["steps"] if "pip install" in s.get("run", "")]
        guard = install["run"].split("pip install")[0] + "echo ok\n"
        for repo, commit, said in [("", "", None), ("acme/nbpipe", "main", None),
                                   ("acme/nbpipe", "0" * 40, "ok")]:
            done = subprocess.run(["bash", "-c", guard], capture_output=True, text=True,
                                  env={"NBPIPE_REPO": repo, "NBPIPE_COMMIT": commit})
            if said:
                assert (done.returncode, done.stdout) == (0, "ok\n")
            else:
                assert done.returncode == 1 and "set the repository variables" in done.stdout


def test_readmes_environment_table_names_every_variable_nbpipe_reads():
    source = (REPO / "nbpipe" / "settings.py").read_text("utf-8")
    read = set(re.findall(r'read\.\w+\(((?:"[A-Z_]+"(?:, )?)+)', source))
    names = {name for group in read for name in re.findall(r'"([A-Z_]+)"', group)}
    assert {"NBPIPE_BACKEND", "NBPIPE_PROFILE", "NBPIPE_GC_GRACE", "NBPIPE_RECOVER_TIMEOUT",
            "NBPIPE_INTERRUPT_GRACE"} <= names
    table = README[README.index("## Environment"):]
    table = table[:table.index("\n## ", 1)]
    assert sorted(n for n in names if f"`{n}`" not in table) == []


FANNED_EDITS = """
  mug-table:                    # an edit per colour: mug-table/red edits mug/red
    inputs: ["mug/{{ color }}"]
    prompt: "Place this {{ color }} mug on a rustic breakfast table, morning light."
    model: Nano-Banana-2
    matrix:
      color: [red, blue, sage]
    variants:
      wide: {}
      close:                    # and a second edit of that colour's first
        inputs: ["mug-table/{{ color }}/wide"]
        aspect_ratio: "1:1"
"""


def test_a_matrix_fanned_edit_chain_on_the_preview_lane(clone, tmp_path):
    """Issue #23 item 4: per-colourway edit chains in one target (inputs rendered with the
    frame's matrix value, a variant with its own inputs), built offline on the preview lane;
    a change to the colourways' template makes every chain follow, through its upstream."""
    env = {**nbpipe_on_path(clone, tmp_path), "NBPIPE_BACKEND": "preview"}
    mine = tmp_path / "shop"
    mine.mkdir()
    steps = ["nbpipe init", "sed -i 's/  backend: preview/  backend: hiapi/' nbpipe.yaml",
             f"cat >> nbpipe.yaml <<'EOF'\n{FANNED_EDITS}EOF", "nbpipe validate", "nbpipe build"]
    for command in steps:
        done = sh(command, mine, env)
        assert done.returncode == 0, f"{command}:\n{done.stdout}{done.stderr}"
        assert "warning" not in done.stderr and "Traceback" not in done.stderr
    lane = mine / "out" / "@preview"
    assert sorted(p.relative_to(lane).as_posix() for p in lane.rglob("mug-table/*/*.png")) == [
        f"mug-table/{color}/{shot}.png" for color in ("blue", "red", "sage")
        for shot in ("close", "wide")]
    plan = json.loads(sh("nbpipe plan --json", mine, env).stdout)
    assert plan["summary"]["fresh"] == 10
    sh("sed -i 's/light oak table/slate counter/' nbpipe.yaml", mine, env)
    plan = json.loads(sh("nbpipe plan --json", mine, env).stdout)
    waits = {s["frame"]: s["reason"] for s in plan["frames"] if s["action"] == "blocked"}
    assert waits == {f"mug-table/{c}/wide": f"waits on mug/{c}" for c in ("red", "blue", "sage")} \
        | {f"mug-table/{c}/close": f"waits on mug-table/{c}/wide" for c in ("red", "blue", "sage")}
    built = sh("nbpipe build", mine, env)
    assert built.returncode == 0, built.stdout + built.stderr
    assert "9 rendered · 0 restored · 1 fresh" in built.stdout + built.stderr
