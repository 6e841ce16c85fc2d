"""The fake OpenAI Images API is proven faithful by the official `openai` package: generations,
multipart edits, errors as the SDK types them, and its own retries (which bill twice against a
lost reply: why nbpipe never resends a call whose body left)."""

from __future__ import annotations

import base64
import io
from decimal import Decimal

import pytest
from PIL import Image

from tests.fakes.openai import C2PA, FakeOpenAI

openai = pytest.importorskip("openai")


@pytest.fixture
def fake(monkeypatch):
    # the SDK's own pause between retries (0.5 s, doubling): what these tests count is the
    # requests its retries send, not how long it waits before each
    monkeypatch.setattr(openai._base_client, "INITIAL_RETRY_DELAY", 0.001)
    with FakeOpenAI() as server:
        yield server


def client(fake, **options):
    return openai.OpenAI(api_key=fake.key, base_url=fake.base, **options)


def png(colour: str = "red") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(out, "PNG")
    return out.getvalue()


def test_the_sdk_generates_an_image_priced_by_quality_and_size(fake):
    reply = client(fake).images.generate(model="gpt-image-1.5", prompt="a red shoe",
                                         size="1536x1024", quality="low", output_format="png")
    data = base64.b64decode(reply.data[0].b64_json)
    assert Image.open(io.BytesIO(data)).format == "PNG" and C2PA in data  # provenance inside
    (billed,) = fake.billed
    assert (billed.endpoint, billed.usd, billed.params["size"]) == \
        ("generations", Decimal("0.013"), "1536x1024")
    assert fake.bodies[0] == {"model": "gpt-image-1.5", "prompt": "a red shoe",
                              "size": "1536x1024", "quality": "low", "output_format": "png"}


def test_the_sdk_reads_openai_base_url_as_nbpipe_does(fake, monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", fake.base)
    monkeypatch.setenv("OPENAI_API_KEY", fake.key)
    reply = openai.OpenAI().images.generate(model="gpt-image-2", prompt="x", size="2048x864",
                                            quality="high", output_format="webp")
    assert Image.open(io.BytesIO(base64.b64decode(reply.data[0].b64_json))).format == "WEBP"
    assert fake.billed[0].usd == Decimal("0.844")  # gpt-image-2 high, priced at its 2K tier


def test_the_sdk_edits_with_several_images_as_multipart(fake):
    reply = client(fake).images.edit(model="gpt-image-2", prompt="restyle",
                                     image=[("a.png", png("red"), "image/png"),
                                            ("b.png", png("blue"), "image/png")],
                                     size="1024x1024", quality="medium")
    assert base64.b64decode(reply.data[0].b64_json).startswith(b"\x89PNG")
    (billed,) = fake.billed
    assert billed.endpoint == "edits" and billed.inputs == [png("red"), png("blue")]


def test_the_fake_rejects_what_the_api_rejects(fake):
    sdk = client(fake, max_retries=0)
    cases = [  # (call options, the param named, the SDK's error type)
        ({"model": "gpt-image-1.5", "size": "1024x768"}, "size", openai.BadRequestError),
        ({"model": "gpt-image-2", "size": "1000x1000"}, "size", openai.BadRequestError),
        ({"model": "gpt-image-2", "size": "3840x1008"}, "size", openai.BadRequestError),  # > 3:1
        ({"model": "gpt-image-2", "quality": "max"}, "quality", openai.BadRequestError),
        ({"model": "gpt-image-1.5", "background": "transparent", "output_format": "jpeg"},
         "background", openai.BadRequestError),
        ({"model": "gpt-image-1.5", "response_format": "b64_json"}, "response_format",
         openai.BadRequestError),
        ({"model": "gpt-image-1"}, None, openai.NotFoundError),  # shut down 2026-10-23
    ]
    for options, param, error in cases:
        with pytest.raises(error) as caught:
            sdk.images.generate(prompt="x", **options)
        assert caught.value.body.get("param") == param, options
    assert fake.billed == []
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(api_key="sk-wrong", base_url=fake.base, max_retries=0).images.generate(
            model="gpt-image-2", prompt="x")


def test_the_sdk_sees_faults_as_the_real_api_answers_them(fake):
    sdk = client(fake, max_retries=0)
    fake.faults.add("images", "moderation")
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.images.generate(model="gpt-image-2", prompt="x")
    assert caught.value.code == "moderation_blocked"
    fake.faults.add("images", "quota")
    with pytest.raises(openai.RateLimitError) as limited:
        sdk.images.generate(model="gpt-image-2", prompt="x")
    assert limited.value.code == "insufficient_quota"
    fake.faults.add("images", "429", "500", "503")  # refusals: the SDK retries, nothing billed
    client(fake, max_retries=3).images.generate(model="gpt-image-2", prompt="x")
    assert len(fake.billed) == 1 and fake.counts["requests"] == 6


def test_the_sdk_with_its_default_retries_bills_twice_for_a_lost_reply(fake):
    """The reason nbpipe never resends a call whose body left: the official client, as it comes
    (max_retries=2), sends the request again after a lost reply, and the server makes (and
    bills) the image twice for one image received."""
    fake.faults.add("images", "drop")
    sdk = client(fake)
    assert sdk.max_retries == 2  # the default
    sdk.images.generate(model="gpt-image-1-mini", prompt="a kite", quality="low", size="1024x1024")
    assert len(fake.billed) == 2 and fake.billed[0].fault == "drop"
    assert sum(b.usd for b in fake.billed) == 2 * Decimal("0.005")
