"""Capturing one window: only its own pixels (never a window above it), following resizes, moves, unmapping and
destruction, with DAMAGE on that window alone saying when there is something new."""

from __future__ import annotations

import select
import shutil
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from Xlib import X, error

from impromptu.capture import Frame, SurfaceGone, SurfacePaused, SurfaceResized, open_window_source
from impromptu.capture.window import X11WindowSource
from impromptu.display import Xvfb
from impromptu.errors import CaptureError
from tests.xclient import TIMEOUT_S, Painter

SHARED = 0x3366CC
SHARED_AGAIN = 0x22AA44
SECRET = (0xE0217B, 0x13F7A2)
"""The secret window's pattern: 8x8 squares of two colours that nothing else here uses."""
BORDER = 0xF0C010
BLACK = 0x000000
"""What the source shows of a window until the window's client has painted it."""


@pytest.fixture
def sources() -> Iterator[Callable[[str, int], X11WindowSource]]:
    made: list[X11WindowSource] = []

    def make(display: str, window_id: int) -> X11WindowSource:
        source = open_window_source(display, window_id)
        assert isinstance(source, X11WindowSource)
        made.append(source)
        return source

    yield make
    for source in made:
        source.close()


def rgb(frame: Frame) -> np.ndarray[Any, Any]:
    """The frame's pixels as 0xRRGGBB, one per pixel, shaped (height, width)."""
    assert len(frame.data) == frame.width * frame.height * 4
    bgra = np.frombuffer(frame.data, np.uint8).reshape(frame.height, frame.width, 4).astype(np.uint32)
    return (bgra[:, :, 2] << 16) | (bgra[:, :, 1] << 8) | bgra[:, :, 0]


def colours(frame: Frame) -> set[int]:
    return {int(c) for c in np.unique(rgb(frame))}


def screen_colours(control: Any, x: int, y: int, w: int, h: int) -> set[int]:
    image = control.screen().root.get_image(x, y, w, h, X.ZPixmap, 0xFFFFFFFF)
    bgra = np.frombuffer(image.data, np.uint8).reshape(h, w, 4).astype(np.uint32)
    return {int(c) for c in np.unique((bgra[:, :, 2] << 16) | (bgra[:, :, 1] << 8) | bgra[:, :, 0])}


def wait_changed(source: X11WindowSource, timeout: float = TIMEOUT_S) -> bool:
    """Wait on the source's descriptor, as the worker does, until ``changed()`` (bounded)."""
    fd = source.fileno()
    assert fd is not None
    deadline = time.monotonic() + timeout
    while not source.changed():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        select.select([fd], [], [], min(remaining, 0.5))
    return True


def stays_unchanged(source: X11WindowSource, quiet: float = 0.3) -> bool:
    """``changed()`` stays false while nothing arrives on the descriptor for ``quiet`` seconds (a bounded check
    that something does *not* happen)."""
    fd = source.fileno()
    assert fd is not None
    if source.changed():
        return False
    select.select([fd], [], [], quiet)
    return not source.changed()


def frames_until(
    source: X11WindowSource,
    done: Callable[[Frame], bool],
    check: Callable[[Frame], None],
    skip: tuple[type[Exception], ...] = (),
) -> Frame:
    """Grab whenever the source says the window changed, passing every frame to ``check``, until ``done``."""
    deadline = time.monotonic() + TIMEOUT_S
    seen: set[int] = set()
    while True:
        assert wait_changed(source, deadline - time.monotonic()), f"no frame came that was done; saw {seen}"
        try:
            frame = source.grab()
        except skip:
            continue
        check(frame)
        seen = colours(frame)
        if done(frame):
            return frame


def only(*allowed: int) -> Callable[[Frame], bool]:
    return lambda frame: colours(frame) == set(allowed)


def test_only_the_windows_own_pixels_ever_leave(
    xvfb_display: str, control: Any, painters: Callable[..., Painter], sources: Callable[[str, int], X11WindowSource]
) -> None:
    shared = painters(40, 40, 240, 160, (SHARED,))
    # A secret window over part of the shared one before sharing starts: its pattern is on the screen there.
    secret = painters(160, 100, 200, 150, SECRET)
    assert set(SECRET) <= screen_colours(control, 160, 100, 120, 100)

    grabbed: list[Frame] = []

    def private(frame: Frame) -> None:
        grabbed.append(frame)
        seen = colours(frame)
        assert not seen & set(SECRET), "the secret window's pixels were captured"
        assert seen <= {SHARED, SHARED_AGAIN, BLACK}, f"pixels that are not the shared window's: {seen}"

    # Redirecting gives the window a new pixmap, which the server fills with what the screen showed there, secret
    # included. The shared window's client is held (busy), so nothing of its own has been painted over that yet.
    shared.hold()
    source = sources(xvfb_display, shared.id)
    assert source.size == (240, 160) and source.position == (40, 40)
    frame = source.grab()
    private(frame)
    assert colours(frame) == {BLACK}, "until its client paints it, the window is black"
    shared.release()
    frame = frames_until(source, only(SHARED), private)
    assert rgb(frame)[100, 200] == SHARED  # under the secret window: the shared window's own colour

    def step(configure: Callable[[], None]) -> None:
        configure()
        control.sync()
        assert set(SECRET) & screen_colours(control, 0, 0, 640, 480), "the secret window is still on screen"
        frame = source.grab()
        private(frame)
        assert colours(frame) == {SHARED}

    win = control.create_resource_object("window", secret.id)
    step(lambda: win.configure(x=20, y=120))  # moved over another part
    step(lambda: win.configure(stack_mode=X.Below))  # lowered under it
    step(lambda: win.configure(stack_mode=X.Above))  # raised over it again

    # Drawing under the secret window is seen there.
    shared.paint((SHARED_AGAIN,))
    frames_until(source, only(SHARED_AGAIN), private)

    # Mapping and growing give the window a new pixmap too, which starts as a copy of the screen.
    shared_win = control.create_resource_object("window", shared.id)
    shared.hold()
    shared_win.unmap()
    shared_win.map()
    control.sync()
    frame = frames_until(source, lambda frame: True, private, skip=(SurfacePaused,))
    assert colours(frame) == {BLACK}
    shared.release()
    frames_until(source, only(SHARED_AGAIN), private)

    shared.hold()
    shared_win.configure(width=400, height=300)
    control.sync()
    frame = frames_until(source, lambda frame: True, private, skip=(SurfaceResized,))
    assert (frame.width, frame.height) == (400, 300) and colours(frame) == {BLACK}
    shared.release()
    frames_until(source, only(SHARED_AGAIN), private)
    assert len(grabbed) >= 9


def test_resizes_and_moves_are_followed(
    xvfb_display: str, control: Any, painters: Callable[..., Painter], sources: Callable[[str, int], X11WindowSource]
) -> None:
    shared = painters(30, 20, 200, 120, (SHARED,))
    source = sources(xvfb_display, shared.id)
    frame = frames_until(source, only(SHARED), lambda frame: None)
    assert (frame.width, frame.height) == (200, 120)
    win = control.create_resource_object("window", shared.id)

    win.configure(width=321, height=181)  # odd: the last column and row are left out
    control.sync()
    assert wait_changed(source)
    assert source.size == (320, 180)
    with pytest.raises(SurfaceResized, match="320x180"):
        source.grab()
    frame = frames_until(source, only(SHARED), lambda frame: None)  # no second SurfaceResized
    assert (frame.width, frame.height) == (320, 180)

    before = frame
    win.configure(x=250, y=200)
    control.sync()
    fd = source.fileno()
    assert fd is not None
    deadline = time.monotonic() + TIMEOUT_S
    while source.position != (250, 200):
        assert time.monotonic() < deadline, f"position stayed {source.position}"
        select.select([fd], [], [], 0.5)
        source.changed()
    after = source.grab()
    assert source.size == (320, 180)
    assert after.data == before.data


def test_unmapped_pauses_and_destroyed_ends(
    xvfb_display: str, control: Any, painters: Callable[..., Painter], sources: Callable[[str, int], X11WindowSource]
) -> None:
    shared = painters(100, 100, 150, 100, (SHARED,), border=4, border_pixel=BORDER)
    source = sources(xvfb_display, shared.id)
    assert source.size == (150, 100), "the border is not the window's content"
    assert source.position == (104, 104)
    frames_until(source, only(SHARED), lambda frame: None)
    win = control.create_resource_object("window", shared.id)

    win.unmap()
    control.sync()
    assert wait_changed(source), "unmapping is a change the worker must notice"
    with pytest.raises(SurfacePaused):
        source.grab()
    assert stays_unchanged(source), "nothing to grab while it is unmapped"
    with pytest.raises(SurfacePaused):
        source.grab()  # a keyframe asked for meanwhile

    win.map()
    control.sync()
    assert wait_changed(source), "mapped again: frames again"
    frame = frames_until(source, only(SHARED), lambda frame: None)
    assert (frame.width, frame.height) == (150, 100)

    win.destroy()
    control.sync()
    assert wait_changed(source)
    with pytest.raises(SurfaceGone):
        source.grab()
    with pytest.raises(SurfaceGone):
        source.grab()
    source.close()
    source.close()


def test_damage_on_that_window_only(
    xvfb_display: str, control: Any, painters: Callable[..., Painter], sources: Callable[[str, int], X11WindowSource]
) -> None:
    shared = painters(10, 10, 120, 90, (SHARED,))
    other = painters(300, 200, 120, 90, (SHARED_AGAIN,))
    source = sources(xvfb_display, shared.id)
    assert source.fallbacks == [], "MIT-SHM and DAMAGE are available on Xvfb"
    assert source.changed(), "the first grab is always due"
    frames_until(source, only(SHARED), lambda frame: None)
    # Let the repaints that sharing asked for settle (bounded).
    for _ in range(20):
        if stays_unchanged(source):
            break
        source.grab()
    else:
        pytest.fail("the window kept changing")

    painted = other.paints
    other.paint((SHARED,))
    other.wait_painted(painted)
    assert stays_unchanged(source), "another window was drawn to, not this one"

    shared.paint((SHARED_AGAIN,))
    assert wait_changed(source), "drawing to the window makes the descriptor readable"
    frames_until(source, only(SHARED_AGAIN), lambda frame: None)


def test_close_undoes_the_redirection(
    xvfb_display: str, control: Any, painters: Callable[..., Painter], sources: Callable[[str, int], X11WindowSource]
) -> None:
    shared = painters(10, 10, 64, 48, (SHARED,))
    win = control.create_resource_object("window", shared.id)

    def redirected() -> bool:
        # Only a redirected window has a pixmap of its own to name.
        catcher = error.CatchError(error.BadMatch)
        pixmap = win.composite_name_window_pixmap(onerror=catcher)
        control.sync()
        if catcher.get_error() is None:
            pixmap.free()
            return True
        return False

    assert not redirected()
    source = sources(xvfb_display, shared.id)
    assert redirected()
    source.close()
    source.close()
    assert not redirected()
    with pytest.raises(CaptureError, match="closed"):
        source.grab()


def test_a_missing_window_is_a_clear_error(xvfb_display: str) -> None:
    with pytest.raises(CaptureError, match="no window 0x7fffff"):
        X11WindowSource(xvfb_display, 0x7FFFFF)


def test_without_composite_there_is_no_window_capture() -> None:
    if shutil.which("Xvfb") is None:
        pytest.skip("needs Xvfb (apt-get install xvfb)")
    with Xvfb((320, 240), extra_args=("-extension", "Composite")) as xvfb:
        painter = Painter(xvfb.name, 10, 10, 64, 48, (SHARED,))
        try:
            with pytest.raises(CaptureError, match="no Composite extension"):
                X11WindowSource(xvfb.name, painter.id)
        finally:
            painter.close()


def test_grab_timing_at_1280x800(capsys: pytest.CaptureFixture[str]) -> None:
    """A figure to read, not a limit: how long one grab of a 1280x800 window takes here."""
    if shutil.which("Xvfb") is None:
        pytest.skip("needs Xvfb (apt-get install xvfb)")
    with Xvfb((1280, 800)) as xvfb:
        painter = Painter(xvfb.name, 0, 0, 1280, 800, SECRET)
        source = X11WindowSource(xvfb.name, painter.id)
        try:
            painter.wait_painted(0)
            frames_until(source, lambda frame: colours(frame) == set(SECRET), lambda frame: None)
            times = []
            for _ in range(30):
                started = time.perf_counter()
                frame = source.grab()
                times.append((time.perf_counter() - started) * 1000)
            assert (frame.width, frame.height) == (1280, 800)
            with capsys.disabled():
                print(f"\nwindow grab 1280x800: median {statistics.median(times):.2f} ms, max {max(times):.2f} ms")
        finally:
            source.close()
            painter.close()
