"""The entry point's early no-op answer (nbpipe/launch.py): the same answer as the CLI's, for
exactly the command lines it claims, and without loading the CLI library."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from nbpipe.launch import plain_build

CABIN = """\
version: 1
defaults: {backend: preview, model: Nano-Banana-2}
profiles: {small: {resolution: 1K}}
targets:
  a: {prompt: "a cabin"}
  b: {prompt: "a lake"}
"""


@pytest.mark.parametrize("argv, plain", [
    (["build"], (".", False, False)),
    (["build", "--check"], (".", True, False)),
    (["build", "--json", "--check"], (".", True, True)),
    (["-C", "proj", "build", "--json"], ("proj", False, True)),
    (["build", "--check", "--check"], None),
    (["build", "a"], None),  # frames: the CLI plans them
    (["build", "--force"], None),
    (["build", "--backend", "preview"], None),
    (["build", "-j", "2"], None),
    (["--version"], None),
    (["-C"], None),
    (["-Cproj", "build"], None),
    (["plan"], None),
    ([], None),
])
def test_only_plain_build_command_lines_are_answered_early(argv, plain):
    got = plain_build(argv)
    if plain is None:
        assert got is None
    else:
        root, flags = got
        assert (str(root), flags["check"], flags["as_json"]) == plain


def _process(root: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nbpipe", "-C", str(root), *args],
                          env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=60)


@pytest.mark.parametrize("args, env", [
    ((), {}), (("--check",), {}), (("--json",), {}), (("--check", "--json"), {}),
    ((), {"NBPIPE_PROFILE": "small"}), ((), {"NBPIPE_BACKEND": "preview"}),
    ((), {"NBPIPE_BACKEND": "hiapi"}),  # another backend's section: not fresh, the CLI plans
])
def test_the_early_answer_is_the_cli_s_answer(make_project, run, monkeypatch, args, env):
    root = make_project(CABIN)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    if env.get("NBPIPE_BACKEND") != "hiapi":
        assert run("-C", str(root), "build").code == 0
    cli = run("-C", str(root), "build", *args)
    process = _process(root, "build", *args, **env)
    assert (process.returncode, process.stdout) == (cli.code, cli.out)


def test_the_early_answer_loads_neither_click_nor_pydantic(make_project, run):
    root = make_project(CABIN)
    assert run("-C", str(root), "build").code == 0
    probe = ("import sys; from nbpipe.launch import fast_noop; "
             f"code = fast_noop(['-C', {str(root)!r}, 'build']); "
             "print(code, sorted(m for m in ('click', 'pydantic', 'jinja2', 'yaml') "
             "if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=60)
    assert done.stdout.splitlines()[-1] == "0 []", done.stderr


def test_a_stale_project_goes_to_the_cli(make_project, run):
    root = make_project(CABIN)
    assert run("-C", str(root), "build").code == 0
    (root / "nbpipe.yaml").write_text(CABIN.replace("a lake", "a pond"))
    from nbpipe.launch import fast_noop

    assert fast_noop(["-C", str(root), "build", "--check"]) is None
    done = _process(root, "build", "--check")
    assert done.returncode == 1 and "b" in done.stdout + done.stderr
