"""fal's key is `key_id:key_secret` (review of #25, L2): an error body that echoes the secret
half, or the key percent-encoded (`id%3Asecret`, `id%3asecret`), is scrubbed as the whole key
is; the id alone names the key but opens nothing, and stays readable."""

import pytest

from nbpipe.backends.replies import REDACTED, parse_json, scrub

KEY = "3f1c-key-id:9a8b7c6d5e4f-secret/+="
SECRET = "9a8b7c6d5e4f-secret/+="


@pytest.mark.parametrize("echoed", [
    f"Invalid secret {SECRET}",
    "key 3f1c-key-id%3A9a8b7c6d5e4f-secret%2F%2B%3D",
    "key 3f1c-key-id%3a9a8b7c6d5e4f-secret%2f%2b%3d",
    "secret 9a8b7c6d5e4f-secret%2F%2B%3D",
    f"Key {KEY}",
])
def test_every_form_of_a_fal_key_is_scrubbed(echoed):
    out = scrub(echoed, KEY)
    assert "9a8b7c6d5e4f" not in out and REDACTED in out


def test_the_key_id_alone_and_a_short_half_stay_readable():
    assert scrub("key 3f1c-key-id is unknown", KEY) == "key 3f1c-key-id is unknown"
    assert scrub("a b: c", "a:b") == "a b: c"


def test_a_reply_body_is_scrubbed_of_the_secret_half():
    body = parse_json(b'{"detail": "secret 9a8b7c6d5e4f-secret/+= is revoked"}', KEY)
    assert body == {"detail": f"secret {REDACTED} is revoked"}
