from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from tests.warm.common import Warm


@pytest.fixture
def short_dir():
    """A folder with a short path: a socket's path has 108 bytes, and pytest's tmp_path can
    take most of them."""
    folder = Path(tempfile.mkdtemp(prefix="nbw", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def warm(short_dir):
    made = Warm(short_dir)
    yield made
    made.stop()
