"""nbpipe against the fake HiAPI, end to end through the CLI: counts at the server, faults."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import copy_example
from tests.samples import ONE, TWO, failures

HIAPI_PROJECTS = {"mira-storyboard": 5, "aria-lookbook": 3, "golden-hour-edit": 3}


def copy(name: str, tmp_path: Path) -> Path:
    root = tmp_path / name
    copy_example(name, root)
    return root


@pytest.mark.parametrize("name, frames", HIAPI_PROJECTS.items())
def test_example_projects_render_once_and_never_again(name, frames, fake_hiapi, build, tmp_path):
    root = copy(name, tmp_path)
    first = build(root)
    assert (first["rendered"], first["failed"]) == (frames, 0)
    assert fake_hiapi.counts["creates"] == frames
    assert len(set(fake_hiapi.created_keys)) == frames  # one Idempotency-Key per frame
    requests = fake_hiapi.counts["requests"]
    second = build(root)
    assert (second["rendered"], second["fresh"]) == (0, frames)
    assert fake_hiapi.counts["requests"] == requests  # a second build sends nothing at all
    lock = json.loads((root / "nbpipe.lock").read_text())
    for entry in lock["frames"].values():
        assert Image.open(root / entry["output"]).format == "PNG"


def test_edit_chain_sends_the_upstream_output_url(fake_hiapi, build, tmp_path):
    root = copy("golden-hour-edit", tmp_path)
    build(root)
    edits = [t for t in fake_hiapi.tasks.values() if "image_input" in t.input]
    assert len(edits) == 2
    base = next(t for t in fake_hiapi.tasks.values() if "image_input" not in t.input)
    assert edits[0].input["image_input"] == [f"{fake_hiapi.url}/files/{base.task_id}.png"]


def test_spend_is_counted_at_catalogue_prices(fake_hiapi, build, tmp_path):
    summary = build(copy("mira-storyboard", tmp_path))
    assert summary["spent_usd"] == 0.37


@pytest.mark.parametrize("faults", [("429",), ("503", "503"), ("drop",), ("409",)])
def test_create_faults_are_retried_without_a_second_task(faults, fake_hiapi, build,
                                                         make_project):
    fake_hiapi.faults.add("create", *faults)
    summary = build(make_project(TWO))
    assert (summary["rendered"], summary["failed"]) == (2, 0)
    assert fake_hiapi.counts["creates"] == 2
    if faults == ("drop",):
        assert fake_hiapi.counts["replays"] == 1  # the lost reply came back as a replay


@pytest.mark.parametrize("fault", ["429", "503", "drop", "garbage"])
def test_poll_faults_are_retried(fault, fake_hiapi, build, make_project):
    fake_hiapi.faults.add("poll", fault)
    summary = build(make_project(TWO))
    assert (summary["rendered"], fake_hiapi.counts["creates"]) == (2, 2)


def test_bad_request_fails_the_frame_once_and_others_go_on(fake_hiapi, build, make_project):
    fake_hiapi.faults.add("create", "400")
    summary = build(make_project(TWO))
    assert (summary["rendered"], summary["failed"], summary["code"]) == (1, 1, 1)
    assert list(failures(summary).values()) == [
        "HiAPI rejected the request (HTTP 400 INVALID_REQUEST): prompt rejected by policy"]
    assert fake_hiapi.counts["requests"] - fake_hiapi.counts["polls"] \
        - fake_hiapi.counts["downloads"] == 2  # the 400 was not retried


@pytest.mark.parametrize("fault, words", [
    ("401", "HiAPI refused the key (HTTP 401: refused ([redacted])); check HIAPI_API_KEY"),
    ("402", "HiAPI says the balance is insufficient (HTTP 402: refused ([redacted])); "
            "what was rendered so far is kept"),
])
def test_auth_and_balance_stop_the_build(fault, words, fake_hiapi, build, make_project):
    root = make_project(TWO.replace("  b: {prompt: a harbour}",
                                    "  b: {prompt: a harbour, inputs: [a], model: Nano-Banana-2}"))
    fake_hiapi.faults.add("create", fault)
    summary = build(root)
    assert summary["code"] == 1 and summary["rendered"] == 0
    assert failures(summary)["a"] == words
    assert fake_hiapi.counts["creates"] == 0
    assert fake_hiapi.key not in summary["out"] + summary["err"]


def test_failed_task_fails_the_frame_and_a_rerun_makes_a_new_task(fake_hiapi, build,
                                                                   make_project):
    root = make_project(TWO)
    fake_hiapi.faults.add("task", "fail")
    summary = build(root)
    assert summary["failed"] == 1
    assert list(failures(summary).values())[0].endswith(
        "failed: CONTENT_POLICY: the output was flagged")
    again = build(root)
    assert (again["rendered"], again["fresh"]) == (1, 1)
    assert len(set(fake_hiapi.created_keys)) == 3  # a new Idempotency-Key, not a replay


def test_stuck_task_times_out_and_the_next_build_resumes_it(fake_hiapi, build, make_project,
                                                             monkeypatch):
    monkeypatch.setenv("NBPIPE_HIAPI_TIMEOUT", "1.0")
    root = make_project(TWO)
    fake_hiapi.faults.add("task", "stuck")
    summary = build(root)
    assert (summary["failed"], summary["left"], summary["code"]) == (0, 1, 1)  # left out
    (left,) = [e for e in summary["events"] if e.get("status") == "left"]
    assert "the next build resumes it without paying again" in left["detail"]
    # HiAPI bills no failed task: due, counted by the build that collects its image
    assert left["due_usd"] == summary["left_usd"] == summary["due_usd"] == 0.05
    assert left["cost_usd"] == 0 and summary["spent_usd"] == 0.05
    for task in fake_hiapi.tasks.values():
        task.outcome = "success"  # the platform catches up
    again = build(root)
    assert (again["rendered"], again["failed"]) == (1, 0)
    assert (again["spent_usd"], again["spent_earlier_usd"]) == (0, 0.05)
    assert fake_hiapi.counts["creates"] == 2  # resumed, not created again


def test_unknown_status_stays_pollable(fake_hiapi, build, make_project):
    fake_hiapi.faults.add("task", "weird")
    assert build(make_project(TWO))["rendered"] == 2


def test_expired_output_url_is_read_again(fake_hiapi, build, make_project):
    fake_hiapi.faults.add("download", "gone")
    summary = build(make_project(TWO))
    assert (summary["rendered"], summary["failed"]) == (2, 0)
    fake_hiapi.faults.add("download", "gone", "gone")
    root = make_project(TWO.replace("a lighthouse", "a windmill"))
    summary = build(root)
    assert "output URL is gone" in list(failures(summary).values())[0]


@pytest.mark.parametrize("fault, words", [("truncate", "does not decode"),
                                          ("notimage", "not an image"),
                                          ("huge", "cap")])
def test_bad_bytes_fail_the_frame_and_never_enter_the_cache(fault, words, fake_hiapi, build,
                                                           make_project, monkeypatch):
    monkeypatch.setenv("NBPIPE_MAX_IMAGE_BYTES", str(1 << 20))
    root = make_project(TWO)
    fake_hiapi.faults.add("download", fault)
    summary = build(root)
    assert summary["failed"] == 1 and words in list(failures(summary).values())[0]
    blobs = list((root / ".nbpipe" / "blobs").glob("*/*"))
    assert all(Image.open(b).format == "PNG" for b in blobs)  # only images entered the cache
    assert list((root / ".nbpipe" / "tmp").iterdir()) == []
    notes = [e["message"] for e in summary["events"] if e["event"] == "note"]
    assert len(notes) == 1 and notes[0].startswith("recovered ")  # the paid task, re-attached
    again = build(root)  # restored from the cache: not created, not even downloaded again
    assert (again["rendered"], again["restored"], fake_hiapi.counts["creates"]) == (0, 1, 2)


def test_slow_drip_download_times_out(fake_hiapi, build, make_project, monkeypatch):
    monkeypatch.setenv("NBPIPE_DOWNLOAD_TIMEOUT", "0.3")
    fake_hiapi.faults.add("download", "slow", "slow", "slow", "slow", "slow")
    summary = build(make_project(ONE))
    assert summary["failed"] == 1
    assert "longer than" in list(failures(summary).values())[0]


def test_local_file_inputs_on_hiapi_are_a_plan_time_error(fake_hiapi, run, make_project):
    from tests.conftest import tiny_png

    root = make_project("""\
version: 1
defaults: {backend: hiapi, model: Nano-Banana-2}
targets:
  a: {prompt: restyle it, inputs: [refs/photo.png]}
""", {"refs/photo.png": tiny_png()})
    result = run("-C", str(root), "build")
    assert result.code == 2
    assert result.err.splitlines()[0].endswith(
        "error: HiAPI takes input images as URLs, and 'refs/photo.png' is a local file")
    assert fake_hiapi.counts["requests"] == 0
    assert run("-C", str(root), "build", "--backend", "preview").code == 0


def test_https_references_go_as_urls(fake_hiapi, build, make_project):
    root = make_project("""\
version: 1
defaults: {backend: hiapi, model: Nano-Banana-Pro}
bibles:
  mira: {text: "Mira.", references: ["https://example.com/mira-face.png"]}
targets:
  a: {prompt: "{{ bible }} at work", bible: mira}
""")
    assert build(root)["rendered"] == 1
    (task,) = fake_hiapi.tasks.values()
    assert task.input["image_input"] == ["https://example.com/mira-face.png"]


@pytest.mark.parametrize("fault, words", [
    ("fileurl", "refused to download from a non-http(s) URL (file:///etc/passwd)"),
    ("badurl", "refused to download from an invalid URL (http://[::1)")])
def test_output_urls_must_be_valid_http_and_a_bad_one_is_not_resumed(fault, words, fake_hiapi,
                                                                      build, make_project):
    root = make_project(ONE)
    fake_hiapi.faults.add("task", fault)
    summary = build(root)
    assert list(failures(summary).values()) == [words]
    assert fake_hiapi.counts["downloads"] == 0
    again = build(root)  # the image of that task can never be fetched: a new task, once
    assert (again["rendered"], again["failed"], fake_hiapi.counts["creates"]) == (1, 0, 2)


def test_redirect_loops_are_bounded(fake_hiapi, build, make_project):
    fake_hiapi.faults.add("download", "loop")
    summary = build(make_project(ONE))
    assert list(failures(summary).values()) == ["the download URL redirected too many times"]
    assert fake_hiapi.counts["downloads"] <= 12  # 5 redirects, and the recovery pass once more


def test_a_model_hiapi_does_not_know_stops_the_build_once(fake_hiapi, build, make_project):
    root = make_project("version: 1\ndefaults: {backend: hiapi, model: Nano-Banana}\n"
                        "targets:\n  shot: {prompt: a shoe, matrix: {n: [1, 2, 3, 4, 5]}}\n")
    fake_hiapi.faults.add("create", "404")
    summary = build(root, "-j", "1")
    message = ("HiAPI does not know model 'Nano-Banana': it may have been retired; "
               "`nbpipe models` lists the current ones")
    assert (summary["code"], summary["failed"], summary["skipped"]) == (1, 1, 4)
    assert list(failures(summary).values()) == [message]
    assert summary["events"][-1] == {"event": "note", "message": f"build stopped: {message}"}
    assert fake_hiapi.counts["requests"] == 1 and fake_hiapi.counts.get("creates", 0) == 0


def test_a_long_prompt_reaches_a_model_whose_limit_nobody_states(fake_hiapi, build, make_project):
    # HiAPI documents no prompt maximum for Nano-Banana-2; the catalogue checks none, and the
    # fake, reading the same catalogue, refuses none (it used to cap at 20,000 on its own).
    long = "a lighthouse at dusk, " * 1200  # 26,400 characters
    root = make_project("version: 1\ndefaults: {backend: hiapi, model: Nano-Banana-2}\n"
                        f"targets:\n  a: {{prompt: '{long}'}}\n")
    summary = build(root)
    assert (summary["rendered"], summary["failed"]) == (1, 0)


def test_a_create_another_build_already_paid_for_is_reported_by_that_build_only(
        fake_hiapi, build, tmp_path):
    """Two clones on their own caches, one account: the second's create is answered as a
    replay of the first's task (HiAPI bills nothing new). The first reports the money; the
    second reports 0, so the team's summaries add up to the bill."""
    first = build(copy("aria-lookbook", tmp_path / "one"))
    second = build(copy("aria-lookbook", tmp_path / "two"))
    assert fake_hiapi.counts["creates"] == 3 and fake_hiapi.counts["replays"] == 3
    assert (first["rendered"], second["rendered"]) == (3, 3)
    assert first["spent_usd"] == 0.15
    assert (second["spent_usd"], second["spent_earlier_usd"]) == (0.0, 0.0)
    assert sum(e["cost_usd"] for e in second["events"] if e["event"] == "frame") == 0


def test_a_replay_after_a_lost_reply_is_still_this_builds_own_payment(fake_hiapi, build,
                                                                       make_project):
    """The first create's reply is lost (billed), the retry is answered as a replay: that
    task is this build's own, and its money is reported here."""
    fake_hiapi.faults.add("create", "drop")
    summary = build(make_project(TWO))
    assert fake_hiapi.counts["replays"] == 1
    assert summary["spent_usd"] == 0.1


def test_a_replay_after_a_409_is_still_another_builds_task(fake_hiapi, build, tmp_path):
    """A clone's create meets 409 (the first build's create of the same key still running:
    HiAPI processed nothing of it), then a replay: the task is the first build's, reported
    there once."""
    first = build(copy("aria-lookbook", tmp_path / "one"))
    fake_hiapi.faults.add("create", "409")
    second = build(copy("aria-lookbook", tmp_path / "two"))
    assert fake_hiapi.counts["creates"] == 3
    assert (first["spent_usd"], second["spent_usd"]) == (0.15, 0.0)
