"""The loader: YAML 1.2, positions, duplicate keys, encodings, bounded expansion."""

from __future__ import annotations

from pathlib import Path

import pytest

from nbpipe.errors import ManifestError
from nbpipe.manifest.load import load_manifest, parse_manifest


def errors(text: str) -> list[str]:
    with pytest.raises(ManifestError) as info:
        parse_manifest(text, Path("."))
    return [d.message for d in info.value.diagnostics]


def test_yaml_1_2_keeps_ratios_as_text():
    loaded = parse_manifest('version: 1\ndefaults: {aspect_ratio: 16:9}\n', Path("."))
    assert loaded.manifest.defaults.aspect_ratio == "16:9"  # YAML 1.1 would say 969


def test_numeric_resolution_becomes_text():
    loaded = parse_manifest("version: 1\ndefaults: {resolution: 512}\n", Path("."))
    assert loaded.manifest.defaults.resolution == "512"


def test_positions_are_recorded_for_keys_and_values():
    loaded = parse_manifest("version: 1\ntargets:\n  a:\n    prompt: hi\n", Path("."))
    assert loaded.source.keys[("targets", "a", "prompt")] == (4, 5)
    assert loaded.source.values[("targets", "a", "prompt")] == (4, 13)


def test_duplicate_keys_are_an_error_not_an_overwrite():
    assert errors("version: 1\nname: a\nname: b\n") == ["duplicate key 'name'"]


def test_alias_bomb_is_refused_early():
    bomb = ["version: 1", "a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        prev = "*" + chr(ord("a") + i - 1)
        bomb.append(f"{chr(ord('a') + i)}: &{chr(ord('a') + i)} [{', '.join([prev] * 10)}]")
    (message,) = errors("\n".join(bomb) + "\n")
    assert "expands to more than 1,000,000 values" in message


def test_deep_nesting_is_refused():
    text = "version: 1\nname: " + "[" * 200 + "]" * 200 + "\n"
    (message,) = errors(text)
    assert "nested" in message


def test_non_utf8_is_located(tmp_path):
    (tmp_path / "nbpipe.yaml").write_bytes(b"version: 1\nname: caf\xe9\n")
    with pytest.raises(ManifestError) as info:
        load_manifest(tmp_path)
    (diag,) = info.value.diagnostics
    assert (diag.line, diag.col) == (2, 10)
    assert "not valid UTF-8" in diag.message


def test_missing_manifest_suggests_init(tmp_path):
    with pytest.raises(ManifestError) as info:
        load_manifest(tmp_path)
    assert f"nbpipe -C {tmp_path} init" in info.value.render()


def test_bible_short_and_long_forms():
    loaded = parse_manifest(
        "version: 1\nbibles:\n  a: short text\n  b: {text: long, markers: [m]}\n", Path("."))
    assert loaded.manifest.bibles["a"] == "short text"
    assert loaded.manifest.bibles["b"].markers == ["m"]
