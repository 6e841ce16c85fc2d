"""The fakes are proven faithful by the vendors' own Python clients (hiapi, google-genai)."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from tests.fakes.gemini import FakeGemini
from tests.fakes.hiapi import FakeHiApi


@pytest.fixture
def hiapi_fake():
    with FakeHiApi() as fake:
        yield fake


def test_hiapi_sdk_runs_a_task_through_the_walk(hiapi_fake):
    from hiapi import HiAPI

    client = HiAPI(api_key=hiapi_fake.key, base_url=hiapi_fake.url + "/v1", max_retries=2)
    seen = []
    task = client.tasks.run(model="Nano-Banana", input={"prompt": "a cat", "aspect_ratio": "1:1"},
                            poll_interval=0.01, timeout=5, on_update=lambda t: seen.append(t.status))
    assert seen == ["queued", "handling", "archiving", "success"]
    assert task.task_id.startswith("tk-hiapi-") and len(task.task_id) == 35
    assert task.output[0].url.endswith(".png") and task.output[0].expire_at > 0
    page = client.tasks.list(page=1, size=5)
    assert [t.task_id for t in page.items] == [task.task_id]


def test_hiapi_sdk_idempotent_replay_and_mismatch(hiapi_fake):
    from hiapi import HiAPI
    from hiapi.errors import IdempotencyKeyMismatchError

    client = HiAPI(api_key=hiapi_fake.key, base_url=hiapi_fake.url + "/v1")
    first = client.tasks.create(model="Nano-Banana", input={"prompt": "x"}, idempotency_key="k")
    again = client.tasks.create(model="Nano-Banana", input={"prompt": "x"}, idempotency_key="k")
    assert (again.task_id, again.idempotent_replay, first.idempotent_replay) == \
        (first.task_id, True, False)
    with pytest.raises(IdempotencyKeyMismatchError):
        client.tasks.create(model="Nano-Banana", input={"prompt": "y"}, idempotency_key="k")
    assert hiapi_fake.counts["creates"] == 1


def test_hiapi_sdk_errors_and_retries(hiapi_fake):
    from hiapi import HiAPI
    from hiapi.errors import AuthenticationError, InvalidRequestError, TaskFailed

    client = HiAPI(api_key=hiapi_fake.key, base_url=hiapi_fake.url + "/v1", max_retries=3)
    with pytest.raises(InvalidRequestError):  # Nano-Banana answers 400 to `resolution`
        client.tasks.create(model="Nano-Banana", input={"prompt": "x", "resolution": "1K"})
    hiapi_fake.faults.add("create", "429", "503")  # retried by the SDK, Retry-After honoured
    assert client.tasks.create(model="Nano-Banana-2", input={"prompt": "x"}).task_id
    hiapi_fake.faults.add("task", "fail")
    with pytest.raises(TaskFailed):
        client.tasks.run(model="Nano-Banana", input={"prompt": "x"}, poll_interval=0.01)
    with pytest.raises(AuthenticationError):
        HiAPI(api_key="sk-wrong", base_url=hiapi_fake.url + "/v1").tasks.retrieve("tk-hiapi-x")


def test_hiapi_sdk_downloads_a_real_image(hiapi_fake):
    import urllib.request

    from hiapi import HiAPI

    client = HiAPI(api_key=hiapi_fake.key, base_url=hiapi_fake.url + "/v1")
    task = client.tasks.run(model="Nano-Banana-Pro", input={"prompt": "x", "output_format": "jpg"},
                            poll_interval=0.01)
    data = urllib.request.urlopen(task.output[0].url).read()
    assert Image.open(io.BytesIO(data)).format == "JPEG"


@pytest.mark.parametrize("version", ["v1beta", "v1"])
def test_genai_sdk_generates_an_image(version):
    from google import genai
    from google.genai import types

    with FakeGemini() as fake:
        client = genai.Client(api_key=fake.key, http_options=types.HttpOptions(
            base_url=fake.url, api_version=version))
        reference = Image.new("RGB", (8, 8), "red")
        buffer = io.BytesIO()
        reference.save(buffer, "PNG")
        response = client.models.generate_content(
            model="gemini-3-pro-image",
            contents=["a red shoe", types.Part.from_bytes(data=buffer.getvalue(),
                                                          mime_type="image/png")],
            config=types.GenerateContentConfig(
                response_modalities=["IMAGE"],
                image_config=types.ImageConfig(aspect_ratio="16:9", image_size="2K")))
        parts = response.candidates[0].content.parts
        assert parts[0].thought is True
        image = next(p for p in parts if p.inline_data is not None)
        assert image.inline_data.mime_type == "image/jpeg"
        assert Image.open(io.BytesIO(image.inline_data.data)).format == "JPEG"
        sent = fake.bodies[-1]
        assert sent["generationConfig"]["imageConfig"] == {"aspectRatio": "16:9", "imageSize": "2K"}


def test_genai_sdk_sees_errors_and_blocks():
    from google import genai
    from google.genai import errors, types

    with FakeGemini() as fake:
        client = genai.Client(api_key=fake.key, http_options=types.HttpOptions(base_url=fake.url))
        with pytest.raises(errors.ClientError) as info:  # 3 Pro has no 512 tier
            client.models.generate_content(
                model="gemini-3-pro-image", contents="x",
                config=types.GenerateContentConfig(image_config=types.ImageConfig(image_size="512")))
        assert info.value.code == 400
        small = client.models.generate_content(  # 3.1 Flash has, and the extreme ratios
            model="gemini-3.1-flash-image", contents="x",
            config=types.GenerateContentConfig(image_config=types.ImageConfig(
                image_size="512", aspect_ratio="8:1")))
        assert small.candidates[0].content.parts[-1].inline_data.mime_type == "image/png"
        fake.faults.add("generate", "safety")
        blocked = client.models.generate_content(model="gemini-3.1-flash-image", contents="x")
        assert blocked.candidates[0].finish_reason == types.FinishReason.IMAGE_SAFETY
        bad = genai.Client(api_key="wrong", http_options=types.HttpOptions(base_url=fake.url))
        with pytest.raises(errors.ClientError):
            bad.models.generate_content(model="gemini-3.1-flash-image", contents="x")


@pytest.mark.parametrize("retired", ["gemini-3-pro-image-preview", "gemini-3.1-flash-image-preview",
                                     "gemini-2.5-flash-image", "gemini-2.5-flash-image-preview"])
def test_genai_sdk_gets_404_for_a_retired_model(retired):
    from google import genai
    from google.genai import errors, types

    with FakeGemini() as fake:
        client = genai.Client(api_key=fake.key, http_options=types.HttpOptions(base_url=fake.url))
        with pytest.raises(errors.ClientError) as info:
            client.models.generate_content(model=retired, contents="x")
        assert (info.value.code, info.value.status) == (404, "NOT_FOUND")
        assert fake.counts.get("generates", 0) == 0


# fal-client reads its queue host from FAL_QUEUE_RUN_HOST once, when imported, and speaks only
# https: each run is a fresh process pointed at the fake, served over TLS with a throwaway
# certificate that the process trusts (SSL_CERT_FILE, which httpx reads).
FAL_SCRIPT = """
import json, sys
import fal_client
import httpx

calls = json.loads(sys.argv[1])
out = {}
handle = fal_client.submit(calls["model"], arguments=calls["arguments"])
out["events"] = [type(e).__name__ for e in handle.iter_events(interval=0.01)]
try:
    result = handle.get()
    out["result"] = result
    out["image"] = httpx.get(result["images"][0]["url"]).content[:8].hex()
except fal_client.client.FalClientHTTPError as exc:
    out["error"] = [exc.status_code, exc.message]
try:
    fal_client.status(calls["model"], "no-such-request")
except fal_client.client.FalClientHTTPError as exc:
    out["unknown"] = exc.status_code
print(json.dumps(out))
"""


def run_fal_client(fake, model: str, arguments: dict, key: str | None = None) -> dict:
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "FAL_KEY": key or fake.key, "FAL_QUEUE_RUN_HOST": fake.host,
           "SSL_CERT_FILE": fake.cert_file}
    done = subprocess.run([sys.executable, "-c", FAL_SCRIPT,
                           json.dumps({"model": model, "arguments": arguments})],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def test_fal_client_submits_polls_and_fetches_over_tls():
    from tests.fakes.fal import FakeFal

    with FakeFal(tls=True) as fake:
        out = run_fal_client(fake, "fal-ai/flux/dev", {"prompt": "a cat",
                                                        "image_size": "square_hd",
                                                        "output_format": "png"})
        assert out["events"][-1] == "Completed" and set(out["events"]) <= \
            {"Queued", "InProgress", "Completed"}
        image = out["result"]["images"][0]
        assert (image["width"], image["height"], image["content_type"]) == \
            (1024, 1024, "image/png")
        assert out["image"] == "89504e470d0a1a0a"  # a real PNG, from the URL it was handed
        assert out["result"]["has_nsfw_concepts"] == [False]
        assert out["unknown"] == 404
        # status and result were asked at the URLs the submit answered (owner/app only)
        assert [q.app for q in fake.requests.values()] == ["fal-ai/flux"]
        assert len(fake.billed) == 1 and fake.billed[0].usd == fake.spent()


def test_fal_client_sees_fal_s_validation_errors_and_a_refused_key():
    from tests.fakes.fal import FakeFal

    with FakeFal(tls=True) as fake:
        out = run_fal_client(fake, "fal-ai/flux-pro/kontext", {"prompt": "night",
                                                                "aspect_ratio": "5:4"})
        status, detail = out["error"]
        assert status == 422
        assert {(tuple(d["loc"]), d["type"]) for d in detail} == {
            (("body", "image_url"), "missing"), (("body", "aspect_ratio"), "enum")}
        assert fake.billed == []  # refused: nothing billed
        bad = subprocess_error(fake, "wrong-key")
        assert "401" in bad


def subprocess_error(fake, key: str) -> str:
    import os
    import subprocess
    import sys

    env = {**os.environ, "FAL_KEY": key, "FAL_QUEUE_RUN_HOST": fake.host,
           "SSL_CERT_FILE": fake.cert_file}
    script = ("import fal_client\ntry:\n"
              " fal_client.submit('fal-ai/flux/dev', arguments={'prompt': 'x'})\n"
              "except fal_client.client.FalClientHTTPError as e:\n print(e.status_code)")
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=120)
    return done.stdout
