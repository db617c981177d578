"""Capture sees what X clients draw, and DAMAGE says when there is something new to see."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from impromptu.capture import open_screen_source
from impromptu.capture.x11 import X11ScreenSource
from tests.xclient import XWindow


@pytest.fixture
def painter(xvfb_display: str) -> Iterator[XWindow]:
    p = XWindow(xvfb_display, 50, 40, 120, 80)
    yield p
    p.close()


def wait_changed(source: X11ScreenSource) -> bool:
    """DAMAGE events arrive asynchronously: wait on the source's descriptor, bounded, like the worker does."""
    import select

    fd = source.fileno()
    assert fd is not None
    for _ in range(50):
        if source.changed():
            return True
        select.select([fd], [], [], 0.1)
    return False


def test_capture_sees_what_an_x_client_draws(xvfb_display: str, painter: XWindow) -> None:
    source = open_screen_source(xvfb_display)
    assert isinstance(source, X11ScreenSource)
    try:
        assert source.size == (640, 480)
        painter.fill(0x3366CC)
        frame = source.grab()
        pixels = np.frombuffer(frame.data, np.uint8).reshape(480, 640, 4)
        assert tuple(pixels[80, 100, :3]) == (0xCC, 0x66, 0x33)  # BGRA
        assert tuple(pixels[10, 10, :3]) != (0xCC, 0x66, 0x33)
        assert frame.capture_us > 1_600_000_000_000_000
    finally:
        source.close()
        source.close()


def test_damage_reports_changes_and_only_changes(xvfb_display: str, painter: XWindow) -> None:
    source = X11ScreenSource(xvfb_display)
    try:
        assert source.fallbacks == [], "XShm and DAMAGE are available on Xvfb"
        assert source.changed(), "the first grab is always due"
        source.grab()
        painter.d.sync()
        assert not source.changed(), "nothing drawn since the grab"
        painter.fill(0x00FF00)
        assert wait_changed(source)
        source.grab()
        assert not source.changed()
    finally:
        source.close()
