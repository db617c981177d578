"""``WindowInput``: input confined to one shared X window (protocol.md §8).

A viewer of a shared window must not reach any other window, by any input. XTEST events go where the X server
would send a real device's — to the window under the pointer, to the focused window, or to whichever client holds
a grab — so every pointer event and key press is checked and injected inside one GrabServer on the connection
that injects it: no other client runs between the check and the injection, and the check sees what the event will
meet.

- **Where the pointer goes.** Coordinates are the window's own pixels. They are moved to the nearest point that can
  take input: inside the window, inside its input shape (toolkits drawing their own shadows cut those out), and on
  the screen. Then the stack is walked from the root at that point (TranslateCoordinates honours mapping and input
  shapes): the window the event would be delivered to must be the shared window, one of its subwindows, or one of
  the application's own popups (an override-redirect window of the same X client: its menus, dropdowns and
  tooltips). Anything else covers the point: the window is raised (and activated through ``_NET_ACTIVE_WINDOW``
  for a window manager) and checked again. Still covered — a window manager handles the raise only once the grab
  ends — the event is dropped; the next one lands.
- **Keys** are pressed only while the window (or a subwindow) has the keyboard focus: it is given the focus if it
  has not, and GetInputFocus must confirm it.
- **Other clients' grabs.** An active pointer or keyboard grab (another program's open menu, a password prompt, a
  screen locker) takes the events whatever the stacking and focus. It is probed by grabbing on the window that
  would get the event and letting go at once; ``AlreadyGrabbed`` drops the event, unless the application itself
  has a popup up (its own open menu holds the grab).
- **Releases** are injected only for what this window's input pressed, and need no check: a button's release goes
  to the client holding the implicit grab of its press (the shared window's), a key's to the focus. X repeats a
  held key to whichever window has the focus, so when the focus leaves the shared window (or it is unmapped), the
  keys it holds are released at once; the viewer's later key-up is then dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from Xlib import X
from Xlib import error as xerror
from Xlib.ext import shape
from Xlib.protocol import event as xevent

from ..display.windows import client_of
from ..errors import InputError
from .xtest import XTestSink

__all__ = ["WindowInput"]

logger = logging.getLogger("impromptu.input")

_MAX_DEPTH = 16
"""Deepest window nesting walked (WM frames and toolkits nest a few levels; X allows more, we refuse)."""

_GONE = (xerror.BadWindow, xerror.BadDrawable, xerror.BadMatch)

_PAGER = 2
"""``_NET_ACTIVE_WINDOW`` source indication of a pager: a request on the user's behalf, which window managers
honour without focus-stealing prevention."""

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
        self._x: Any = sink.connection
        self._root: Any = self._x.screen().root
        self._window: Any = self._x.create_resource_object("window", window_id)
        self._client = client_of(window_id, self._x.display.info.resource_id_mask)
        self._shape = self._x.has_extension(shape.extname)
        self._net_active = self._x.intern_atom("_NET_ACTIVE_WINDOW")
        self._point = (0, 0)
        """The last window point the pointer was sent to: buttons and wheel notches act there."""
        self._keys: dict[str, tuple[str, str]] = {}
        """Keys pressed through this window, by ``code or key``: the (code, key) of the press."""
        self._buttons: set[int] = set()
        self._rects: list[Rect] | None = None
        """The parts of the window that take input (its input shape within it), in window coordinates."""
        self._ancestor_ids: set[int] | None = None
        sink.watch(window_id, self._on_event, X.FocusChangeMask | X.StructureNotifyMask)

    # -- InputSink -------------------------------------------------------------------------------------------

    def move(self, x: int, y: int) -> None:
        self._point = (x, y)
        with self._checked("move the pointer"):
            sx, sy = self._aim(x, y)
            self._sink.move(sx, sy)

    def button(self, button: int, down: bool) -> None:
        if not down:
            if button in self._buttons:
                self._buttons.discard(button)
                self._sink.button(button, False)
            return
        with self._checked("press a button"):
            sx, sy = self._aim(*self._point)
            self._sink.move(sx, sy)  # the pointer may have moved since (another viewer, the local user)
            self._sink.button(button, True)
            self._buttons.add(button)

    def key(self, code: str, key: str, down: bool) -> None:
        ident = code or key
        if not down:
            pressed = self._keys.pop(ident, None)
            if pressed is not None:
                self._sink.key(*pressed, False)
            return
        with self._checked("press a key"):
            self._focus()
            self._sink.key(code, key, True)
            if self._sink.holds_key(code, key):
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

    def _aim(self, x: int, y: int) -> tuple[int, int]:
        """The screen point for window point ``(x, y)``, moved to the nearest point that takes input; checks that
        the pointer there reaches the window (raising it if not) and that no other client holds the pointer.

        The window's size, input shape and ancestors are remembered between events: the stacking check at the end
        finds out if they changed (a point outside the window's input is not in it), and then they are asked again.
        Its place on the screen and the screen's size are asked every time: a stale one could put a point on a
        part of the window that is hidden by another or off the screen, where the X server would move it.
        """
        sx, sy = self._screen_point(x, y)
        if self._receiver(sx, sy) is None:
            self._forget_window()
            sx, sy = self._screen_point(x, y)
            if self._receiver(sx, sy) is None:
                if self._window.get_attributes().map_state != X.IsViewable:
                    raise _Refused("it is not shown")
                self._raise()
                if self._receiver(sx, sy) is None:
                    raise _Refused("another window covers that point")
        self._probe_grab(self._under_pointer(), keyboard=False)
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

    def _receiver(self, sx: int, sy: int) -> bool | None:
        """Whether a pointer event at screen point ``(sx, sy)`` would go to the shared window (or one of its
        subwindows) or one of the application's popups: ``True``, else ``None``."""
        ancestors = self._ancestry()
        current = self._root
        for _ in range(_MAX_DEPTH):
            child = current.translate_coords(self._root, sx, sy).child
            if not child:
                return None  # the point is on an ancestor itself: a window manager's frame
            if child.id == self.window_id or (current is self._root and self._is_popup(child)):
                return True
            if child.id not in ancestors:
                return None
            current = child
        return None

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

    def _is_popup(self, window: Any) -> bool:
        """Whether top-level ``window`` is one of the application's own popups: override-redirect, viewable, made
        by the same X client as the shared window (not the shared window itself, nor what holds it)."""
        if window.id == self.window_id or window.id in self._ancestry():
            return False
        if client_of(window.id, self._x.display.info.resource_id_mask) != self._client:
            return False
        try:
            attributes = window.get_attributes()
        except _GONE:
            return False
        return bool(attributes.override_redirect) and attributes.map_state == X.IsViewable

    def _popup_up(self) -> bool:
        return any(self._is_popup(child) for child in self._root.query_tree().children)

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
        """Give the window the keyboard focus unless it (or a subwindow) has it; check it took, and that no other
        client holds the keyboard."""
        if self._window.get_attributes().map_state != X.IsViewable:
            raise _Refused("it is not shown")
        if not self._has_focus():
            self._window.set_input_focus(X.RevertToParent, X.CurrentTime, onerror=xerror.CatchError())
            if not self._has_focus():
                raise _Refused("it did not take the keyboard focus")
        self._probe_grab(self._x.get_input_focus().focus, keyboard=True)  # the window itself, or a subwindow

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
        in (the focus), so no crossing or focus event says anything moved — and let go at once."""
        if keyboard:
            status = window.grab_keyboard(False, X.GrabModeAsync, X.GrabModeAsync, X.CurrentTime)
        else:
            status = window.grab_pointer(False, 0, X.GrabModeAsync, X.GrabModeAsync, X.NONE, X.NONE, X.CurrentTime)
        if status == X.GrabSuccess:
            if keyboard:
                self._x.ungrab_keyboard(X.CurrentTime)
            else:
                self._x.ungrab_pointer(X.CurrentTime)
            return
        if status == X.AlreadyGrabbed and ((not keyboard and self._buttons) or self._popup_up()):
            # A button pressed here: the application holds the pointer since that press (X's implicit grab, which
            # no other client can take over). Or its own menu is up and holds it.
            return
        what = "keyboard" if keyboard else "pointer"
        raise _Refused(f"another program holds the {what} (a menu, a password prompt or a screen locker)")

    # -- focus leaving ---------------------------------------------------------------------------------------

    def _on_event(self, event: Any) -> None:
        if event.type == X.ConfigureNotify:
            self._rects = None
        if not self._keys:
            return
        if event.type == X.FocusOut and event.mode in (X.NotifyGrab, X.NotifyUngrab):
            return  # a grab (ours, probing) or its end: the focus stays
        if event.type in (X.FocusOut, X.UnmapNotify, X.DestroyNotify):
            try:
                with self._sink.server_grabbed("check the focus"):
                    if self._has_focus():
                        return
            except (InputError, *_GONE):
                pass
            logger.debug("window %#x lost the focus: releasing %d keys", self.window_id, len(self._keys))
            self._release_keys()

    def _release_keys(self) -> None:
        keys, self._keys = self._keys, {}
        for code, key in reversed(keys.values()):
            try:
                self._sink.key(code, key, False)
            except InputError as exc:
                logger.debug("releasing a key of window %#x failed: %s", self.window_id, exc)
