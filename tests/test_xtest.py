"""XTestSink against a real Xvfb: a window of our own must receive exactly what the sink injects."""

from __future__ import annotations

import select
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from Xlib import XK, X
from Xlib.display import Display
from Xlib.protocol import event as xevent

from impromptu.display import Xvfb
from impromptu.errors import InputError
from impromptu.input import open_input_sink
from impromptu.input.xtest import XTestSink

WINDOW_X, WINDOW_Y = 100, 50
WINDOW_W, WINDOW_H = 300, 200
EVENT_TIMEOUT = 5.0


def ks(name: str) -> int:
    value = int(XK.string_to_keysym(name))
    assert value, f"test bug: unknown keysym {name}"
    return value


class EventWindow:
    """An override-redirect window at a known place, focused, recording the input events X delivers to it.

    Like any X client it applies MappingNotify to its keymap cache, so keycodes the sink binds on the fly
    translate back to keysyms here.
    """

    def __init__(self, display_name: str) -> None:
        self.display: Any = Display(display_name)
        screen = self.display.screen()
        self.window: Any = screen.root.create_window(
            WINDOW_X,
            WINDOW_Y,
            WINDOW_W,
            WINDOW_H,
            0,
            screen.root_depth,
            override_redirect=True,
            event_mask=X.KeyPressMask
            | X.KeyReleaseMask
            | X.ButtonPressMask
            | X.ButtonReleaseMask
            | X.PointerMotionMask
            | X.StructureNotifyMask,
        )
        self.window.map()
        self.wait_for(lambda e: e.type == X.MapNotify)
        self.window.set_input_focus(X.RevertToParent, X.CurrentTime)
        self.display.sync()

    def close(self) -> None:
        self.display.close()

    def wait_for(self, predicate: Callable[[Any], bool], what: str = "event") -> Any:
        """The first event matching ``predicate`` (earlier ones are consumed), within EVENT_TIMEOUT."""
        deadline = time.monotonic() + EVENT_TIMEOUT
        seen: list[str] = []
        while True:
            while self.display.pending_events():
                evt = self.display.next_event()
                if isinstance(evt, xevent.MappingNotify):
                    self.display.refresh_keyboard_mapping(evt)
                    continue
                if predicate(evt):
                    return evt
                seen.append(type(evt).__name__)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {what} within {EVENT_TIMEOUT}s; got only {seen}")
            select.select([self.display.fileno()], [], [], remaining)

    def wait_key(self, kind: int, what: str) -> Any:
        return self.wait_for(lambda e: e.type == kind and e.window.id == self.window.id, what)

    def keysym_of(self, evt: Any) -> int:
        """The keysym an ordinary client sees for a key event: keycode plus Shift state."""
        level = 1 if evt.state & X.ShiftMask else 0
        return int(self.display.keycode_to_keysym(evt.detail, level))

    def server_keysyms(self, keycode: int) -> list[int]:
        """What the server's keymap holds for ``keycode`` right now (no cache)."""
        return list(self.display.get_keyboard_mapping(keycode, 1)[0])


@pytest.fixture
def window(xvfb_display: str) -> Iterator[EventWindow]:
    win = EventWindow(xvfb_display)
    yield win
    win.close()


@pytest.fixture
def sink(xvfb_display: str) -> Iterator[XTestSink]:
    s = XTestSink(xvfb_display)
    yield s
    s.close()


def type_key(sink: XTestSink, window: EventWindow, code: str, key: str) -> Any:
    """Press and release one key; return the KeyPress the window got (after its KeyRelease arrived too)."""
    sink.key(code, key, True)
    press = window.wait_key(X.KeyPress, f"KeyPress for {code or key!r}")
    sink.key(code, key, False)
    release = window.wait_key(X.KeyRelease, f"KeyRelease for {code or key!r}")
    assert release.detail == press.detail
    return press


def test_click_lands_at_window_coordinates(sink: XTestSink, window: EventWindow) -> None:
    sink.move(WINDOW_X + 50, WINDOW_Y + 70)
    motion = window.wait_for(lambda e: e.type == X.MotionNotify, "MotionNotify")
    assert (motion.event_x, motion.event_y) == (50, 70)
    assert (motion.root_x, motion.root_y) == (WINDOW_X + 50, WINDOW_Y + 70)

    sink.button(1, True)
    press = window.wait_for(lambda e: e.type == X.ButtonPress, "ButtonPress")
    sink.button(1, False)
    release = window.wait_for(lambda e: e.type == X.ButtonRelease, "ButtonRelease")
    assert press.detail == release.detail == 1
    assert (press.event_x, press.event_y) == (50, 70)
    assert press.window.id == window.window.id


def test_right_click_elsewhere(sink: XTestSink, window: EventWindow) -> None:
    sink.move(WINDOW_X + WINDOW_W - 1, WINDOW_Y + WINDOW_H - 1)
    sink.button(3, True)
    press = window.wait_for(lambda e: e.type == X.ButtonPress, "ButtonPress")
    sink.button(3, False)
    assert press.detail == 3
    assert (press.event_x, press.event_y) == (WINDOW_W - 1, WINDOW_H - 1)


def test_wheel_click_is_button_5(sink: XTestSink, window: EventWindow) -> None:
    sink.move(WINDOW_X + 10, WINDOW_Y + 20)
    sink.button(5, True)
    sink.button(5, False)
    press = window.wait_for(lambda e: e.type == X.ButtonPress, "ButtonPress")
    assert press.detail == 5
    assert (press.event_x, press.event_y) == (10, 20)
    window.wait_for(lambda e: e.type == X.ButtonRelease and e.detail == 5, "ButtonRelease of 5")


def test_letter_a(sink: XTestSink, window: EventWindow) -> None:
    press = type_key(sink, window, "KeyA", "a")
    assert window.keysym_of(press) == ks("a")
    assert not press.state & X.ShiftMask


def test_shift_1_types_exclam(sink: XTestSink, window: EventWindow) -> None:
    sink.key("ShiftLeft", "Shift", True)
    shift = window.wait_key(X.KeyPress, "KeyPress of Shift")
    assert window.keysym_of(shift) == ks("Shift_L")
    press = type_key(sink, window, "Digit1", "!")
    sink.key("ShiftLeft", "Shift", False)
    window.wait_key(X.KeyRelease, "KeyRelease of Shift")
    assert press.state & X.ShiftMask
    assert window.keysym_of(press) == ks("exclam")


def test_shifted_character_without_a_shift_press_still_types_it(sink: XTestSink, window: EventWindow) -> None:
    # Some senders (scripted typing, IMEs) send "_" on Minus with no Shift press: the character must win.
    press = type_key(sink, window, "Minus", "_")
    assert window.keysym_of(press) == ks("underscore")
    # And the layout's character wins over the US key position (QWERTZ "z" sits on KeyY).
    assert window.keysym_of(type_key(sink, window, "KeyY", "z")) == ks("z")


def test_enter(sink: XTestSink, window: EventWindow) -> None:
    assert window.keysym_of(type_key(sink, window, "Enter", "Enter")) == ks("Return")
    # The same key by `key` alone, as a page without `code` would send it.
    assert window.keysym_of(type_key(sink, window, "", "Enter")) == ks("Return")


def test_non_us_character_through_a_spare_keycode(sink: XTestSink, window: EventWindow) -> None:
    eacute = ks("eacute")
    assert window.display.keysym_to_keycode(eacute) == 0, "the US keymap should lack é for this test"

    first = type_key(sink, window, "", "é")
    assert window.keysym_of(first) == eacute
    keycode = first.detail
    assert window.server_keysyms(keycode)[:2] == [eacute, eacute]

    # The binding is reused, not made again.
    second = type_key(sink, window, "", "é")
    assert second.detail == keycode
    assert window.keysym_of(second) == eacute

    # A character beyond Latin-1 goes through a Unicode keysym.
    euro = type_key(sink, window, "", "€")
    assert window.keysym_of(euro) == 0x010020AC
    assert euro.detail != keycode

    sink.close()
    assert window.server_keysyms(keycode)[:2] == [X.NoSymbol, X.NoSymbol], "close() must unbind spares"


def test_spares_are_recycled_when_they_run_out(sink: XTestSink, window: EventWindow) -> None:
    # More distinct characters than Xvfb's keymap has free keycodes (19): old bindings get reused.
    letters = [chr(c) for c in range(0x430, 0x450)]  # the 32 Cyrillic small letters
    keycodes = set()
    for letter in letters:
        press = type_key(sink, window, "", letter)
        assert window.keysym_of(press) == 0x01000000 + ord(letter), letter
        keycodes.add(press.detail)
    assert len(keycodes) < len(letters)


def test_close_releases_held_keys_and_is_idempotent(sink: XTestSink, window: EventWindow) -> None:
    sink.key("ControlLeft", "Control", True)
    press = window.wait_key(X.KeyPress, "KeyPress of Control")
    sink.close()
    release = window.wait_key(X.KeyRelease, "KeyRelease of Control on close")
    assert release.detail == press.detail
    sink.close()
    with pytest.raises(InputError, match="closed"):
        sink.key("KeyA", "a", True)


def test_unknown_key_is_ignored(sink: XTestSink, window: EventWindow) -> None:
    sink.key("", "Unidentified", True)
    sink.key("", "Unidentified", False)
    # Nothing was typed: the next key event the window sees is the one we type now.
    press = type_key(sink, window, "KeyB", "b")
    assert window.keysym_of(press) == ks("b")


def test_open_input_sink_picks_xtest(xvfb_display: str) -> None:
    sink = open_input_sink(xvfb_display)
    try:
        assert isinstance(sink, XTestSink)
    finally:
        sink.close()


def _unused_display_number() -> int:
    for number in range(5999, 5000, -1):
        if not Path(f"/tmp/.X11-unix/X{number}").exists() and not Path(f"/tmp/.X{number}-lock").exists():
            return number
    raise AssertionError("no free display number")


def test_malformed_display_name_is_an_input_error() -> None:
    with pytest.raises(InputError, match="cannot open X display 'not a display'"):
        XTestSink("not a display")


# python-xlib does not close the socket of a failed connect; that leak is not what this test is about.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_display_without_server_is_an_input_error() -> None:
    name = f"unix:{_unused_display_number()}"
    with pytest.raises(InputError, match="cannot open X display"):
        XTestSink(name)


def test_display_without_xtest_is_an_input_error() -> None:
    if shutil.which("Xvfb") is None:
        pytest.skip("needs Xvfb (apt-get install xvfb)")
    with Xvfb((320, 240), extra_args=("-extension", "XTEST")) as xvfb, pytest.raises(InputError, match="no XTEST"):
        XTestSink(xvfb.name)
