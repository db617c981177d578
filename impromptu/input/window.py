"""``WindowInput``: input confined to one shared X window (protocol.md §8).

A viewer of a shared window must not reach any other window, by any input. XTEST events go where the X server
would send a real device's — to the window under the pointer, to the focused window, or to whichever client holds
a grab — so every event is checked and injected inside one GrabServer on the connection that injects it: no other
client runs between the check and the injection, and the check sees what the event will meet.

- **Where the pointer goes.** Coordinates are the window's own pixels. They are moved to the nearest point that can
  take input: inside the window, inside its input shape (toolkits drawing their own shadows cut those out), and on
  the screen. Then the stack is walked from the root at that point (TranslateCoordinates honours mapping and input
  shapes): the window the event would be delivered to must be the shared window, one of its subwindows, or one of
  the application's own popups (``is_app_popup``: its menus, dropdowns and tooltips). Anything else covers the
  point and the event is dropped. Only a button press raises the window first (and activates it through
  ``_NET_ACTIVE_WINDOW`` for a window manager, which acts once the grab ends: that press is dropped, the next one
  lands) — never a hover, and never over another program's override-redirect window (a screen locker, its menus).
- **Other clients' grabs.** An active pointer or keyboard grab (another program's open menu, a password prompt, a
  screen locker) takes the events whatever the stacking and focus. It is probed first, by grabbing on the window
  the pointer is in (the focus) and letting go at once; ``AlreadyGrabbed`` drops the event, unless the grab is the
  application's: while a button pressed here is held (X's implicit grab, which no other client can take), or when
  the topmost window on the screen is one of its popups (its own open menu).
- **Keys.** A key is pressed only while the window (or a subwindow) has the keyboard focus: it is given the focus
  if it has not, and GetInputFocus must confirm it. Only modifiers are held: any other key is pressed and released
  at once (the viewer's browser repeats it), so X's own repeat never sends it to another window. Lock and group
  keys, Super/Hyper and console switches (Ctrl+Alt+F1…) are dropped: their effect is the whole display's.
- **Releases** are injected only for what this window's input pressed. A key's release goes to the focus, a
  button's to the client holding the pointer; where that would not be the shared window's application, the
  release is injected while impromptu itself holds the keyboard (the pointer), so it reaches no one. When the
  focus leaves the window (or another client grabs the keyboard), held modifiers are released at once.

What core X cannot show is not covered: another program's *passive* grab (a desktop hotkey, a window manager's
key or button binding) takes a matching key or button before the focused window does; and a window manager's
synchronous click-to-focus grab delivers a press after the server grab ends. docs/protocol.md §8 says so.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from Xlib import XK, X
from Xlib import error as xerror
from Xlib.ext import shape
from Xlib.protocol import event as xevent

from ..display.windows import is_app_popup
from ..errors import InputError
from .keymap import resolve_keysym
from .xtest import XTestSink

__all__ = ["WindowInput", "nearest_point"]

logger = logging.getLogger("impromptu.input")

_MAX_DEPTH = 16
"""Deepest window nesting walked (WM frames and toolkits nest a few levels; X allows more, we refuse)."""

_TOP_WINDOWS_CHECKED = 8
"""How many top-level windows, from the top, are looked at to find the topmost one shown."""

_GONE = (xerror.BadWindow, xerror.BadDrawable, xerror.BadMatch)

_PAGER = 2
"""``_NET_ACTIVE_WINDOW`` source indication of a pager: a request on the user's behalf, which window managers
honour without focus-stealing prevention."""


def _keysyms(*names: str) -> frozenset[int]:
    return frozenset(XK.string_to_keysym(name) for name in names) - {X.NoSymbol}


_HELD = _keysyms(
    "Shift_L", "Shift_R", "Control_L", "Control_R", "Alt_L", "Alt_R", "Meta_L", "Meta_R",
    "ISO_Level3_Shift", "ISO_Level5_Shift",
)  # fmt: skip
"""Keys held down for as long as the viewer holds them: modifiers. Every other key is pressed and released."""

_DROPPED = _keysyms(
    "Caps_Lock", "Shift_Lock", "Num_Lock", "Scroll_Lock", "ISO_Lock", "ISO_Level3_Lock", "ISO_Level5_Lock",
    "ISO_Group_Shift", "ISO_Group_Latch", "ISO_Group_Lock", "ISO_Next_Group", "ISO_Prev_Group",
    "ISO_First_Group", "ISO_Last_Group", "ISO_Next_Group_Lock", "ISO_Prev_Group_Lock", "ISO_First_Group_Lock",
    "ISO_Last_Group_Lock", "Mode_switch", "Super_L", "Super_R", "Hyper_L", "Hyper_R", "Terminate_Server",
    "Pointer_EnableKeys", "Pointer_Accelerate", "XF86_Ungrab", "XF86_ClearGrab", "XF86_Next_VMode",
    "XF86_Prev_VMode", *(f"XF86_Switch_VT_{n}" for n in range(1, 13)),
)  # fmt: skip
"""Keys whose effect is the whole display's, not the window's (locks and groups outlive the key press, Super is
the desktop's own hotkey modifier, the rest switch consoles or end the server): dropped in a shared window."""

_FUNCTION_KEYS = frozenset(range(XK.XK_F1, XK.XK_F12 + 1))
_CONTROL = _keysyms("Control_L", "Control_R")
_ALT = _keysyms("Alt_L", "Alt_R", "Meta_L", "Meta_R")

Rect = tuple[int, int, int, int]
"""x, y, width, height."""


class _Refused(Exception):
    """The event would reach something else than the shared window; the text says what."""


def nearest_point(rects: list[Rect], x: int, y: int) -> tuple[int, int] | None:
    """The point of the union of ``rects`` nearest ``(x, y)`` (itself if inside); ``None`` if they are empty."""
    best: tuple[int, int, int] | None = None
    for rx, ry, rw, rh in rects:
        if rw <= 0 or rh <= 0:
            continue
        px = min(max(x, rx), rx + rw - 1)
        py = min(max(y, ry), ry + rh - 1)
        distance = (px - x) ** 2 + (py - y) ** 2
        if best is None or distance < best[0]:
            best = (distance, px, py)
    return None if best is None else (best[1], best[2])


def _clip(rect: Rect, bounds: Rect) -> Rect:
    x0, y0 = max(rect[0], bounds[0]), max(rect[1], bounds[1])
    x1 = min(rect[0] + rect[2], bounds[0] + bounds[2])
    y1 = min(rect[1] + rect[3], bounds[1] + bounds[3])
    return (x0, y0, x1 - x0, y1 - y0)


class WindowInput:
    """An ``InputSink`` for one window's surface, injecting through the display's ``sink`` (shared, not owned:
    ``close`` leaves it open). Raises ``InputError`` for an event it drops, saying why.

    The caller must have ``sink.process_events`` run when ``sink.fileno()`` is readable, so losing the focus
    releases held keys at once.
    """

    def __init__(self, sink: XTestSink, window_id: int) -> None:
        self._sink = sink
        self.window_id = window_id
        with sink.server_grabbed("look at the shared window"):
            self._x: Any = sink.connection
            self._root: Any = self._x.screen().root
            self._window: Any = self._x.create_resource_object("window", window_id)
            self._mask = int(self._x.display.info.resource_id_mask)
            self._shape = self._x.has_extension(shape.extname)
            self._net_active = self._x.intern_atom("_NET_ACTIVE_WINDOW")
        self._point = (0, 0)
        """The last window point the pointer was sent to: buttons and wheel notches act there."""
        self._keys: dict[str, tuple[str, str]] = {}
        """Modifiers held through this window, by ``code or key``: the (code, key) of the press."""
        self._buttons: set[int] = set()
        self._rects: list[Rect] | None = None
        """The parts of the window that take input (its input shape within it), in window coordinates."""
        self._ancestor_ids: set[int] | None = None
        self._own_grabs: list[int] = []
        """Sequence numbers of our latest keyboard-grab probes: the focus events they cause are not news."""
        sink.watch(window_id, self._on_event, X.FocusChangeMask | X.StructureNotifyMask)

    # -- InputSink -------------------------------------------------------------------------------------------

    def move(self, x: int, y: int) -> None:
        self._point = (x, y)
        with self._checked("move the pointer"):
            sx, sy = self._aim(x, y, may_raise=False)
            self._sink.move(sx, sy)

    def button(self, button: int, down: bool) -> None:
        if not down:
            if button in self._buttons:
                self._buttons.discard(button)
                with self._checked("release a button"):
                    self._release_button(button)
            return
        with self._checked("press a button"):
            sx, sy = self._aim(*self._point, may_raise=True)
            self._sink.move(sx, sy)  # the pointer may have moved since (another viewer, the local user)
            self._sink.button(button, True)
            self._buttons.add(button)

    def key(self, code: str, key: str, down: bool) -> None:
        ident = code or key
        if not down:
            pressed = self._keys.pop(ident, None)
            if pressed is not None:
                with self._checked("release a key"):
                    self._release_key(*pressed)
            return
        keysym = resolve_keysym(code, key)
        if keysym is None:
            return
        if keysym in _DROPPED:
            raise InputError(f"not injected into window {self.window_id:#x}: {key or code} acts on the whole display")
        held = {resolve_keysym(*k) for k in self._keys.values()}
        if keysym in _FUNCTION_KEYS and held & _CONTROL and held & _ALT:
            raise InputError(f"not injected into window {self.window_id:#x}: Ctrl+Alt+{key} switches consoles")
        with self._checked("press a key"):
            self._focus()
            self._sink.key(code, key, True)
            if keysym not in _HELD:
                self._sink.key(code, key, False)
            elif self._sink.holds_key(code, key):
                self._keys.setdefault(ident, (code, key))

    def close(self) -> None:
        """Release what this window's input holds and stop watching the window; the display's sink stays open."""
        self._sink.unwatch(self.window_id)
        self._release_keys()
        for button in list(self._buttons):
            self.button(button, False)

    # -- the checks, inside one server grab ------------------------------------------------------------------

    @contextmanager
    def _checked(self, action: str) -> Iterator[None]:
        try:
            with self._sink.server_grabbed(action):
                try:
                    yield
                except _Refused as exc:
                    raise InputError(f"not injected into window {self.window_id:#x}: {exc}") from None
                except _GONE:
                    raise InputError(f"not injected: window {self.window_id:#x} is gone") from None
        finally:
            # Events read during those round trips wait in python-xlib's queue, where the socket no longer says so.
            self._sink.process_events()

    def _aim(self, x: int, y: int, may_raise: bool) -> tuple[int, int]:
        """The screen point for window point ``(x, y)``, moved to the nearest point that takes input, once it is
        checked that no other client holds the pointer and that the pointer there reaches the window (raising it
        first, with ``may_raise``, unless what covers it is another program's override-redirect window).

        The window's size, input shape and ancestors are remembered between events: the stacking check at the end
        finds out if they changed (a point outside the window's input is not in it), and then they are asked again.
        Its place on the screen and the screen's size are asked every time: a stale one could put a point on a
        part of the window that is hidden by another or off the screen, where the X server would move it.
        """
        self._probe_grab(self._under_pointer(), keyboard=False)
        sx, sy = self._screen_point(x, y)
        cover = self._cover(sx, sy)
        if cover is not None:
            self._forget_window()
            sx, sy = self._screen_point(x, y)
            cover = self._cover(sx, sy)
        if cover is not None:
            if self._window.get_attributes().map_state != X.IsViewable:
                raise _Refused("it is not shown")
            if not may_raise:
                raise _Refused("another window covers that point")
            if cover.get_attributes().override_redirect:
                raise _Refused("another program's window (a menu, a lock screen) covers that point")
            self._raise()
            if self._cover(sx, sy) is not None:
                raise _Refused("another window covers that point; the window was raised for the next click")
        return sx, sy

    def _screen_point(self, x: int, y: int) -> tuple[int, int]:
        origin = self._root.translate_coords(self._window, 0, 0)
        screen = self._root.get_geometry()
        if self._rects is None:
            geometry = self._window.get_geometry()
            self._rects = [(0, 0, geometry.width, geometry.height)]
            if self._shape:
                reply = self._window.shape_get_rectangles(shape.SK.Input)
                self._rects = [_clip((r.x, r.y, r.width, r.height), self._rects[0]) for r in reply.rectangles]
        on_screen = (-origin.x, -origin.y, screen.width, screen.height)
        point = nearest_point([_clip(rect, on_screen) for rect in self._rects], x, y)
        if point is None:
            raise _Refused("no part of it that takes input is on the screen")
        return origin.x + point[0], origin.y + point[1]

    def _forget_window(self) -> None:
        self._rects = None
        self._ancestor_ids = None

    def _cover(self, sx: int, sy: int) -> Any | None:
        """``None`` if a pointer event at screen point ``(sx, sy)`` would go to the shared window (or one of its
        subwindows) or one of the application's popups; else the top-level window in the way (the root itself
        when the point is on no window, or on a window manager's frame)."""
        ancestors = self._ancestry()
        current = self._root
        top = self._root
        for _ in range(_MAX_DEPTH):
            child = current.translate_coords(self._root, sx, sy).child
            if not child:
                return top  # the point is on an ancestor itself: a window manager's frame
            if current is self._root:
                top = child
            if child.id == self.window_id:
                return None
            if current is self._root and is_app_popup(child, self.window_id, self._mask):
                return None
            if child.id not in ancestors:
                return top
            current = child
        return top

    def _ancestry(self) -> set[int]:
        if self._ancestor_ids is None:
            self._ancestor_ids = {w.id for w in self._ancestors()}
        return self._ancestor_ids

    def _under_pointer(self) -> Any:
        """The deepest window the pointer is in now (where X sends pointer events without a grab)."""
        current = self._root
        for _ in range(_MAX_DEPTH):
            child = current.query_pointer().child
            if not child:
                break
            current = child
        return current

    def _ancestors(self) -> list[Any]:
        """The window's ancestors below the root, the top-level one first."""
        chain: list[Any] = []
        window = self._window
        for _ in range(_MAX_DEPTH):
            parent = window.query_tree().parent
            if not parent or parent.id == self._root.id:
                chain.reverse()
                return chain
            chain.append(parent)
            window = parent
        raise _Refused("it is nested too deep")

    def _app_menu_on_top(self) -> bool:
        """Whether the topmost window shown on the screen is one of the application's popups (its open menu, which
        is what holds a grab the application made)."""
        for child in list(reversed(self._root.query_tree().children))[:_TOP_WINDOWS_CHECKED]:
            try:
                attributes = child.get_attributes()
            except _GONE:
                continue
            if attributes.map_state == X.IsViewable and attributes.win_class == X.InputOutput:
                return bool(is_app_popup(child, self.window_id, self._mask))
        return False

    def _raise(self) -> None:
        """Raise the window's top-level window. Without a window manager the X server does it now; with one,
        ConfigureWindow and ``_NET_ACTIVE_WINDOW`` go to the window manager, which acts after the grab."""
        chain = self._ancestors()
        top = chain[0] if chain else self._window
        top.configure(stack_mode=X.Above, onerror=xerror.CatchError())
        message = xevent.ClientMessage(
            window=self._window,
            client_type=self._net_active,
            data=(32, [_PAGER, X.CurrentTime, 0, 0, 0]),
        )
        self._root.send_event(
            message, event_mask=X.SubstructureRedirectMask | X.SubstructureNotifyMask, onerror=xerror.CatchError()
        )

    def _focus(self) -> None:
        """Check that no other client holds the keyboard, then give the window the keyboard focus unless it (or a
        subwindow) has it, and check that it took."""
        if self._window.get_attributes().map_state != X.IsViewable:
            raise _Refused("it is not shown")
        self._probe_grab(self._x.get_input_focus().focus, keyboard=True)
        if not self._has_focus():
            self._window.set_input_focus(X.RevertToParent, X.CurrentTime, onerror=xerror.CatchError())
            if not self._has_focus():
                raise _Refused("it did not take the keyboard focus")

    def _has_focus(self) -> bool:
        focus = self._x.get_input_focus().focus
        for _ in range(_MAX_DEPTH):
            if not hasattr(focus, "id") or focus.id == self._root.id:  # None or PointerRoot: not ours
                return False
            if focus.id == self.window_id:
                return True
            focus = focus.query_tree().parent
        return False

    def _probe_grab(self, window: Any, keyboard: bool) -> None:
        """Refuse if another client holds the pointer (keyboard): grab it on ``window`` — the window the pointer is
        in (the focus), so no crossing event says anything moved — and let go at once."""
        if not hasattr(window, "grab_keyboard"):  # focus None or PointerRoot: probe on the root
            window = self._root
        if keyboard:
            self._own_grabs = [*self._own_grabs[-6:], self._x.display.request_serial]
            status = window.grab_keyboard(False, X.GrabModeAsync, X.GrabModeAsync, X.CurrentTime)
        else:
            status = window.grab_pointer(False, 0, X.GrabModeAsync, X.GrabModeAsync, X.NONE, X.NONE, X.CurrentTime)
        if status == X.GrabSuccess:
            if keyboard:
                self._own_grabs.append(self._x.display.request_serial)
                self._x.ungrab_keyboard(X.CurrentTime)
            else:
                self._x.ungrab_pointer(X.CurrentTime)
            return
        if status == X.AlreadyGrabbed and ((not keyboard and self._buttons) or self._app_menu_on_top()):
            # A button pressed here: the application holds the pointer since that press (X's implicit grab, which
            # no other client can take over). Or its own menu is up, on top of everything, and holds it.
            return
        what = "keyboard" if keyboard else "pointer"
        raise _Refused(f"another program holds the {what} (a menu, a password prompt or a screen locker)")

    # -- releases --------------------------------------------------------------------------------------------

    def _release_button(self, button: int) -> None:
        """Release ``button`` to the client holding the pointer since its press (the application's implicit grab);
        if nobody holds it any more (the window went away meanwhile), while we hold it, so it reaches no one."""
        status = self._root.grab_pointer(False, 0, X.GrabModeAsync, X.GrabModeAsync, X.NONE, X.NONE, X.CurrentTime)
        self._sink.button(button, False)
        if status == X.GrabSuccess:
            self._x.ungrab_pointer(X.CurrentTime)

    def _release_key(self, code: str, key: str) -> None:
        """Release a key held through the window: to it if it has the focus, else while we hold the keyboard, so
        no other window gets it."""
        if self._window.get_attributes().map_state == X.IsViewable and self._has_focus():
            self._sink.key(code, key, False)
            return
        self._own_grabs = [*self._own_grabs[-6:], self._x.display.request_serial]
        status = self._root.grab_keyboard(False, X.GrabModeAsync, X.GrabModeAsync, X.CurrentTime)
        self._sink.key(code, key, False)
        if status == X.GrabSuccess:
            self._own_grabs.append(self._x.display.request_serial)
            self._x.ungrab_keyboard(X.CurrentTime)

    def _on_event(self, event: Any) -> None:
        if event.type == X.ConfigureNotify:
            self._rects = None
        if not self._keys or event.type not in (X.FocusOut, X.UnmapNotify, X.DestroyNotify):
            return
        if event.type == X.FocusOut and event.mode in (X.NotifyGrab, X.NotifyUngrab):
            if event.sequence_number in self._own_grabs:
                return  # our own probe
            logger.debug("another client grabbed the keyboard: releasing what window %#x holds", self.window_id)
        else:
            try:
                with self._sink.server_grabbed("check the focus"):
                    if self._window.get_attributes().map_state == X.IsViewable and self._has_focus():
                        return
            except (InputError, *_GONE):
                pass
            logger.debug("window %#x lost the focus: releasing %d keys", self.window_id, len(self._keys))
        self._release_keys()

    def _release_keys(self) -> None:
        keys, self._keys = self._keys, {}
        for code, key in reversed(keys.values()):
            try:
                with self._checked("release a key"):
                    self._release_key(code, key)
            except InputError as exc:
                logger.debug("releasing a key of window %#x failed: %s", self.window_id, exc)
