"""``XTestSink``: inject viewers' input into an X display with the XTEST extension."""

from __future__ import annotations

import contextlib
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from Xlib import XK, X
from Xlib import error as xerror
from Xlib.display import Display
from Xlib.ext import xtest
from Xlib.protocol import event as xevent

from ..errors import InputError
from .keymap import resolve_keysym

__all__ = ["XTestSink"]

logger = logging.getLogger("impromptu.input")

# A character is typed at the level the viewer's Shift state selects: 0 without Shift, 1 with it. A keysym
# found only at the other level, or on AltGr/Mode_switch levels, is bound to a spare keycode instead (on both
# levels), so it types the same whatever modifiers are held, and we never fake a modifier the viewer did not
# press.
_SHIFT_KEYSYMS = frozenset({XK.XK_Shift_L, XK.XK_Shift_R})

_MAX_EVENT_ROUNDS = 16
"""``process_events`` reads and hands on events at most this many times in one call (then waits for the socket)."""

# Failures of the X connection itself: the server went away or the socket broke.
_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (xerror.ConnectionClosedError, OSError)


class XTestSink:
    """An ``InputSink`` that fakes pointer and keyboard events on X display ``display_name`` through XTEST.

    It uses its own connection to the display. Keys are pressed by keycode: the keycode X already maps to the
    keysym when there is one, otherwise a spare keycode (one with no keysyms) temporarily bound to it with
    ``ChangeKeyboardMapping`` and reused for that keysym until spares run out (then the least recently used,
    unpressed binding is recycled). ``close()`` releases whatever is still pressed and unbinds the spares.

    Raises ``InputError`` if the display cannot be opened or lacks XTEST.
    """

    def __init__(self, display_name: str) -> None:
        self._name = display_name
        self._closed = False
        try:
            self._display: Any = Display(display_name)
        except (
            xerror.DisplayError,
            xerror.XauthError,
            xerror.XNoAuthError,
            *_CONNECTION_ERRORS,
            # A display number python-xlib maps to an impossible TCP port (":65000"), and the like.
            ValueError,
            OverflowError,
        ) as exc:
            raise InputError(
                f"cannot open X display {display_name!r} to inject input: {exc}. "
                "Check that the display is running and that this user may connect to it (xauth)."
            ) from exc
        if not self._display.has_extension(xtest.extname):
            self._display.close()
            raise InputError(
                f"X display {display_name!r} has no XTEST extension, so viewers' input cannot be injected. "
                "Start the X server with XTEST (Xvfb and Xorg have it unless run with '-extension XTEST')."
            )
        # Asynchronous X errors (a request rejected after flush) would otherwise be printed to stderr.
        self._display.set_error_handler(self._on_x_error)
        self._root: Any = self._display.screen().root
        self._min_keycode = int(self._display.display.info.min_keycode)
        self._max_keycode = int(self._display.display.info.max_keycode)
        # keysym -> spare keycode we bound it to, least recently used first.
        self._bound: OrderedDict[int, int] = OrderedDict()
        # keysym -> keycode currently held down, so the release uses the keycode of the press.
        self._held_keys: dict[int, int] = {}
        self._held_buttons: set[int] = set()
        # window id -> what to call with each event this connection receives about it (``watch``).
        self._watchers: dict[int, Callable[[Any], None]] = {}
        self._events: list[Any] = []

    # -- InputSink -------------------------------------------------------------------------------------------

    def move(self, x: int, y: int) -> None:
        """Move the pointer to ``(x, y)`` on the display's first screen."""
        with self._connection("move the pointer"):
            xtest.fake_input(self._display, X.MotionNotify, detail=0, root=self._root, x=x, y=y)
            self._display.flush()

    def button(self, button: int, down: bool) -> None:
        """Press or release pointer button ``button`` (1 to 7)."""
        if not 1 <= button <= 7:
            raise ValueError(f"X pointer button must be 1 to 7, not {button}")
        with self._connection("press a pointer button"):
            xtest.fake_input(self._display, X.ButtonPress if down else X.ButtonRelease, detail=button)
            self._display.flush()
        if down:
            self._held_buttons.add(button)
        else:
            self._held_buttons.discard(button)

    def key(self, code: str, key: str, down: bool) -> None:
        """Press or release the key named by ``code``/``key`` (protocol.md §5); ignores unknown keys."""
        keysym = resolve_keysym(code, key)
        if keysym is None:
            logger.debug("no keysym for code=%r key=%r; ignored", code, key)
            return
        self.keysym(keysym, down)

    def keysym(self, keysym: int, down: bool) -> None:
        """Press or release the key that types X keysym ``keysym`` (binding a spare keycode if none does)."""
        with self._connection("press a key"):
            if down:
                keycode = self._held_keys.get(keysym) or self._keycode_for(keysym, self._level())
                if keycode is None:
                    return
                xtest.fake_input(self._display, X.KeyPress, detail=keycode)
                self._held_keys[keysym] = keycode
            else:
                # Releasing a key that was never pressed here: no spare is bound just for that.
                keycode = self._held_keys.pop(keysym, None) or self._mapped_keycode(keysym, None)
                if keycode is None:
                    return
                xtest.fake_input(self._display, X.KeyRelease, detail=keycode)
            self._display.flush()

    # -- for input confined to a window (window.py) ----------------------------------------------------------

    @property
    def connection(self) -> Any:
        """The python-xlib ``Display`` this sink injects through: requests made on it are ordered with the
        injected events (the X server handles one connection's requests in order)."""
        return self._display

    @contextmanager
    def server_grabbed(self, action: str) -> Iterator[Any]:
        """Hold the X server (GrabServer) on the injecting connection for the block: no other client's request is
        handled until it ends, so what the block checks still holds when it injects. Yields the connection.
        A lost connection raises ``InputError``."""
        with self._connection(action):
            self._display.grab_server()
            try:
                yield self._display
            finally:
                with contextlib.suppress(*_CONNECTION_ERRORS):
                    self._display.ungrab_server()
                    self._display.flush()

    def watch(self, window_id: int, on_event: Callable[[Any], None], event_mask: int) -> None:
        """Select ``event_mask`` on window ``window_id`` and call ``on_event`` with each event about it, when
        ``process_events`` reads them (the caller reads ``fileno``). A window already gone is ignored."""
        with self._connection("watch a window"):
            window = self._display.create_resource_object("window", window_id)
            window.change_attributes(event_mask=event_mask, onerror=xerror.CatchError())
            self._display.flush()
        self._watchers[window_id] = on_event

    def unwatch(self, window_id: int) -> None:
        self._watchers.pop(window_id, None)

    def fileno(self) -> int:
        """The X connection's socket: readable when ``process_events`` has something to do."""
        return int(self._display.fileno())

    def process_events(self) -> None:
        """Handle what the X server sent: keymap changes, and events about watched windows. Never blocks."""
        if self._closed:
            return
        for _ in range(_MAX_EVENT_ROUNDS):
            try:
                self._process_mapping_changes()
            except _CONNECTION_ERRORS as exc:
                logger.debug("X display %s: reading events failed: %s", self._name, exc)
                return
            if not self._events:
                return
            # Watchers make round trips, during which more events may be read into python-xlib's queue (where the
            # socket no longer announces them): go round again until none is left.
            events, self._events = self._events, []
            for evt in events:
                on_event = self._watchers.get(evt.window.id)
                if on_event is None:
                    continue
                try:
                    on_event(evt)
                except InputError as exc:
                    logger.debug("X display %s: handling %s failed: %s", self._name, type(evt).__name__, exc)
                except xerror.XError as exc:
                    logger.warning("X display %s: handling %s failed: %s", self._name, type(evt).__name__, exc)

    def holds_key(self, code: str, key: str) -> bool:
        """Whether the key ``code``/``key`` names is pressed through this sink."""
        keysym = resolve_keysym(code, key)
        return keysym is not None and keysym in self._held_keys

    def holds_button(self, button: int) -> bool:
        return button in self._held_buttons

    def close(self) -> None:
        """Release held keys and buttons, unbind the spare keycodes, close the connection. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self._process_mapping_changes()  # never unbind a keycode another client has rebound since
            for keycode in self._held_keys.values():
                xtest.fake_input(self._display, X.KeyRelease, detail=keycode)
            for button in self._held_buttons:
                xtest.fake_input(self._display, X.ButtonRelease, detail=button)
            for keycode in self._bound.values():
                self._display.change_keyboard_mapping(keycode, [(X.NoSymbol, X.NoSymbol)])
            # A round trip before hanging up: requests merely flushed just before the socket closes can be
            # dropped by the server (seen with Xvfb: the spares stayed bound).
            self._display.sync()
            self._display.close()
        except _CONNECTION_ERRORS as exc:
            logger.debug("X display %s was already gone when closing input: %s", self._name, exc)
        finally:
            self._held_keys.clear()
            self._held_buttons.clear()
            self._bound.clear()

    # -- internals -------------------------------------------------------------------------------------------

    @contextmanager
    def _connection(self, action: str) -> Iterator[None]:
        if self._closed:
            raise InputError(f"cannot {action}: the input connection to X display {self._name!r} is closed")
        try:
            yield
        except _CONNECTION_ERRORS as exc:
            raise InputError(
                f"lost the connection to X display {self._name!r} while trying to {action}: {exc}"
            ) from exc

    def _on_x_error(self, err: Any, request: Any) -> None:
        logger.warning("X display %s rejected an input request: %s", self._name, err)

    def _level(self) -> int:
        """The keysym level the modifiers we hold select: 1 while a Shift key is held, else 0."""
        return 1 if any(k in _SHIFT_KEYSYMS for k in self._held_keys) else 0

    def _keycode_for(self, keysym: int, level: int) -> int | None:
        """A keycode typing ``keysym`` at ``level``, binding a spare if needed."""
        self._process_mapping_changes()
        keycode = self._mapped_keycode(keysym, level)
        if keycode is None:
            keycode = self._bind_spare(keysym)
        return keycode

    def _mapped_keycode(self, keysym: int, level: int | None) -> int | None:
        """A keycode already typing ``keysym`` at ``level`` (any of 0 and 1 when ``None``; our spares, bound
        on both, first) or ``None``; never changes the keymap."""
        bound = self._bound.get(keysym)
        if bound is not None:
            self._bound.move_to_end(keysym)
            return bound
        levels = (0, 1) if level is None else (level,)
        for keycode, found in self._display.keysym_to_keycodes(keysym):
            if found in levels:
                return int(keycode)
        return None

    def _bind_spare(self, keysym: int) -> int | None:
        keycode = self._free_keycode()
        if keycode is None:
            logger.warning("X display %s has no spare keycode left to type keysym %#x; key ignored", self._name, keysym)
            return None
        catch = xerror.CatchError()
        # The same keysym on both levels, so it types the same with or without Shift held.
        self._display.change_keyboard_mapping(keycode, [(keysym, keysym)], onerror=catch)
        # The one round trip per new binding: surfaces a rejected mapping now, and brings back the
        # MappingNotify that refreshes python-xlib's keymap cache.
        self._display.sync()
        if catch.get_error() is not None:
            logger.warning(
                "X display %s refused to bind keysym %#x to keycode %d: %s; key ignored",
                self._name,
                keysym,
                keycode,
                catch.get_error(),
            )
            return None
        self._bound[keysym] = keycode
        self._process_mapping_changes()
        logger.debug("bound keysym %#x to spare keycode %d", keysym, keycode)
        return keycode

    def _free_keycode(self) -> int | None:
        count = self._max_keycode - self._min_keycode + 1
        mapping = self._display.get_keyboard_mapping(self._min_keycode, count)
        # Highest first: low spare keycodes (8 in particular) are likelier to be claimed by a later keymap.
        for offset in range(count - 1, -1, -1):
            if not any(mapping[offset]):
                return self._min_keycode + offset
        held = set(self._held_keys.values())
        for old_keysym, keycode in self._bound.items():  # least recently used first
            if keycode not in held:
                del self._bound[old_keysym]
                return keycode
        return None

    def _process_mapping_changes(self) -> None:
        """Apply MappingNotify events (ours or another client's, e.g. setxkbmap) to the keymap cache, and pass
        events about watched windows to their watchers.

        Reading them also keeps python-xlib's event queue from growing. ``pending_events`` reads the socket
        without blocking.
        """
        changed = False
        while self._display.pending_events():
            evt = self._display.next_event()
            if isinstance(evt, xevent.MappingNotify):
                if evt.request == X.MappingKeyboard:
                    self._display.refresh_keyboard_mapping(evt)
                    changed = True
                continue
            if getattr(getattr(evt, "window", None), "id", 0) in self._watchers:
                # Handed over by ``process_events`` only: this may run in the middle of injecting a key.
                self._events.append(evt)
        if changed:
            # Forget bindings another client overwrote, so we never type the wrong keysym on a reused keycode.
            stale = [
                keysym
                for keysym, keycode in self._bound.items()
                if self._display.keycode_to_keysym(keycode, 0) != keysym
            ]
            for keysym in stale:
                del self._bound[keysym]
