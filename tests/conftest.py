"""Fixtures shared by test modules. Add new fixtures here; keep the existing ones working."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from impromptu.display import Xvfb


@pytest.fixture(scope="module")
def xvfb_display() -> Iterator[str]:
    """A fresh 640x480 Xvfb for the test module; yields its display name (":N").

    Xvfb picks a free display number itself (``-displayfd``); ``os.environ`` is left alone, pass the name on.
    """
    if shutil.which("Xvfb") is None:
        pytest.skip("needs Xvfb (apt-get install xvfb)")
    with Xvfb((640, 480)) as xvfb:
        yield xvfb.name
