"""nbpipe against the fake fal queue, end to end through the CLI: what the queue saw and
billed, faults, and a submit whose reply was lost (possibly billed, never resent)."""

from __future__ import annotations

import base64
import json
from decimal import Decimal
from pathlib import Path

import pytest

from nbpipe.backends import registry
from nbpipe.backends.base import TaskStillOut
from nbpipe.backends.fal import Queued, checked
from nbpipe.backends.replies import FalQueued
from nbpipe.errors import TaskFailed
from tests.fakes.fal import FakeFal
from tests.samples import failures, journal, notes

# a FLUX frame, a FLUX1.1 [pro] frame, and a Kontext edit of the first: 0.025 + 0.04 + 0.04
PROJECT = """\
version: 1
defaults: {backend: fal, model: fal-ai/flux/dev}
targets:
  a: {prompt: a lighthouse at dusk, aspect_ratio: "16:9"}
  c: {prompt: a harbour, model: fal-ai/flux-pro/v1.1, aspect_ratio: "3:4", output_format: jpeg}
  b: {prompt: paint it red, inputs: [a], model: fal-ai/flux-pro/kontext, aspect_ratio: "3:2"}
"""
TWO = """\
version: 1
defaults: {backend: fal, model: fal-ai/flux/dev}
targets:
  a: {prompt: a lighthouse}
  b: {prompt: a harbour}
"""



def test_a_project_with_an_edit_submits_once_per_frame_spends_what_fal_billed(
        fake_fal, build, make_project):
    root = make_project(PROJECT)
    first = build(root)
    assert (first["rendered"], first["failed"]) == (3, 0), first["err"]
    assert fake_fal.counts["submits"] == 3
    assert Decimal(str(first["spent_usd"])) == fake_fal.spent() == Decimal("0.105")
    requests = fake_fal.counts["requests"]
    second = build(root)
    assert (second["rendered"], second["fresh"]) == (0, 3)
    assert fake_fal.counts["requests"] == requests  # a rebuild sends nothing at all
    assert journal(root).open == {}
    import jsonschema

    schema = Path(__file__).parents[2] / "schemas" / "nbpipe.lock.schema.json"
    jsonschema.validate(json.loads((root / "nbpipe.lock").read_text()),
                        json.loads(schema.read_text()))


def test_bodies_name_sizes_formats_and_the_edit_s_image(fake_fal, build, make_project):
    root = make_project(PROJECT)
    build(root)
    by_prompt = {body["prompt"]: body for body in fake_fal.submitted}
    assert by_prompt["a lighthouse at dusk"] == {"prompt": "a lighthouse at dusk",
                                                 "image_size": "landscape_16_9",
                                                 "output_format": "png"}
    assert by_prompt["a harbour"]["image_size"] == "portrait_4_3"
    assert by_prompt["a harbour"]["output_format"] == "jpeg"
    edit = by_prompt["paint it red"]
    assert edit["aspect_ratio"] == "3:2" and "image_size" not in edit
    head, _, data = edit["image_url"].partition(",")
    assert head == "data:image/png;base64"
    assert base64.b64decode(data) == (root / "out" / "a.png").read_bytes()


def test_status_and_result_urls_are_the_ones_the_submit_answered(fake_fal, build,
                                                                 make_project):
    """fal-ai/flux/dev is polled under fal-ai/flux/requests/...: a client that built the URL
    from the model id would poll a 404 (the fake answers so) and never collect."""
    summary = build(make_project(TWO))
    assert summary["rendered"] == 2
    assert all(q.app == "fal-ai/flux" for q in fake_fal.requests.values())


def test_a_lost_submit_reply_is_announced_counted_and_never_resent(fake_fal, build,
                                                                   make_project):
    root = make_project(TWO)
    fake_fal.faults.add("submit", "lost")
    first = build(root)
    assert (first["rendered"], first["failed"]) == (1, 1)
    assert fake_fal.counts["submits"] == 2  # the lost one was not sent again in the build
    [why] = failures(first).values()
    assert "fal has no idempotency key, so the request may be queued and billed" in why
    assert (first["maybe_billed"], first["maybe_billed_usd"]) == (1, 0.025)
    assert journal(root).open == {}  # closed: no later build announces it a second time
    second = build(root)
    assert (second["rendered"], second["failed"]) == (1, 0)
    assert fake_fal.counts["submits"] == 3  # the next build sends it again, once
    assert "maybe_billed" not in second and not any("in flight" in n for n in notes(second))


@pytest.mark.parametrize("faults", [("429",), ("500", "503")])
def test_submits_refused_before_queueing_are_tried_again(faults, fake_fal, build,
                                                         make_project):
    fake_fal.faults.add("submit", *faults)
    summary = build(make_project(TWO))
    assert (summary["rendered"], summary["failed"]) == (2, 0)
    assert fake_fal.counts["submits"] == 2 and "maybe_billed" not in summary


@pytest.mark.parametrize("fault", ["502", "garbage"])
def test_a_submit_answered_by_a_gateway_or_with_garbage_is_possibly_billed(fault, fake_fal,
                                                                          build, make_project):
    fake_fal.faults.add("submit", fault)
    summary = build(make_project(TWO))
    assert (summary["rendered"], summary["failed"], summary["maybe_billed"]) == (1, 1, 1)
    sent = fake_fal.counts["requests"] - fake_fal.counts["statuses"] - \
        fake_fal.counts["results"] - fake_fal.counts["downloads"]
    assert sent == 2  # one submit each: neither was sent again


@pytest.mark.parametrize("fault", ["429", "503", "drop"])
def test_status_faults_are_asked_again(fault, fake_fal, build, make_project):
    fake_fal.faults.add("status", fault)
    summary = build(make_project(TWO))
    assert (summary["rendered"], fake_fal.counts["submits"]) == (2, 2)


def test_a_refused_input_fails_the_frame_with_fal_s_words_and_costs_nothing(
        fake_fal, build, make_project):
    root = make_project(TWO.replace("a lighthouse", "a flagged lighthouse"))
    summary = build(root)
    assert (summary["rendered"], summary["failed"]) == (1, 1)
    [why] = failures(summary).values()
    assert why.endswith("HTTP 422: body.prompt: The content was flagged by a content checker. "
                        "(content_policy_violation)"), why
    assert summary["spent_usd"] == 0.025 == float(fake_fal.spent())
    assert journal(root).open == {}


def test_a_runner_failure_fails_the_frame_unbilled(fake_fal, build, make_project):
    fake_fal.faults.add("request", "fail")
    summary = build(make_project(TWO))
    assert (summary["rendered"], summary["failed"]) == (1, 1)
    assert "runner_server_error" in next(iter(failures(summary).values()))
    assert summary["spent_usd"] == float(fake_fal.spent()) == 0.025


def test_an_image_flagged_by_the_safety_checker_is_paid_and_lost(fake_fal, build,
                                                                 make_project):
    fake_fal.faults.add("request", "nsfw")
    summary = build(make_project(TWO))
    assert (summary["rendered"], summary["failed"], summary["lost"]) == (1, 1, 1)
    assert summary["spent_usd"] == float(fake_fal.spent()) == 0.05


def test_an_expired_image_url_is_a_lost_image_counted_as_spent(fake_fal, build, make_project):
    fake_fal.faults.add("media", *["expired"] * 10)
    summary = build(make_project(TWO.replace("  b: {prompt: a harbour}\n", "")))
    assert (summary["rendered"], summary["lost"], summary["lost_usd"]) == (0, 1, 0.025)
    assert summary["spent_usd"] == 0.025 == float(fake_fal.spent())


def test_a_refused_key_stops_the_build_naming_fal_key(fake_fal, build, make_project,
                                                      monkeypatch):
    monkeypatch.setenv("FAL_KEY", "wrong")
    summary = build(make_project(TWO))
    assert summary["rendered"] == 0 and fake_fal.counts["submits"] == 0
    assert "fal refused the key (HTTP 401" in summary["out"] and "check FAL_KEY" in \
        summary["out"]


def test_no_key_is_a_usage_error_naming_fal_key(run, make_project, monkeypatch):
    monkeypatch.delenv("FAL_KEY", raising=False)
    result = run("-C", str(make_project(TWO)), "build")
    assert result.code == 2 and "FAL_KEY is not set" in result.err


def test_urls_on_another_host_are_never_polled_with_the_key():
    """The submit's reply (or a journal line others may write) names the URLs the key goes to:
    only the queue's own origin is polled."""
    base = "https://queue.fal.run"
    good = FalQueued(request_id="r1", status_url=f"{base}/fal-ai/flux/requests/r1/status",
                     response_url=f"{base}/fal-ai/flux/requests/r1")
    assert checked(good, base).status_url == good.status_url
    for other in ("https://evil.example/r1/status", "http://queue.fal.run/x",
                  "https://queue.fal.run:444/x", "file:///etc/passwd"):
        with pytest.raises(TaskFailed, match="the key is not sent there"):
            checked(good.model_copy(update={"status_url": other}), base)
    assert Queued.of(Queued("r1", good.status_url, good.response_url).handle(), base) == \
        Queued("r1", good.status_url, good.response_url)
    with pytest.raises(TaskFailed, match="not a fal request"):
        Queued.of("r1 only-two", base)
    elsewhere = Queued("r1", "https://evil.example/r1/status", good.response_url).handle()
    with pytest.raises(TaskStillOut, match="whose FAL_BASE_URL is https://evil.example"):
        Queued.of(elsewhere, base)  # paid, maybe: left open, and the key not sent there


def test_a_submit_reply_naming_another_host_is_possibly_billed(fake_fal, build, make_project):
    from tests.fakes.server import Elsewhere

    with Elsewhere() as elsewhere:
        fake_fal.answer_base = elsewhere.url  # the reply points the polls at another origin
        summary = build(make_project(TWO.replace("  b: {prompt: a harbour}\n", "")))
    assert (summary["failed"], summary["maybe_billed"]) == (1, 1)
    assert elsewhere.counts["requests"] == 0 and fake_fal.counts["submits"] == 1


def test_the_registry_knows_fal_as_a_task_lane_that_never_resends():
    fal = registry.spec("fal")
    assert (fal.lane, fal.resumable, fal.unrepeatable) == (registry.Lane.TASK, True, False)
    assert fal.unfindable and not fal.idempotent and fal.would_send is None
    assert not registry.spec("hiapi").unfindable and registry.spec("gemini").unfindable


def test_models_lists_fal_s_three_models(run):
    result = run("models", "--backend", "fal", "--json")
    assert result.code == 0, result.err
    found = {m["model"] for m in json.loads(result.out)["models"]}
    assert found == {"fal-ai/flux/dev", "fal-ai/flux-pro/v1.1", "fal-ai/flux-pro/kontext"}


def with_c2pa(fmt: str, request_id: str) -> bytes:
    """A PNG carrying a C2PA manifest store chunk (`caBX`, a JUMBF box) after its header, as a
    vendor embeds provenance."""
    import struct
    import zlib

    from tests.fakes.server import image_bytes

    png = image_bytes("png", request_id)
    data = b"\x00\x00\x00\x1ajumb\x00\x00\x00\x12jumdc2pa" + request_id.encode()[:8]
    chunk = struct.pack(">I", len(data)) + b"caBX" + data + \
        struct.pack(">I", zlib.crc32(b"caBX" + data))
    end_of_header = 8 + 25  # the signature, then IHDR (length, type, 13 bytes, crc)
    return png[:end_of_header] + chunk + png[end_of_header:]


def test_fal_s_bytes_are_kept_untouched_with_their_c2pa_provenance(monkeypatch, build,
                                                                  make_project):
    with FakeFal(make_image=with_c2pa) as fake:
        monkeypatch.setenv("FAL_KEY", fake.key)
        monkeypatch.setenv("FAL_BASE_URL", fake.url)
        monkeypatch.setenv("NBPIPE_FAL_POLL_INTERVAL", "0.01")
        root = make_project(TWO.replace("  b: {prompt: a harbour}\n", ""))
        summary = build(root)
        assert summary["rendered"] == 1, summary["err"]
        [queued] = fake.requests.values()
        written = (root / "out" / "a.png").read_bytes()
        assert b"caBX" in written and written == queued.image()


def test_an_edit_model_without_an_input_image_is_a_located_plan_error(run, make_project):
    root = make_project(TWO + "  k: {prompt: paint it red, model: fal-ai/flux-pro/kontext}\n")
    result = run("-C", str(root), "plan")
    assert result.code == 2
    assert "nbpipe.yaml:6:6: error: fal-ai/flux-pro/kontext is an edit model: it needs 1 " \
        "input image(s), and target 'k' sends 0" in result.err, result.err


def test_a_model_fal_does_not_know_stops_the_build_naming_it(fake_fal, build, make_project):
    fake_fal.faults.add("submit", "404")
    summary = build(make_project(TWO), "-j", "1")
    assert summary["rendered"] == 0 and fake_fal.counts["submits"] == 0
    assert "fal does not know model 'fal-ai/flux/dev'" in summary["out"], summary["out"]


def test_the_submit_sends_the_size_the_key_holds_and_nothing_the_key_does_not(
        fake_fal, build, make_project):
    """The preset is chosen at plan time, from the project's catalogue, into the request (and
    so the key); the backend reads no catalogue of its own. A FLUX frame without a ratio is
    sent the square preset its key names, not left to fal's default (landscape_4_3)."""
    from nbpipe.backends.fal import submit_body
    from nbpipe.plan.frame import Request

    build(make_project(TWO))
    assert [body.get("image_size") for body in fake_fal.submitted] == ["square_hd"] * 2
    asked = Request("fal", "fal-ai/flux/dev", "p", {"aspect_ratio": "16:9", "size": "custom"})
    assert submit_body(asked, [])["image_size"] == "custom"


def test_a_request_not_said_repeatable_is_never_resent_when_its_reply_is_lost():
    """No idempotency key at fal: a POST sent through the backend without saying otherwise (a
    submit, or any request added later) is possibly billed when its reply is lost; only the
    GETs that say so are asked again."""
    import asyncio

    from nbpipe.backends.fal import FalBackend, FalSettings
    from nbpipe.backends.http import ReplyLost, pooled_client
    from nbpipe.errors import FrameFailed

    async def lost(fake: FakeFal, **how) -> Exception:
        backend = FalBackend(FalSettings(api_key=fake.key, base_url=fake.url), pooled_client(1))
        try:
            await backend.exchange("POST", f"{fake.url}/fal-ai/flux/dev",
                                   {"Authorization": f"Key {fake.key}"}, {"prompt": "p"}, **how)
        except Exception as exc:  # the test looks at what it is
            return exc
        finally:
            await backend.aclose()
        raise AssertionError("the reply came")

    with FakeFal() as fake:
        fake.faults.add("submit", "lost", "lost")
        unsaid = asyncio.run(lost(fake))
        assert isinstance(unsaid, FrameFailed) and unsaid.maybe_billed
        assert isinstance(asyncio.run(lost(fake, repeatable=True)), ReplyLost)
