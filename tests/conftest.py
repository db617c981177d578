"""Fixtures shared by test modules. Add new fixtures here; keep the existing ones working."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
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


@pytest.fixture
def control(xvfb_display: str) -> Iterator[Any]:
    """An X connection of the test's own that moves, stacks, maps and destroys windows, and looks at the screen."""
    from Xlib.display import Display

    d = Display(xvfb_display)
    yield d
    d.close()


@pytest.fixture
def painters(xvfb_display: str) -> Iterator[Callable[..., Any]]:
    """Makes ``tests.xclient.Painter`` windows on the module's display (each painted once before it is returned),
    and closes them after the test."""
    from tests.xclient import Painter

    made: list[Painter] = []

    def make(*args: Any, **kwargs: Any) -> Painter:
        painter = Painter(xvfb_display, *args, **kwargs)
        made.append(painter)
        painter.wait_painted(0)
        return painter

    yield make
    for painter in made:
        painter.close()
