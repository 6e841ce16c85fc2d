"""The entry point's early no-op answer (nbpipe/launch.py): the same answer as the CLI's, for
exactly the command lines it claims, and without loading the CLI library."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from nbpipe.launch import fast_noop, plain_build

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


# The CLI path in its own process, as the launcher would run it if there were no early answer.
CLI = "import sys; from nbpipe.cli import main; sys.exit(main(sys.argv[1:]))"


def _both(args: list[str], env: dict | None = None, **how) -> list[tuple[int, str]]:
    """(exit code, stderr) of the entry point and of the CLI path, each in a fresh process."""
    done = []
    for start in (["-m", "nbpipe"], ["-c", CLI]):
        process = subprocess.run([sys.executable, *start, *args], env={**os.environ, **(env or {})},
                                 stderr=subprocess.PIPE, text=True, timeout=60, **how)
        done.append((process.returncode, process.stderr))
    return done


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
    with redirect_stdout(io.StringIO()):  # and the early path, not the CLI, gave it
        early = fast_noop(["-C", str(root), "build", *args])
    assert early == (None if env.get("NBPIPE_BACKEND") == "hiapi" else 0)


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


LATE = CABIN.replace("Nano-Banana-2", "gemini-2.5-flash-image")  # shuts down 2026-10-02


def test_an_error_in_the_early_check_is_said_as_the_cli_says_it(make_project, run, monkeypatch):
    root = make_project(LATE)
    monkeypatch.setenv("NBPIPE_TODAY", "2026-08-01")  # quiet: the fingerprint holds until 09-02
    assert run("-C", str(root), "build").code == 0
    assert fast_noop(["-C", str(root), "build"]) == 0
    early, cli = _both(["-C", str(root), "build"], {"NBPIPE_TODAY": "garbage"},
                       stdout=subprocess.PIPE)
    assert early == cli == (2, "error: NBPIPE_TODAY='garbage' is not a date\n"
                               "hint: use YYYY-MM-DD\n")


def test_a_directory_name_too_long_is_a_usage_error_on_both_paths(tmp_path):
    early, cli = _both(["-C", str(tmp_path / ("d" * 300)), "build"], stdout=subprocess.PIPE)
    assert early == cli
    assert early[0] == 2 and early[1].startswith("error: no such directory: "), early


def _fresh(make_project, run) -> Path:
    root = make_project(CABIN)
    assert run("-C", str(root), "build").code == 0
    assert fast_noop(["-C", str(root), "build"]) == 0
    return root


def test_no_standard_output_is_no_error_on_either_path(make_project, run):
    # `nbpipe build >&-` (a daemon, cron with stdout closed): Python has no sys.stdout
    root = _fresh(make_project, run)
    early, cli = _both(["-C", str(root), "build"], preexec_fn=lambda: os.close(1))
    assert early == cli == (0, "")


def test_a_closed_pipe_exits_as_the_cli_does(make_project, run):
    # `nbpipe build --check | head -0` under pipefail: both paths say the same, quietly
    root = _fresh(make_project, run)
    read, write = os.pipe()
    os.close(read)
    try:
        early, cli = _both(["-C", str(root), "build", "--check"], stdout=write)
    finally:
        os.close(write)
    assert early == cli == (1, "")


def test_a_miss_is_handed_to_the_cli_not_checked_again(make_project, run, monkeypatch, capsys):
    from nbpipe.cli import main
    from nbpipe.engine import noop
    from nbpipe.launch import probe

    root = _fresh(make_project, run)
    (root / "nbpipe.yaml").write_text(CABIN.replace("a lake", "a pond"))
    found = probe(["-C", str(root), "build", "--check"])
    assert found.summary is None and found.verdict is not None
    assert found.verdict.why == "nbpipe.yaml's stat changed (edited, touched, or another checkout)"
    checks = []
    monkeypatch.setattr(noop, "check", lambda *args: checks.append(args))
    capsys.readouterr()
    assert main(["-C", str(root), "build", "--check"], found) == 1
    assert checks == []  # the CLI took the early path's verdict
    assert "b" in capsys.readouterr().out


def test_explain_says_on_stderr_why_the_fast_path_missed(make_project, run):
    root = _fresh(make_project, run)
    (root / "b.txt").write_text("not an input")
    (root / "out").mkdir(exist_ok=True)
    output = next(p for p in (root / "out").rglob("*") if p.is_file())
    output.write_bytes(output.read_bytes())  # same bytes, new stat
    done = _process(root, "build", "--check", NBPIPE_EXPLAIN="1")
    assert done.returncode == 0, done.stderr
    rel = output.relative_to(root).as_posix()
    assert done.stderr == f"nbpipe: the no-op fast path missed: output {rel} changed (its stat)\n"
    quiet = _process(root, "build", "--check")
    assert quiet.returncode == 0 and quiet.stderr == ""


def test_explain_names_a_changed_setting_and_open_journal_entries(make_project, run):
    root = _fresh(make_project, run)
    done = _process(root, "build", NBPIPE_EXPLAIN="1", NBPIPE_MAX_FRAMES="200000")
    assert done.stderr == "nbpipe: the no-op fast path missed: a setting changed: " \
                          "NBPIPE_MAX_FRAMES\n"
    (root / ".nbpipe" / "journal.jsonl").write_text('{"op": "open"}\n')
    done = _process(root, "build", NBPIPE_EXPLAIN="1")
    assert done.stderr.startswith("nbpipe: the no-op fast path missed: the journal has open "
                                  "entries"), done.stderr


def test_from_a_subfolder_the_project_is_found_upward_like_git(make_project, run, monkeypatch,
                                                               tmp_path):
    """Both paths find the nearest folder holding nbpipe.yaml; `-C` still wins; `init` starts
    a project where it is asked, even inside one."""
    root = make_project(CABIN)
    deep = root / "art" / "sketches"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    assert plain_build(["build"])[0] == Path("../..")
    assert plain_build(["-C", ".", "build"])[0] == Path(".")
    built = run("build")
    assert built.code == 0, built.err
    assert (root / "out" / "a.png").is_file() and not (deep / "out").exists()
    with redirect_stdout(io.StringIO()) as said:  # the early path finds it too
        assert fast_noop(["build"]) == 0
    assert said.getvalue() == run("build").out
    done = subprocess.run([sys.executable, "-m", "nbpipe", "build"], cwd=deep,
                          capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (0, said.getvalue())
    assert run("validate").out == "../../nbpipe.yaml: ok · 2 targets, 2 frames\n"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = run("-C", str(elsewhere), "plan")  # -C wins: no manifest there
    assert result.code == 2 and result.err.startswith(f"{elsewhere}/nbpipe.yaml: error: no such")
    assert run("init").code == 0
    assert (deep / "nbpipe.yaml").is_file()  # a new project here, as `git init` would


def test_no_project_anywhere_up_is_still_said_here(run, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert plain_build(["build"])[0] == Path(".")
    result = run("plan")
    assert result.code == 2 and "nbpipe init" in result.err


def test_the_cli_path_collects_garbage_less_often(tmp_path):
    """Planning keeps nearly every object it makes: at the collector's default pace its passes
    took a tenth of a 10,000-frame build; what the imports made is frozen out of them."""
    probe = ("import atexit, gc, sys; atexit.register(lambda: print(gc.get_threshold()[0], "
             "gc.get_freeze_count() > 0)); sys.argv = ['nbpipe', '--help']; "
             "from nbpipe.launch import entry; entry()")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
    assert done.stdout.splitlines()[-1] == "50000 True", done.stderr
