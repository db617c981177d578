"""Fixtures shared by test modules. Add new fixtures here; keep the existing ones working."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from impromptu.display import Xvfb
from tests.harness import CHROMIUM, CHROMIUM_ARGS


@pytest.fixture(scope="module")
def xvfb_display() -> Iterator[str]:
    """A fresh 640x480 Xvfb for the test module; yields its display name (":N").

    Xvfb picks a free display number itself (``-displayfd``); ``os.environ`` is left alone, pass the name on.
    """
    if shutil.which("Xvfb") is None:
        pytest.skip("needs Xvfb (apt-get install xvfb)")
    with Xvfb((640, 480)) as xvfb:
        yield xvfb.name


@pytest.fixture(scope="module")
def playwright() -> Iterator[Any]:
    """Playwright's sync API for the test module (browser test modules skip themselves without it)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Any) -> Iterator[Any]:
    """Debian's headless Chromium for the test module, with the flags of DESIGN.md."""
    b = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
    yield b
    b.close()
