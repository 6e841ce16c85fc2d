from __future__ import annotations

import pytest

from nbpipe.errors import UsageError
from nbpipe.ops.maintain import parse_age, parse_size


@pytest.mark.parametrize("text, size", [("800", 800), ("2K", 2048), ("1.5MB", 1572864),
                                        ("2G", 2 * 1024 ** 3), ("3GiB", 3 * 1024 ** 3)])
def test_sizes(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text, seconds", [("30d", 30 * 86400), ("12h", 43200), ("2w", 1209600),
                                           ("90s", 90)])
def test_ages(text, seconds):
    assert parse_age(text) == seconds


@pytest.mark.parametrize("bad", ["", "lots", "-1G", "3 parsecs"])
def test_bad_values_are_usage_errors(bad):
    with pytest.raises(UsageError):
        parse_size(bad)
    with pytest.raises(UsageError):
        parse_age(bad)
