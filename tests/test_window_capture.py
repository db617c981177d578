"""Capturing one window: only its own pixels (never a window above it) and its application's own popups (never
another client's window, nor the application's other windows or their popups), following resizes, moves,
unmapping, destruction and title changes, with DAMAGE on that window alone saying when there is something new."""

from __future__ import annotations

import asyncio
import contextlib
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
from impromptu.capture.base import SurfaceRenamed
from impromptu.capture.window import X11WindowSource
from impromptu.display import WindowInfo, Xvfb
from impromptu.errors import CaptureError
from tests.pyviewer import sharing, viewer
from tests.xclient import TIMEOUT_S, Client, Painter

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
    """Figures to read, not limits: how long one grab of a 1280x800 window takes here, alone and with a 240x320
    menu of its application over it (drawn from what was read of it before, and read again)."""
    if shutil.which("Xvfb") is None:
        pytest.skip("needs Xvfb (apt-get install xvfb)")

    def timed(source: X11WindowSource, before: Callable[[], None] = lambda: None) -> str:
        times = []
        for _ in range(30):
            before()
            started = time.perf_counter()
            frame = source.grab()
            times.append((time.perf_counter() - started) * 1000)
        assert (frame.width, frame.height) == (1280, 800)
        return f"median {statistics.median(times):.2f} ms, max {max(times):.2f} ms"

    with Xvfb((1280, 800)) as xvfb:
        painter = Painter(xvfb.name, 0, 0, 1280, 800, SECRET)
        source = X11WindowSource(xvfb.name, painter.id)
        app = Client(xvfb.name)
        try:
            painter.wait_painted(0)
            frames_until(source, lambda frame: colours(frame) == set(SECRET), lambda frame: None)
            alone = timed(source)
            shared = app.window(0, 0, 1280, 800, SHARED, override_redirect=False, title="app")
            app.wait_painted(shared)
            with_app = X11WindowSource(xvfb.name, shared)
            try:
                app.window(600, 300, 240, 320, POPUP)
                frames_until(with_app, only(SHARED, POPUP), lambda frame: None)
                kept = timed(with_app)
                popup = with_app._popups[0]
                again = timed(with_app, lambda: setattr(popup, "dirty", True))
            finally:
                with_app.close()
            with capsys.disabled():
                print(f"\nwindow grab 1280x800: {alone}; with a menu over it: {kept}; menu read again: {again}")
        finally:
            app.close()
            source.close()
            painter.close()


POPUP = 0xD08020
SUBMENU = 0x8040C0
PRIVATE = 0x40C0C0
"""The shared window's application's second, normal top-level window: private, never drawn."""
PRIVATE_MENU = 0xC02060
"""A dropdown of that second window: the application's popup, but not the shared window's; never drawn."""
TOOLTIP = 0x60A020


@pytest.fixture
def app(xvfb_display: str) -> Iterator[Client]:
    """An application: one X client whose windows (main window, popups, other windows) a test makes."""
    client = Client(xvfb_display)
    yield client
    client.close()


def showing(shape: tuple[int, int], *parts: tuple[int, int, int, int, int]) -> np.ndarray[Any, Any]:
    """A picture of ``shape`` (height, width), all SHARED but for ``parts`` (colour, left, top, right, bottom),
    drawn in order."""
    picture = np.full(shape, SHARED, np.uint32)
    for colour, left, top, right, bottom in parts:
        picture[top:bottom, left:right] = colour
    return picture


def test_the_applications_own_popups_are_drawn_over_it_clipped_while_mapped(
    xvfb_display: str, control: Any, app: Client, sources: Callable[[str, int], X11WindowSource]
) -> None:
    shared = app.window(40, 40, 240, 160, SHARED, override_redirect=False, title="app")
    app.wait_painted(shared)
    source = sources(xvfb_display, shared)

    def own(frame: Frame) -> None:
        assert colours(frame) <= {SHARED, POPUP, SUBMENU, BLACK}

    frames_until(source, only(SHARED), own)

    # A menu over its bottom-right corner and beyond: drawn where it is, clipped to the window.
    menu = app.window(200, 150, 100, 80, POPUP)
    frame = frames_until(source, only(SHARED, POPUP), own)
    with_menu = showing((160, 240), (POPUP, 160, 110, 240, 160))
    assert (rgb(frame) == with_menu).all()

    # A submenu over the menu and the window's right edge: above the menu, in stacking order.
    submenu = app.window(250, 60, 60, 120, SUBMENU)
    frame = frames_until(source, only(SHARED, POPUP, SUBMENU), own)
    assert (rgb(frame) == showing((160, 240), (POPUP, 160, 110, 240, 160), (SUBMENU, 210, 20, 240, 140))).all()
    app.configure(menu, stack_mode=X.Above)  # the menu raised over the submenu
    frame = frames_until(source, lambda frame: rgb(frame)[130, 220] == POPUP, own)
    assert (rgb(frame) == showing((160, 240), (SUBMENU, 210, 20, 240, 140), (POPUP, 160, 110, 240, 160))).all()

    # Unmapped: gone from the frames, the window's own pixels under it.
    app.unmap(submenu)
    frame = frames_until(source, only(SHARED, POPUP), own)
    assert (rgb(frame) == with_menu).all()
    app.unmap(menu)
    frames_until(source, only(SHARED), own)

    # Mapped again, and moved: drawn at its new place.
    app.map(menu)
    frame = frames_until(source, only(SHARED, POPUP), own)
    assert (rgb(frame) == with_menu).all()
    app.configure(menu, x=0, y=0)
    frame = frames_until(source, lambda frame: rgb(frame)[0, 0] == POPUP and rgb(frame)[110, 160] == SHARED, own)
    assert (rgb(frame) == showing((160, 240), (POPUP, 0, 0, 60, 40))).all()
    # The window moved instead: the menu is where it is relative to the window.
    win = control.create_resource_object("window", shared)
    win.configure(x=10, y=20)
    control.sync()
    frame = frames_until(source, lambda frame: rgb(frame)[35, 85] == POPUP, own)
    assert (rgb(frame) == showing((160, 240), (POPUP, 0, 0, 90, 60))).all()

    # The window raised over its menu hides the menu (as on the screen); raised again, the menu is back.
    win.configure(stack_mode=X.Above)
    control.sync()
    frames_until(source, only(SHARED), own)
    app.configure(menu, stack_mode=X.Above)
    frames_until(source, only(SHARED, POPUP), own)


def test_another_clients_window_is_never_drawn_not_even_in_a_new_popups_pixmap(
    xvfb_display: str,
    control: Any,
    app: Client,
    painters: Callable[..., Painter],
    sources: Callable[[str, int], X11WindowSource],
) -> None:
    shared = app.window(40, 40, 240, 160, SHARED, override_redirect=False, title="app")
    app.wait_painted(shared)
    # Another client's override-redirect window over part of the shared one: on the screen, never in a frame.
    secret = painters(150, 100, 200, 150, SECRET)
    source = sources(xvfb_display, shared)

    def private(frame: Frame) -> None:
        seen = colours(frame)
        assert not seen & set(SECRET), "the secret window's pixels were captured"
        assert seen <= {SHARED, POPUP, BLACK}

    frames_until(source, only(SHARED), private)

    # A menu mapped over the secret window while its application is busy: it has no background, so the screen
    # (and the new pixmap redirection gives it) still shows the secret window there. Black until it is painted.
    menu = app.window(160, 110, 80, 60, POPUP, mapped=False)
    assert set(SECRET) <= screen_colours(control, 160, 110, 80, 60), "the secret window is where the menu will be"
    app.hold()
    menu_win = control.create_resource_object("window", menu)
    menu_win.map()
    control.sync()
    frame = frames_until(source, only(SHARED, BLACK), private)
    assert (rgb(frame) == showing((160, 240), (BLACK, 120, 70, 200, 130))).all()
    app.release()
    frame = frames_until(source, only(SHARED, POPUP), private)
    with_menu = showing((160, 240), (POPUP, 120, 70, 200, 130))
    assert (rgb(frame) == with_menu).all()

    # The secret window raised over the menu: the menu's own pixels still, read from its own pixmap.
    painted = secret.paints
    control.create_resource_object("window", secret.id).configure(stack_mode=X.Above)
    control.sync()
    secret.wait_painted(painted)  # exposed, so painted again
    assert set(SECRET) <= screen_colours(control, 160, 110, 80, 60)
    painted = app.paints[menu]
    app.paint(menu, POPUP)
    app.wait_painted(menu, painted)
    assert wait_changed(source)
    frame = source.grab()
    private(frame)
    assert (rgb(frame) == with_menu).all()
    painted = secret.paints
    secret.paint((SECRET[1], SECRET[0]))  # drawing on the secret window: no change to this one
    secret.wait_painted(painted)
    for _ in range(5):
        if not source.changed():
            break
        private(source.grab())


def test_the_applications_other_top_level_windows_are_never_drawn(
    xvfb_display: str, control: Any, app: Client, sources: Callable[[str, int], X11WindowSource]
) -> None:
    shared = app.window(40, 40, 240, 160, SHARED, override_redirect=False, title="app")
    app.wait_painted(shared)
    source = sources(xvfb_display, shared)
    # Its second, normal window over the shared one (a private document, say), and a menu so that frames are
    # composed.
    other = app.window(100, 80, 150, 100, PRIVATE, override_redirect=False, title="private")
    app.wait_painted(other)
    app.window(20, 20, 40, 40, POPUP)
    assert PRIVATE in screen_colours(control, 100, 80, 150, 100)

    def no_private(frame: Frame) -> None:
        assert PRIVATE not in colours(frame), "the application's other window was drawn"

    frame = frames_until(source, only(SHARED, POPUP), no_private)
    assert (rgb(frame) == showing((160, 240), (POPUP, 0, 0, 20, 20))).all()
    app.configure(other, x=60, y=60)
    app.paint(other, PRIVATE)
    app.paint(shared, SHARED)
    frames_until(source, only(SHARED, POPUP), no_private)


def test_popups_of_the_applications_other_windows_are_never_drawn(
    xvfb_display: str, control: Any, app: Client, sources: Callable[[str, int], X11WindowSource]
) -> None:
    shared = app.window(40, 40, 240, 160, SHARED, override_redirect=False, title="app")
    app.wait_painted(shared)
    source = sources(xvfb_display, shared)
    # Its second, normal window (private, say), away from the shared one, and that window's dropdown (override-
    # redirect, the same X client, WM_TRANSIENT_FOR that window) over the shared one: on the screen, never drawn.
    other = app.window(300, 260, 150, 60, PRIVATE, override_redirect=False, title="private")
    dropdown = app.window(150, 100, 160, 100, PRIVATE_MENU, mapped=False)
    app.set_transient_for(dropdown, other)
    app.map(dropdown)
    app.wait_painted(dropdown)
    assert PRIVATE_MENU in screen_colours(control, 150, 100, 160, 100)

    def no_private(frame: Frame) -> None:
        assert PRIVATE_MENU not in colours(frame), "a popup of the application's other window was drawn"
        assert colours(frame) <= {SHARED, POPUP, SUBMENU, TOOLTIP, BLACK}

    # The shared window's popups, mapped after the dropdown, are drawn: a menu transient for it, a submenu
    # transient for that menu, and a tooltip transient for nothing.
    menu = app.window(60, 60, 60, 40, POPUP, mapped=False)
    app.set_transient_for(menu, shared)
    app.map(menu)
    submenu = app.window(120, 60, 40, 30, SUBMENU, mapped=False)
    app.set_transient_for(submenu, menu)
    app.map(submenu)
    tooltip = app.window(200, 50, 30, 20, TOOLTIP)
    frame = frames_until(source, only(SHARED, POPUP, SUBMENU, TOOLTIP), no_private)
    popups = ((POPUP, 20, 20, 80, 60), (SUBMENU, 80, 20, 120, 50))
    assert (rgb(frame) == showing((160, 240), *popups, (TOOLTIP, 160, 10, 190, 30))).all()

    # The dropdown raised over them all and painted again, the tooltip moved: still not drawn.
    app.configure(dropdown, stack_mode=X.Above)
    app.paint(dropdown, PRIVATE_MENU)
    app.configure(tooltip, x=210)
    frame = frames_until(source, lambda frame: rgb(frame)[20, 165] == SHARED, no_private)
    assert (rgb(frame) == showing((160, 240), *popups, (TOOLTIP, 170, 10, 200, 30))).all()

    # WM_TRANSIENT_FOR changed while mapped: the tooltip made the other window's goes; made the shared one's, is back.
    app.set_transient_for(tooltip, other)
    frame = frames_until(source, only(SHARED, POPUP, SUBMENU), no_private)
    assert (rgb(frame) == showing((160, 240), *popups)).all()
    app.set_transient_for(tooltip, shared)
    frame = frames_until(source, only(SHARED, POPUP, SUBMENU, TOOLTIP), no_private)
    assert (rgb(frame) == showing((160, 240), *popups, (TOOLTIP, 170, 10, 200, 30))).all()

    # The dropdown is a popup like the others but for whose it is: transient for nothing, it is drawn (on top);
    # the other window's again, it goes.
    app.set_transient_for(dropdown, None)
    frame = frames_until(source, lambda frame: PRIVATE_MENU in colours(frame), lambda frame: None)
    assert (
        rgb(frame) == showing((160, 240), *popups, (TOOLTIP, 170, 10, 200, 30), (PRIVATE_MENU, 110, 60, 240, 160))
    ).all()
    app.set_transient_for(dropdown, other)
    frames_until(source, only(SHARED, POPUP, SUBMENU, TOOLTIP), no_private)


def test_a_new_title_is_reported_once(
    xvfb_display: str, control: Any, painters: Callable[..., Painter], sources: Callable[[str, int], X11WindowSource]
) -> None:
    shared = painters(10, 10, 120, 90, (SHARED,), title="before")
    source = sources(xvfb_display, shared.id)
    assert source.title == "before"
    frames_until(source, only(SHARED), lambda frame: None)
    win = control.create_resource_object("window", shared.id)

    win.set_wm_name("plain WM_NAME")
    control.sync()
    assert wait_changed(source)
    with pytest.raises(SurfaceRenamed) as renamed:
        source.grab()
    assert renamed.value.title == "plain WM_NAME" == source.title
    source.grab()  # once

    # _NET_WM_NAME (UTF-8) wins over WM_NAME, also while the window is not shown.
    win.unmap()
    win.change_property(control.get_atom("_NET_WM_NAME"), control.get_atom("UTF8_STRING"), 8, "naïve ☃".encode())
    control.sync()
    seen: list[str] = []
    deadline = time.monotonic() + TIMEOUT_S
    while not seen:
        assert time.monotonic() < deadline, "no SurfaceRenamed"
        assert wait_changed(source)
        with contextlib.suppress(SurfacePaused):
            try:
                source.grab()
            except SurfaceRenamed as exc:
                seen.append(exc.title)
    assert seen == ["naïve ☃"]


async def test_a_new_title_reaches_viewers_in_a_config(
    xvfb_display: str, control: Any, painters: Callable[..., Painter]
) -> None:
    shared = painters(30, 30, 160, 120, (SHARED,), title="first title")
    info = WindowInfo(shared.id, "first title", "", "", None, 30, 30, 160, 120, True)
    win = control.create_resource_object("window", shared.id)
    async with sharing(xvfb_display, windows=(info,)) as (session, server):
        v = viewer(session, server, session.keys.view)
        try:
            await v.connect()
            first = await v.wait_control(lambda m: m["type"] == "config")
            assert first["title"] == "first title"
            while not (await asyncio.wait_for(v.frames.get(), 10)).keyframe:
                pass
            win.change_property(
                control.get_atom("_NET_WM_NAME"), control.get_atom("UTF8_STRING"), 8, ("x" * 300).encode()
            )
            control.sync()
            config = await v.wait_control(lambda m: m["type"] == "config" and m["title"] != "first title")
            assert config == {**first, "title": "x" * 200}, "the same stream, only a new title (cut to 200)"
            assert session.surfaces[1].config["title"] == "x" * 200
            # A rename: the stream goes on as it was.
            shared.paint((SHARED_AGAIN,))
            assert not (await asyncio.wait_for(v.frames.get(), 10)).keyframe
        finally:
            await v.close()
