"""The whole pull-request loop of docs/ci.md, run here through docs/nbpipe-ci.sh: a bare git
repository as GitHub, moto's S3 server as the shared remote cache, the fake HiAPI counting the
renders it is paid for, and a fresh clone (an empty .nbpipe/) for every CI job."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.store.test_remote import bucket  # noqa: F401 - moto's S3 server
from tests.ui.test_report import browser  # noqa: F401 - the headless Chromium fixture

SCRIPT = REPO / "docs" / "nbpipe-ci.sh"
needs_git = pytest.mark.skipif(shutil.which("git") is None,
                               reason="git is not installed: these jobs clone, commit and push")
MANIFEST = """\
version: 1
name: pr-loop
defaults: {backend: hiapi, model: Nano-Banana, aspect_ratio: "1:1", output: "out/{frame}.{ext}"}
bibles:
  mira: "Mira, a field engineer in a rust-orange beanie"
  theo: "Theo, a courier with a red bicycle"
templates:
  scene: "{{ bible }} | Scene: {{ scene }}"
  product: {subject: {name: "{{ name }}", color: "{{ color }}"}}
targets:
  workshop: {template: scene, bible: mira, vars: {scene: a repair workshop}}
  rooftop: {template: scene, bible: mira, vars: {scene: a city rooftop}}
  street: {template: scene, bible: theo, vars: {scene: a rainy street}}
  shoe: {template: product, vars: {name: running shoe}, matrix: {color: [red, blue, green]}}
"""


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True).stdout


def ci(mode: str, repo: Path, summary: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NBPIPE": f"{sys.executable} -m nbpipe", "NBPIPE_BASE": "origin/main",
           "GITHUB_STEP_SUMMARY": str(summary), "NBPIPE_MAX_COST": "1"}
    return subprocess.run(["bash", str(SCRIPT), mode], cwd=repo, env=env, capture_output=True,
                          text=True)


def nbpipe(repo: Path, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "nbpipe", "-C", str(repo), *args],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
def identity(monkeypatch):
    """Who commits, for git in the tests and the script's processes."""
    for var in ("GIT_AUTHOR_NAME", "GIT_COMMITTER_NAME"):
        monkeypatch.setenv(var, "dev")
    for var in ("GIT_AUTHOR_EMAIL", "GIT_COMMITTER_EMAIL"):
        monkeypatch.setenv(var, "dev@example.com")


@pytest.fixture
def origin(tmp_path, identity):
    bare = tmp_path / "origin.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    return bare


def clone(origin: Path, where: Path, branch: str = "main") -> Path:
    subprocess.run(["git", "clone", "-q", "-b", branch, str(origin), str(where)], check=True,
                   capture_output=True)
    return where


def colour(data: bytes) -> tuple[int, ...]:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB").getpixel((image.width // 2, image.height // 2))


@needs_git
def test_pull_request_pays_once_and_main_restores_it(origin, bucket, fake_hiapi,
                                                     browser, tmp_path):
    dev = tmp_path / "dev"
    subprocess.run(["git", "clone", "-q", str(origin), str(dev)], check=True, capture_output=True)
    git(dev, "symbolic-ref", "HEAD", "refs/heads/main")  # an empty repository's first branch
    (dev / "nbpipe.yaml").write_text(MANIFEST)
    (dev / ".gitignore").write_text(".nbpipe/\nreview/\n")
    git(dev, "add", ".")
    git(dev, "commit", "-q", "-m", "storyboard")
    git(dev, "push", "-q", "origin", "main")

    # main's job renders the six frames and commits the lock and outputs
    first = ci("main", clone(origin, tmp_path / "ci-main-1"), tmp_path / "main1.md")
    assert first.returncode == 0, first.stderr
    assert fake_hiapi.counts["creates"] == 6
    git(dev, "pull", "-q")
    main_lock = json.loads((dev / "nbpipe.lock").read_text())["frames"]

    # a pull request: one matrix value and one bible change
    git(dev, "checkout", "-q", "-b", "teal")
    text = MANIFEST.replace("rust-orange beanie", "green beanie").replace("blue,", "teal,")
    (dev / "nbpipe.yaml").write_text(text)
    git(dev, "commit", "-q", "-am", "teal shoe, green beanie")
    git(dev, "push", "-q", "origin", "teal")

    pr = clone(origin, tmp_path / "ci-pr", "teal")
    planned = json.loads(nbpipe(pr, "diff", "origin/main", "--format", "json"))
    assert planned["summary"] == {"changed": 2, "added": 1, "removed": 1, "to_render": 3,
                                  "cost_usd": 0.15}
    assert [(f["frame"], f["status"], f["state"], f["causes"], f["cost_usd"])
            for f in planned["frames"]] == [
        ("workshop", "changed", "render", ["bible 'mira' changed"], 0.05),
        ("rooftop", "changed", "render", ["bible 'mira' changed"], 0.05),
        ("shoe/teal", "added", "render", ["var 'color' changed"], 0.05),
        ("shoe/blue", "removed", "removed", [], 0.0)]

    # the same pull request from a fork: no secrets, nothing spent, nothing written but the page
    fork = clone(origin, tmp_path / "ci-fork", "teal")
    env = {k: os.environ.pop(k) for k in ("HIAPI_API_KEY", "NBPIPE_REMOTE")}
    try:
        job = ci("fork", fork, tmp_path / "fork.md")
    finally:
        os.environ.update(env)
    assert job.returncode == 0, job.stderr
    assert fake_hiapi.counts["creates"] == 6
    assert git(fork, "status", "--porcelain") == "" and not (fork / "out" / "shoe" / "teal.png").exists()
    assert "3 to render, USD 0.15" in (tmp_path / "fork.md").read_text()
    page = browser.new_page()
    page.goto((fork / "review" / "index.html").as_uri())
    previews = page.evaluate("[...document.querySelectorAll('figure.after img')]"
                             ".map(i => [i.alt, i.naturalWidth > 0, i.dataset.digest])")
    page.close()
    assert previews == [["workshop after", True, ""], ["rooftop after", True, ""],
                        ["shoe/teal after", True, ""]]

    summary = tmp_path / "pr.md"
    job = ci("pr", pr, summary)
    assert job.returncode == 0, job.stderr
    assert fake_hiapi.counts["creates"] == 9  # exactly the three changed frames
    text = summary.read_text()
    assert "### nbpipe plan" in text and "2 changed · 1 added · 1 removed · nothing to render" in text
    assert "| `workshop` | changed | rendered | bible 'mira' changed | Nano-Banana |  |" in text
    pr_lock = json.loads((pr / "nbpipe.lock").read_text())["frames"]

    page = browser.new_page()
    page.goto((pr / "review" / "index.html").as_uri())
    page.wait_for_load_state("load")
    shown = page.evaluate("""[...document.querySelectorAll('section.frame')].map(s => ({
        frame: s.dataset.frame, before: s.dataset.before, after: s.dataset.after,
        images: [...s.querySelectorAll('img')].map(i => {
          const c = document.createElement('canvas'); c.width = i.naturalWidth;
          c.height = i.naturalHeight; const g = c.getContext('2d'); g.drawImage(i, 0, 0);
          return [i.closest('figure').className, i.dataset.digest,
                  [...g.getImageData(c.width >> 1, c.height >> 1, 1, 1).data.slice(0, 3)]];
        })}))""")
    page.close()
    assert [s["frame"] for s in shown] == ["workshop", "rooftop", "shoe/teal", "shoe/blue"]
    committed = {name: (tmp_path / "ci-main-1" / entry["output"]).read_bytes()
                 for name, entry in main_lock.items()}
    for s in shown:
        name = s["frame"]
        want = []
        was = "shoe/blue" if name == "shoe/teal" else name  # a matrix value renamed
        if was in main_lock:
            assert s["before"] == main_lock[was]["digest"]
            want.append(("before", main_lock[was]["digest"], colour(committed[was])))
        if name in pr_lock:
            assert s["after"] == pr_lock[name]["digest"]
            data = (pr / pr_lock[name]["output"]).read_bytes()
            want.append(("after", pr_lock[name]["digest"], colour(data)))
        assert [(fig, digest) for fig, digest, _ in s["images"]] == \
            [(fig, digest) for fig, digest, _ in want]
        for (_, _, got), (_, _, expected) in zip(s["images"], want):
            assert all(abs(a - b) <= 12 for a, b in zip(got, expected)), (name, got, expected)

    # the merge: main's job (a fresh clone, an empty local cache) restores, never renders
    git(dev, "checkout", "-q", "main")
    git(dev, "merge", "-q", "--no-ff", "-m", "merge teal", "teal")
    git(dev, "push", "-q", "origin", "main")
    after = ci("main", clone(origin, tmp_path / "ci-main-2"), tmp_path / "main2.md")
    assert after.returncode == 0, after.stderr
    assert fake_hiapi.counts["creates"] == 9  # 0 renders after the merge
    git(dev, "pull", "-q")
    assert json.loads((dev / "nbpipe.lock").read_text())["frames"] == pr_lock
    assert git(dev, "log", "-1", "--format=%s").strip() == "nbpipe build [skip ci]"


def test_the_workflow_runs_the_script_in_each_mode_it_has():
    from ruamel.yaml import YAML

    workflow = YAML(typ="safe").load((REPO / "docs" / "github-workflow.yml").read_text())
    runs = [step["run"] for job in workflow["jobs"].values() for step in job["steps"]
            if "run" in step and "nbpipe-ci.sh" in step["run"]]
    assert runs == ["bash .github/nbpipe-ci.sh pr", "bash .github/nbpipe-ci.sh fork",
                    "bash .github/nbpipe-ci.sh main"]
    script = SCRIPT.read_text()
    assert all(f"\n  {mode})\n" in script for mode in ("pr", "fork", "main"))
    assert "pull_request_target" not in json.dumps(workflow["on"])
    # the page is uploaded from where the script writes it, also in a project in a subfolder
    job = workflow["jobs"]["pull-request"]
    upload = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/upload-art"))
    assert job["env"]["NBPIPE_REVIEW_DIR"] == "${{ github.workspace }}/review"
    assert upload["with"]["path"] == "review/index.html"
    # main's job pushes (write access), one at a time, never cancelled mid-build
    main = workflow["jobs"]["main"]
    assert main["permissions"] == {"contents": "write"}
    assert main["concurrency"]["cancel-in-progress"] is False
    bad = subprocess.run(["bash", str(SCRIPT), "deploy"], capture_output=True, text=True)
    assert bad.returncode == 2 and "usage" in bad.stderr


@needs_git
def test_a_pull_request_over_budget_is_red_and_says_why(identity, bucket, fake_hiapi,
                                                        tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "nbpipe.yaml").write_text(MANIFEST)
    (repo / ".gitignore").write_text(".nbpipe/\nreview/\n")
    git(repo, "init", "-q", "-b", "main")
    nbpipe(repo, "build")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "main")
    git(repo, "checkout", "-q", "-b", "teal")
    (repo / "nbpipe.yaml").write_text(MANIFEST.replace("rust-orange", "green"))
    git(repo, "commit", "-q", "-am", "green beanie")
    env = {**os.environ, "NBPIPE": f"{sys.executable} -m nbpipe", "NBPIPE_BASE": "main",
           "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"), "NBPIPE_MAX_COST": "0.06"}
    job = subprocess.run(["bash", str(SCRIPT), "pr"], cwd=repo, env=env, capture_output=True,
                         text=True)
    assert job.returncode == 1
    assert fake_hiapi.counts["creates"] == 7  # one of the two changed frames fits USD 0.06
    summary = (tmp_path / "summary.md").read_text()
    assert "2 changed · 1 to render, USD 0.05" in summary
    assert "**nbpipe build failed (exit 1)**: a render failed or the frames did not fit in " \
           "USD 0.06 (NBPIPE_MAX_COST)" in summary
    assert (repo / "review" / "index.html").is_file()


def test_the_job_summary_stays_under_1_mib_with_a_huge_plan(tmp_path):
    """The plan went into the summary whole: with a 10,000-frame plan and the diff's 900 kB,
    GitHub dropped the whole summary (its limit is 1 MiB)."""
    fake = tmp_path / "fake_nbpipe.py"
    fake.write_text("import sys\n"
                    "if sys.argv[1] == 'plan':\n"
                    "    print('\\n'.join(f'tile/{n:05} render <new frame> 0.05' for n in range(60_000)))\n"
                    "elif sys.argv[1] == 'diff':\n"
                    "    print('d' * 899_000)\n")
    summary = tmp_path / "summary.md"
    env = {**os.environ, "NBPIPE": f"{sys.executable} {fake}", "GITHUB_STEP_SUMMARY": str(summary)}
    job = subprocess.run(["bash", str(SCRIPT), "fork"], cwd=tmp_path, env=env,
                         capture_output=True, text=True)
    assert job.returncode == 0, job.stderr
    text = summary.read_text()
    assert len(text.encode()) < 1 << 20
    assert "tile/00000 render &lt;new frame&gt; 0.05\n" in text and "`nbpipe plan` prints all" in text


@needs_git
def test_main_commits_the_lock_and_outputs_never_the_local_cache(identity, tmp_path):
    """`git add -A` committed .nbpipe/ (every paid image, the index) in a repository that does
    not ignore it."""
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "nbpipe.yaml").write_text(MANIFEST.replace("backend: hiapi", "backend: preview"))
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "manifest")
    env = {**os.environ, "NBPIPE": f"{sys.executable} -m nbpipe", "NBPIPE_COMMIT_PUSH": "no"}
    job = subprocess.run(["bash", str(SCRIPT), "main"], cwd=repo, env=env, capture_output=True,
                         text=True)
    assert job.returncode == 0, job.stderr
    tracked = git(repo, "ls-files").split()
    assert "nbpipe.lock" in tracked and "out/workshop.png" in tracked
    assert not [path for path in tracked if path.startswith(".nbpipe")]


def test_a_failed_build_is_in_the_summary_even_when_a_later_step_fails(tmp_path):
    """The reason was written last: a push that failed after a failed build ended the script
    first, and the summary did not say the build failed."""
    fake = tmp_path / "fake_nbpipe.py"
    fake.write_text("import sys\n"
                    "sys.exit({'build': 1, 'push': 2}.get(sys.argv[1], 0))\n")
    summary = tmp_path / "summary.md"
    env = {**os.environ, "NBPIPE": f"{sys.executable} {fake}", "GITHUB_STEP_SUMMARY": str(summary)}
    job = subprocess.run(["bash", str(SCRIPT), "pr"], cwd=tmp_path, env=env,
                         capture_output=True, text=True)
    assert job.returncode != 0
    assert "**nbpipe build failed (exit 1)**" in summary.read_text()


# main's push when main moved during the job: a developer pushes while the job's build runs
# (the job's `nbpipe` is the real one, then the developer's push: no timing involved)
ON_PREVIEW = MANIFEST.replace("backend: hiapi", "backend: preview")
THEN = """\
#!/usr/bin/env bash
"$PY" -m nbpipe "$@" || exit
if [ "$1" = build ] && [ -f "$MEANWHILE" ]; then  # once: the job's first build
  mv "$MEANWHILE" "$MEANWHILE.ran"
  (cd "$DEV" && export GIT_AUTHOR_NAME=dev GIT_COMMITTER_NAME=dev \
     GIT_AUTHOR_EMAIL=dev@example.com GIT_COMMITTER_EMAIL=dev@example.com && bash -e "$MEANWHILE.ran")
fi
"""


@pytest.fixture
def dev(origin, tmp_path) -> Path:
    """A developer's clone; main holds the storyboard, with no lock yet."""
    dev = tmp_path / "dev"
    subprocess.run(["git", "clone", "-q", str(origin), str(dev)], check=True, capture_output=True)
    git(dev, "symbolic-ref", "HEAD", "refs/heads/main")
    (dev / "nbpipe.yaml").write_text(ON_PREVIEW)
    (dev / ".gitignore").write_text(".nbpipe/\n")
    git(dev, "add", ".")
    git(dev, "commit", "-q", "-m", "storyboard")
    git(dev, "push", "-q", "origin", "main")
    return dev


def main_job(origin: Path, dev: Path, tmp_path: Path, meanwhile: str = "",
             pre_push: str = "") -> tuple[subprocess.CompletedProcess, Path]:
    """The main job in a shallow clone (as actions/checkout makes it) with no git identity;
    `meanwhile` runs in the developer's clone right after the job's first build, `pre_push`
    in the job's clone each time it pushes."""
    job = tmp_path / "ci-main"
    subprocess.run(["git", "clone", "-q", "--depth", "1", origin.as_uri(), str(job)],
                   check=True, capture_output=True)
    then = tmp_path / "nbpipe-then.sh"
    then.write_text(THEN)
    if meanwhile:
        (tmp_path / "meanwhile.sh").write_text(meanwhile)
    if pre_push:
        hook = job / ".git" / "hooks" / "pre-push"
        hook.write_text(f"#!/usr/bin/env bash\ncat > /dev/null\n"
                        f"unset GIT_DIR GIT_WORK_TREE GIT_INDEX_FILE\n{pre_push}")
        hook.chmod(0o755)
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GIT_AUTHOR_", "GIT_COMMITTER_", "NBPIPE_"))}
    env |= {"HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1", "PY": sys.executable,
            "NBPIPE": f"bash {then}", "MEANWHILE": str(tmp_path / "meanwhile.sh"),
            "DEV": str(dev), "GITHUB_STEP_SUMMARY": str(tmp_path / "main.md")}
    done = subprocess.run(["bash", str(SCRIPT), "main"], cwd=job, env=env, capture_output=True,
                          text=True)
    return done, job


def subjects(origin: Path) -> list[str]:
    return git(origin, "log", "--format=%s", "main").splitlines()


@needs_git
def test_main_replays_its_commit_onto_a_main_that_moved_during_the_build(origin, dev, tmp_path):
    """The push was rejected and the job failed when anyone pushed to main while it built."""
    meanwhile = ("echo 'Storyboard notes' > NOTES.md\ngit add NOTES.md\n"
                 "git commit -q -m notes\ngit push -q origin main\n")
    done, job = main_job(origin, dev, tmp_path, meanwhile)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "nbpipe: main moved to " in done.stdout and "pushed the lock and outputs" in done.stdout
    assert subjects(origin) == ["nbpipe build [skip ci]", "notes", "storyboard"]
    committed = json.loads(git(origin, "show", "main:nbpipe.lock"))
    assert committed == json.loads((job / "nbpipe.lock").read_text())
    assert len(committed["frames"]) == 6
    assert git(origin, "show", "main:NOTES.md") == "Storyboard notes\n"


@needs_git
def test_a_main_that_committed_its_own_lock_meanwhile_is_built_again_and_pushed(origin, dev,
                                                                                tmp_path):
    """The newer main changed the manifest and committed the lock of the one frame its author
    built: the replay conflicts, so the job builds that main (restoring what it paid for) and
    pushes a lock that matches its manifest."""
    meanwhile = ("sed -i 's/a rainy street/a rainy street at night/' nbpipe.yaml\n"
                 "\"$PY\" -m nbpipe build street\ngit add -A\n"
                 "git commit -q -m 'street at night'\ngit push -q origin main\n")
    done, job = main_job(origin, dev, tmp_path, meanwhile)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "main also changed the lock or outputs: building again on it" in done.stdout
    assert "0 rendered · 5 restored · 1 fresh" in done.stdout  # nothing rendered twice
    assert subjects(origin) == ["nbpipe build [skip ci]", "street at night", "storyboard"]
    committed = json.loads(git(origin, "show", "main:nbpipe.lock"))
    assert committed == json.loads((job / "nbpipe.lock").read_text())
    mine = json.loads((dev / "nbpipe.lock").read_text())["frames"]
    assert committed["frames"]["street"] == mine["street"] and len(committed["frames"]) == 6
    fresh = clone(origin, tmp_path / "after")  # what main holds is up to date: nothing stale
    check = subprocess.run([sys.executable, "-m", "nbpipe", "-C", str(fresh), "build", "--check"],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


@needs_git
def test_main_gives_up_after_three_pushes_if_main_keeps_moving(origin, dev, tmp_path):
    moves = (f"git -C {dev} -c user.name=dev -c user.email=dev@example.com "
             f"commit -q --allow-empty -m moved\ngit -C {dev} push -q origin main\n")
    done, _ = main_job(origin, dev, tmp_path, pre_push=moves)
    assert done.returncode == 1
    assert "nbpipe: main moved 3 times during this job: not pushed. Nothing paid is lost" \
        in done.stderr
    assert subjects(origin) == ["moved"] * 3 + ["storyboard"]  # never forced over them


@needs_git
def test_a_push_refused_while_main_stood_still_fails_at_once(origin, dev, tmp_path):
    hook = origin / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'main is protected' >&2\nexit 1\n")
    hook.chmod(0o755)
    done, _ = main_job(origin, dev, tmp_path)
    assert done.returncode == 1
    assert "main is protected" in done.stderr
    assert "nbpipe: the push to main failed, and not because main moved" in done.stderr
    assert "moved to" not in done.stdout and subjects(origin) == ["storyboard"]


DEV_MOVES_ONCE = """\
#!/usr/bin/env bash
cat > /dev/null
unset GIT_DIR GIT_WORK_TREE GIT_INDEX_FILE
[ -f "$MOVED" ] && exit 0
touch "$MOVED"
cd "$DEV"
sed -i 's/a rainy street/a rainy street at night/' nbpipe.yaml
"$PY" -m nbpipe build --backend preview street > /dev/null
git add nbpipe.yaml nbpipe.lock
git -c user.name=dev -c user.email=dev@example.com commit -q -m 'street at night'
git push -q origin main
"""


def main_job_that_builds_again(origin: Path, tmp_path: Path,
                               restored: dict | None = None) -> subprocess.CompletedProcess:
    """The main job under a USD 0.30 cap on six HiAPI frames, while a developer pushes a changed
    manifest and lock as it first pushes (its replay conflicts: it builds again).
    `restored`: a state.json a CI cache restored into the job's clone first."""
    dev = tmp_path / "dev"
    subprocess.run(["git", "clone", "-q", str(origin), str(dev)], check=True,
                   capture_output=True)
    git(dev, "symbolic-ref", "HEAD", "refs/heads/main")
    (dev / "nbpipe.yaml").write_text(MANIFEST)  # six frames on HiAPI: USD 0.30
    (dev / ".gitignore").write_text(".nbpipe/\n")
    git(dev, "add", ".")
    git(dev, "commit", "-q", "-m", "storyboard")
    git(dev, "push", "-q", "origin", "main")
    job = tmp_path / "ci-main"
    subprocess.run(["git", "clone", "-q", "--depth", "1", origin.as_uri(), str(job)],
                   check=True, capture_output=True)
    if restored is not None:
        (job / ".nbpipe").mkdir()
        (job / ".nbpipe" / "state.json").write_text(json.dumps(restored))
    hook = job / ".git" / "hooks" / "pre-push"  # the developer pushes as the job first pushes
    hook.write_text(DEV_MOVES_ONCE)
    hook.chmod(0o755)
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1", "PY": sys.executable,
           "NBPIPE": f"{sys.executable} -m nbpipe", "NBPIPE_MAX_COST": "0.3",
           "DEV": str(dev), "MOVED": str(tmp_path / "moved"),
           "GITHUB_STEP_SUMMARY": str(tmp_path / "main.md")}
    return subprocess.run(["bash", str(SCRIPT), "main"], cwd=job, env=env, capture_output=True,
                          text=True)


@needs_git
def test_main_spends_at_most_nbpipe_max_cost_in_all_when_it_builds_again(origin, fake_hiapi,
                                                                         tmp_path):
    done = main_job_that_builds_again(origin, tmp_path)
    assert "building again on it" in done.stdout  # the replay conflicted (both added the lock)
    assert fake_hiapi.counts["creates"] * 0.05 <= 0.3 + 1e-9, done.stdout
    # the newer main's frame does not fit what is left: the job fails as a build over its cap
    # does, pushing nothing (what it paid for is in the cache for the next run)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "over budget: 1 frame(s) not rendered to stay within USD 0.00: street" in \
        done.stdout + done.stderr
