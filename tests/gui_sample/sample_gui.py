"""GUI tests as a project would write them, with the ``vdisplay`` fixture of ``pytest --impromptu``. The last two
fail on purpose, so that their recordings can be checked (tests/test_pytest_plugin.py): one after showing a
full-screen red window for a second and a half, one in the teardown of its fixture."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from impromptu import VirtualDisplay

APP = [sys.executable, str(Path(__file__).with_name("colour_app.py"))]


def wait_for_colour(vdisplay: VirtualDisplay, rgb: tuple[int, int, int], timeout_s: float = 10.0) -> np.ndarray:
    """The screen once its centre pixel is ``rgb`` (X may show the window before the app has painted it)."""
    deadline = time.monotonic() + timeout_s
    while True:
        shot = vdisplay.screenshot()
        height, width, _ = shot.shape
        centre = tuple(int(v) for v in shot[height // 4, width // 4])  # clear of the animated square
        if centre == rgb or time.monotonic() > deadline:
            assert centre == rgb, f"the screen shows {centre} where {rgb} was expected"
            return shot
        time.sleep(0.05)


def test_green_window(vdisplay: VirtualDisplay) -> None:
    vdisplay.launch([*APP, "--title", "sample green", "--colour", "00ff00"])
    window = vdisplay.wait_for_window("^sample green$", timeout=10)
    assert (window.width, window.height) == vdisplay.size
    wait_for_colour(vdisplay, (0, 255, 0))


def test_click_turns_blue(vdisplay: VirtualDisplay) -> None:
    vdisplay.launch([*APP, "--title", "sample click", "--colour", "ffffff", "--click-colour", "0000ff"])
    vdisplay.wait_for_window("sample click", timeout=10)
    wait_for_colour(vdisplay, (255, 255, 255))
    vdisplay.click(100, 100)
    wait_for_colour(vdisplay, (0, 0, 255))


def test_red_window_fails_on_purpose(vdisplay: VirtualDisplay) -> None:
    vdisplay.launch([*APP, "--title", "sample red", "--colour", "ff0000", "--animate"])
    vdisplay.wait_for_window("sample red", timeout=10)
    wait_for_colour(vdisplay, (255, 0, 0))
    time.sleep(1.5)  # the app goes on drawing: a second and a half of activity in the recording
    raise AssertionError("this test fails on purpose, to leave a recording behind")


@pytest.fixture
def fails_in_teardown(vdisplay: VirtualDisplay) -> Iterator[VirtualDisplay]:
    yield vdisplay
    raise RuntimeError("this fixture fails its teardown on purpose")


def test_teardown_fails_on_purpose(fails_in_teardown: VirtualDisplay) -> None:
    fails_in_teardown.launch([*APP, "--title", "sample yellow", "--colour", "ffff00"])
    fails_in_teardown.wait_for_window("sample yellow", timeout=10)
    wait_for_colour(fails_in_teardown, (255, 255, 0))
