"""Input confined to a shared window (impromptu/input/window.py) against what can take it elsewhere: a window
manager that raises late or never, input shapes and the screen's edge, the focus leaving while a key is held,
other programs' grabs, a window that is not shown. Each test has an Xvfb of its own, X clients of its own that
record what reaches them, and drives ``WindowInput`` directly, as a session does."""

from __future__ import annotations

import select
from collections.abc import Iterator
from typing import Any, NamedTuple

import pytest
from Xlib import XK, X
from Xlib.display import Display
from Xlib.ext import shape

from impromptu.display import WindowInfo, Xvfb
from impromptu.errors import InputError
from impromptu.input.window import WindowInput, nearest_point
from impromptu.input.xtest import XTestSink
from tests.harness import wait_until
from tests.pyviewer import sharing, viewer

RECORD = (
    X.ButtonPressMask
    | X.ButtonReleaseMask
    | X.KeyPressMask
    | X.KeyReleaseMask
    | X.PointerMotionMask
    | X.EnterWindowMask
    | X.FocusChangeMask
)
REACHING = (X.ButtonPress, X.ButtonRelease, X.KeyPress, X.MotionNotify, X.EnterNotify)
"""What a window must never get from a viewer of another one (a release of a key it never saw pressed is harmless)."""


class App:
    """An X client of the test's own: top-level windows that record the events they get."""

    def __init__(self, display: str) -> None:
        self.d = Display(display)
        self.root: Any = self.d.screen().root
        self.got: list[Any] = []

    def window(self, x: int, y: int, w: int, h: int, *, override_redirect: bool = True) -> Any:
        window = self.root.create_window(
            x, y, w, h, 0, self.d.screen().root_depth, override_redirect=override_redirect, event_mask=RECORD
        )
        window.map()
        self.d.sync()
        return window

    def events(self) -> list[Any]:
        """Every event received so far: a round trip brings all the server sent before it."""
        self.d.sync()
        while self.d.pending_events():
            self.got.append(self.d.next_event())
        return self.got

    def forget(self) -> None:
        """Start recording afresh (windows mapped under the pointer get an EnterNotify of the X server's own)."""
        self.events()
        self.got.clear()

    def reached(self, window: Any) -> list[Any]:
        """Input, and the pointer coming in, that reached ``window``. Crossing events of grabs (ours, letting a
        release reach no one) say nothing moved and are left out."""
        return [
            e
            for e in self.events()
            if e.type in REACHING
            and e.window.id == window.id
            and not (e.type == X.EnterNotify and e.mode != X.NotifyNormal)
        ]

    def close(self) -> None:
        self.d.close()


class WindowManager:
    """Holds SubstructureRedirect on the root: maps what asks to be mapped; honours raises only if told to."""

    def __init__(self, display: str) -> None:
        self.d = Display(display)
        self.d.screen().root.change_attributes(event_mask=X.SubstructureRedirectMask)
        self.d.sync()
        self.raise_requests = 0
        self.activations = 0

    def serve(self, honour_raises: bool) -> None:
        self.d.sync()
        while self.d.pending_events():
            event = self.d.next_event()
            if event.type == X.MapRequest:
                event.window.map()
            elif event.type == X.ConfigureRequest and event.value_mask & X.CWStackMode:
                self.raise_requests += 1
                if honour_raises:
                    event.window.configure(stack_mode=event.stack_mode)
            elif event.type == X.ClientMessage:
                self.activations += 1
        self.d.sync()

    def close(self) -> None:
        self.d.close()


class Scene(NamedTuple):
    display: str
    sink: XTestSink
    """The session's input sink."""
    app: App
    """The shared application."""
    other: App
    """Another one: the secret."""


@pytest.fixture
def scene() -> Iterator[Scene]:
    with Xvfb((320, 240)) as xvfb:
        sink = XTestSink(xvfb.name)
        app, other = App(xvfb.name), App(xvfb.name)
        try:
            yield Scene(xvfb.name, sink, app, other)
        finally:
            sink.close()
            app.close()
            other.close()


def settle(sink: XTestSink) -> None:
    """Wait until the input connection has been handled: every event it caused has been sent."""
    sink.connection.sync()


def presses(app: App, window: Any) -> list[tuple[int, int]]:
    return [(e.event_x, e.event_y) for e in app.events() if e.type == X.ButtonPress and e.window.id == window.id]


def click(confined: WindowInput, x: int, y: int) -> None:
    confined.move(x, y)
    confined.button(1, True)
    confined.button(1, False)


def test_nearest_point_of_rectangles() -> None:
    rects = [(10, 10, 5, 5), (40, 0, 10, 10)]
    assert nearest_point(rects, 12, 12) == (12, 12)
    assert nearest_point(rects, 0, 0) == (10, 10)
    assert nearest_point(rects, 100, 3) == (49, 3)
    assert nearest_point([(0, 0, 0, 5)], 1, 1) is None
    assert nearest_point([], 1, 1) is None


def test_a_point_the_window_manager_will_not_uncover_is_dropped_then_lands_once_it_does(scene: Scene) -> None:
    display, sink, app, other = scene
    wm = WindowManager(display)
    try:
        shared = app.window(0, 0, 200, 150, override_redirect=False)  # managed: raising it goes through the WM
        wm.serve(honour_raises=False)
        secret = other.window(100, 0, 100, 150, override_redirect=False)  # over the right half
        wm.serve(honour_raises=False)
        locker = other.window(0, 100, 60, 50)  # another program's override-redirect window: never raised over
        confined = WindowInput(sink, shared.id)
        other.forget()

        with pytest.raises(InputError, match="covers"):
            confined.move(150, 50)
        with pytest.raises(InputError, match="covers"):
            confined.move(10, 120)
        with pytest.raises(InputError, match="another program's window"):
            confined.button(1, True)
        wm.serve(honour_raises=False)
        assert wm.raise_requests == 0, "the window was raised over another program's override-redirect window"
        with pytest.raises(InputError, match="covers"):
            confined.move(150, 50)
        with pytest.raises(InputError, match="raised for the next click"):
            confined.button(1, True)
        click(confined, 50, 50)  # the uncovered part takes it
        settle(sink)
        assert presses(app, shared) == [(50, 50)]
        wm.serve(honour_raises=False)
        assert wm.raise_requests >= 1 and wm.activations >= 1, "the window manager was not asked to raise it"
        assert other.reached(secret) == other.reached(locker) == [], "a dropped event reached a window over it"

        # A hover never raises the window; a click does, through a window manager that honours it: that click is
        # dropped, the next one lands.
        with pytest.raises(InputError, match="covers"):
            confined.move(150, 50)
        before = wm.raise_requests
        wm.serve(honour_raises=True)
        assert wm.raise_requests == before, "a hover asked to raise the window"
        with pytest.raises(InputError, match="raised for the next click"):
            confined.button(1, True)
        wm.serve(honour_raises=True)
        click(confined, 150, 50)
        settle(sink)
        assert presses(app, shared)[-1] == (150, 50)
        assert other.reached(secret) == []
    finally:
        wm.close()


def test_points_are_kept_in_the_input_shape_and_on_the_screen(scene: Scene) -> None:
    _, sink, app, other = scene
    behind = other.window(0, 0, 320, 240)  # takes whatever misses the shared window
    shaped = app.window(10, 10, 200, 150)
    # A toolkit's drawn shadow: only the inner part takes input.
    shaped.shape_rectangles(shape.SO.Set, shape.SK.Input, X.Unsorted, 0, 0, [(20, 20, 100, 80)])
    app.d.sync()
    confined = WindowInput(sink, shaped.id)
    other.forget()
    for asked, landed in (((0, 0), (20, 20)), ((199, 149), (119, 99)), ((50, 50), (50, 50))):
        click(confined, *asked)
        settle(sink)
        assert presses(app, shaped)[-1] == landed

    assert other.reached(behind) == []
    shaped.destroy()
    app.d.sync()
    half_off = app.window(-50, 100, 200, 100)
    app.forget()  # window ids are reused
    other.forget()  # the window behind got the pointer
    confined = WindowInput(sink, half_off.id)
    click(confined, 0, 0)
    click(confined, 199, 99)
    settle(sink)
    assert presses(app, half_off) == [(50, 0), (199, 99)]

    assert other.reached(behind) == []
    half_off.configure(x=400)  # wholly off the screen
    app.d.sync()
    other.forget()
    with pytest.raises(InputError, match="screen"):
        click(confined, 10, 10)
    assert other.reached(behind) == []


def test_keys_held_when_the_focus_leaves_are_released_at_once(scene: Scene) -> None:
    _, sink, app, other = scene
    shared = app.window(0, 0, 150, 100)
    secret = other.window(160, 0, 150, 100)
    confined = WindowInput(sink, shared.id)
    other.forget()
    shift = sink.connection.keysym_to_keycode(XK.XK_Shift_L)
    a = sink.connection.keysym_to_keycode(ord("a"))

    # A key other than a modifier is pressed and released at once: X's own repeat never gets to send it anywhere.
    confined.key("KeyA", "a", True)
    settle(sink)
    keys = [e for e in app.events() if e.type in (X.KeyPress, X.KeyRelease)]
    assert [(e.type, e.detail) for e in keys] == [(X.KeyPress, a), (X.KeyRelease, a)]
    assert not key_down(other.d, a)
    confined.key("KeyA", "a", False)  # the viewer's key-up: already done
    confined.key("ShiftLeft", "Shift", True)
    settle(sink)
    assert key_down(other.d, shift)

    # The local user clicks into another window: the viewer's Shift would apply to what they type there.
    secret.set_input_focus(X.RevertToParent, X.CurrentTime)
    other.d.sync()
    assert released_soon(sink, other, shift), "the held modifier was not released when the focus left"
    confined.key("ShiftLeft", "Shift", False)  # the viewer lets go later: nothing more is injected
    confined.key("KeyB", "b", False)  # never pressed here: not injected either
    settle(sink)
    assert [e for e in other.events() if e.type in (X.KeyPress, X.KeyRelease, X.ButtonPress)] == [], (
        "a key event reached the window that has the focus now"
    )

    # The next key press takes the focus back, as before.
    confined.key("KeyC", "c", True)
    confined.key("KeyC", "c", False)
    settle(sink)
    assert app.events()[-1].type == X.KeyRelease and other.reached(secret) == []


def key_down(d: Any, keycode: int) -> bool:
    return bool(d.query_keymap()[keycode // 8] & (1 << (keycode % 8)))


def released_soon(sink: XTestSink, watcher: App, keycode: int) -> bool:
    """Whether ``keycode`` is up within 10 s, handling the sink's events as a session does (when they arrive)."""
    for _ in range(50):
        select.select([sink.fileno()], [], [], 0.2)
        sink.process_events()
        if not key_down(watcher.d, keycode):
            return True
    return False


def test_another_programs_grab_keeps_the_viewer_out(scene: Scene) -> None:
    _, sink, app, other = scene
    shared = app.window(0, 0, 150, 100)
    prompt = other.window(160, 0, 150, 100)  # a password prompt, grabbing the keyboard, then the pointer
    confined = WindowInput(sink, shared.id)
    other.forget()

    assert prompt.grab_keyboard(False, X.GrabModeAsync, X.GrabModeAsync, X.CurrentTime) == X.GrabSuccess
    with pytest.raises(InputError, match="holds the keyboard"):
        confined.key("KeyA", "a", True)
    other.d.ungrab_keyboard(X.CurrentTime)
    grabbed = prompt.grab_pointer(False, 0, X.GrabModeAsync, X.GrabModeAsync, X.NONE, X.NONE, X.CurrentTime)
    assert grabbed == X.GrabSuccess
    other.forget()  # the grab's own crossing events
    with pytest.raises(InputError, match="holds the pointer"):
        click(confined, 10, 10)
    settle(sink)
    assert other.reached(prompt) == []
    assert not key_down(other.d, sink.connection.keysym_to_keycode(ord("a")))

    other.d.ungrab_pointer(X.CurrentTime)
    other.d.sync()
    click(confined, 10, 10)
    confined.key("KeyA", "a", True)
    confined.key("KeyA", "a", False)
    settle(sink)
    assert presses(app, shared) == [(10, 10)]
    assert X.KeyPress in [e.type for e in app.events()]


def test_the_applications_own_menu_and_drags_keep_working(scene: Scene) -> None:
    _, sink, app, _ = scene
    shared = app.window(0, 0, 200, 150)
    confined = WindowInput(sink, shared.id)

    # A drag: the press gives the application the pointer (an implicit grab) until the release.
    confined.move(10, 10)
    confined.button(1, True)
    confined.move(60, 40)
    confined.button(1, False)
    settle(sink)
    moves = [(e.event_x, e.event_y) for e in app.events() if e.type == X.MotionNotify]
    assert moves[-1] == (60, 40)

    # Its own menu, open and holding the pointer and keyboard: clicks and keys go to the menu.
    menu = app.window(20, 20, 80, 60)
    pointer = X.ButtonPressMask | X.ButtonReleaseMask | X.PointerMotionMask
    assert menu.grab_pointer(False, pointer, X.GrabModeAsync, X.GrabModeAsync, X.NONE, X.NONE, 0) == X.GrabSuccess
    assert menu.grab_keyboard(False, X.GrabModeAsync, X.GrabModeAsync, X.CurrentTime) == X.GrabSuccess
    app.d.sync()
    click(confined, 30, 30)
    confined.key("KeyA", "a", True)
    confined.key("KeyA", "a", False)
    settle(sink)
    assert presses(app, menu) == [(10, 10)]
    assert [e.type for e in app.events() if e.type == X.KeyPress and e.window.id == menu.id] == [X.KeyPress]


def test_a_window_that_is_not_shown_takes_nothing(scene: Scene) -> None:
    _, sink, app, other = scene
    behind = other.window(0, 0, 320, 240)
    behind.set_input_focus(X.RevertToParent, X.CurrentTime)
    shared = app.window(0, 0, 200, 150)
    confined = WindowInput(sink, shared.id)
    shared.unmap()
    app.d.sync()
    other.forget()  # the window behind now has the pointer in it
    for act in (lambda: confined.move(5, 5), lambda: click(confined, 5, 5), lambda: confined.key("KeyA", "a", True)):
        with pytest.raises(InputError, match="not shown"):
            act()
    shared.destroy()
    app.d.sync()
    other.forget()
    with pytest.raises(InputError, match="gone"):
        confined.key("KeyA", "a", True)
    settle(sink)
    assert other.reached(behind) == []


async def test_a_session_releases_a_viewers_held_key_when_the_focus_leaves(scene: Scene) -> None:
    """The session reads the input connection's events as they come (not only when the next input arrives)."""
    display, sink, app, other = scene
    shared = app.window(0, 0, 160, 120)
    secret = other.window(160, 0, 160, 120)
    keycode = sink.connection.keysym_to_keycode(XK.XK_Control_L)
    window = WindowInfo(shared.id, "shared", "", "", None, 0, 0, 160, 120, True)
    async with sharing(display, windows=(window,)) as (session, server):
        v = viewer(session, server, session.keys.control)
        try:
            await v.connect()
            await v.frames.get()
            v.send({"type": "input.key", "surface": 1, "code": "ControlLeft", "key": "Control", "down": True})
            await wait_until(lambda: key_down(other.d, keycode))
            secret.set_input_focus(X.RevertToParent, X.CurrentTime)
            other.d.sync()
            await wait_until(lambda: not key_down(other.d, keycode))
            assert [e for e in other.events() if e.type == X.KeyPress] == []
        finally:
            await v.close()


def test_keys_that_act_on_the_whole_display_are_dropped(scene: Scene) -> None:
    _, sink, app, _ = scene
    shared = app.window(0, 0, 150, 100)
    confined = WindowInput(sink, shared.id)
    for code, key in (("CapsLock", "CapsLock"), ("NumLock", "NumLock"), ("MetaLeft", "Meta"), ("OSLeft", "OS")):
        with pytest.raises(InputError, match="whole display"):
            confined.key(code, key, True)
    confined.key("ControlLeft", "Control", True)
    confined.key("AltLeft", "Alt", True)
    with pytest.raises(InputError, match="consoles"):
        confined.key("F1", "F1", True)
    confined.key("AltLeft", "Alt", False)
    confined.key("F1", "F1", True)  # Ctrl+F1 is the application's
    confined.key("ControlLeft", "Control", False)
    settle(sink)
    pressed = [e.detail for e in app.events() if e.type == X.KeyPress]
    keysyms = [sink.connection.keycode_to_keysym(code, 0) for code in pressed]
    assert keysyms == [XK.XK_Control_L, XK.XK_Alt_L, XK.XK_F1]
    state = sink.connection.query_keymap()
    assert not any(state), "a key stayed down"


def test_a_release_after_the_window_went_away_reaches_no_other_window(scene: Scene) -> None:
    _, sink, app, other = scene
    below = other.window(0, 0, 320, 240)
    shared = app.window(0, 0, 200, 150)
    confined = WindowInput(sink, shared.id)
    confined.move(20, 20)
    confined.button(1, True)
    shared.unmap()  # ends the application's hold on the pointer: a release now would go to the window below
    app.d.sync()
    other.forget()
    confined.button(1, False)
    settle(sink)
    assert [e for e in other.events() if e.type in (X.ButtonPress, X.ButtonRelease)] == []
    assert other.reached(below) == []
    assert not sink.connection.screen().root.query_pointer().mask & X.Button1Mask, "the button stayed down"


def test_another_programs_grab_is_not_taken_for_the_applications_menu(scene: Scene) -> None:
    _, sink, app, other = scene
    shared = app.window(0, 0, 150, 100)
    confined = WindowInput(sink, shared.id)
    tooltip = app.window(200, 200, 40, 15)  # the application's own popup, somewhere
    prompt = other.window(160, 0, 150, 100)  # mapped after it: on top
    assert prompt.grab_keyboard(False, X.GrabModeAsync, X.GrabModeAsync, X.CurrentTime) == X.GrabSuccess
    other.forget()
    with pytest.raises(InputError, match="holds the keyboard"):
        confined.key("KeyA", "a", True)
    assert other.reached(prompt) == []
    assert tooltip.id != prompt.id


def test_held_modifiers_are_released_when_another_program_grabs_the_keyboard(scene: Scene) -> None:
    _, sink, app, other = scene
    shared = app.window(0, 0, 150, 100)
    prompt = other.window(160, 0, 150, 100)
    confined = WindowInput(sink, shared.id)
    shift = sink.connection.keysym_to_keycode(XK.XK_Shift_L)
    confined.key("ShiftLeft", "Shift", True)
    confined.key("KeyA", "A", True)  # our own grab probes in between must not count as someone else's
    settle(sink)
    for _ in range(5):
        select.select([sink.fileno()], [], [], 0.1)
        sink.process_events()
    assert key_down(other.d, shift), "a probe of ours was taken for another program's grab"
    assert prompt.grab_keyboard(False, X.GrabModeAsync, X.GrabModeAsync, X.CurrentTime) == X.GrabSuccess
    other.d.sync()
    assert released_soon(sink, other, shift), "Shift stayed down for the program that grabbed the keyboard"
