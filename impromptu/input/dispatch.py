"""``InputDispatcher``: validate viewers' ``input.*`` control messages and drive an ``InputSink``."""

from __future__ import annotations

import logging
from collections.abc import Callable

from ..errors import InputError
from .base import InputSink

__all__ = ["InputDispatcher"]

logger = logging.getLogger("impromptu.input")

MAX_STRING_LENGTH = 32
"""Longest ``code``/``key`` accepted; real DOM values are far shorter (``"AudioVolumeMute"`` is 15)."""

WHEEL_NOTCHES = 10
"""``dx``/``dy`` of ``input.wheel`` must lie in ``-WHEEL_NOTCHES..WHEEL_NOTCHES``."""

COORDINATE_LIMIT = 1 << 15
"""With ``clamp``, coordinates within ``±COORDINATE_LIMIT`` are brought into the surface; beyond, they are dropped."""

POINTER_BUTTONS = (1, 2, 3)
"""Buttons a viewer may press with ``input.button`` (left, middle, right); 4 to 7 belong to the wheel."""

# X buttons of one wheel notch: (negative, positive) direction.
_VERTICAL_BUTTONS = (4, 5)  # up, down
_HORIZONTAL_BUTTONS = (6, 7)  # left, right


class _Dropped(Exception):
    """A message fails validation; the text says why, for the one log line."""


def _show(value: object) -> str:
    """``repr`` cut short: field values come from the network and must not flood the log."""
    text = repr(value)
    return text if len(text) <= 40 else text[:39] + "…"


def _int(msg: dict[str, object], name: str, low: int, high: int) -> int:
    value = msg.get(name)
    # bool is a subclass of int, but `true` is not a coordinate.
    if not isinstance(value, int) or isinstance(value, bool):
        raise _Dropped(f"{name} must be an integer, not {_show(value)}")
    if not low <= value <= high:
        raise _Dropped(f"{name}={value} is outside {low}..{high}")
    return value


def _bool(msg: dict[str, object], name: str) -> bool:
    value = msg.get(name)
    if not isinstance(value, bool):
        raise _Dropped(f"{name} must be a boolean, not {_show(value)}")
    return value


def _str(msg: dict[str, object], name: str) -> str:
    value = msg.get(name)
    if not isinstance(value, str):
        raise _Dropped(f"{name} must be a string, not {_show(value)}")
    if len(value) > MAX_STRING_LENGTH:
        raise _Dropped(f"{name} is longer than {MAX_STRING_LENGTH} characters: {_show(value)}")
    return value


class InputDispatcher:
    """Turns viewers' ``input.*`` control messages (protocol.md §5) into calls on an ``InputSink``.

    Every message is validated first; a malformed one is dropped with one warning on the ``impromptu.input``
    logger and nothing reaches the sink. ``handle`` never raises: sink failures are logged too.

    The dispatcher remembers which keys (by ``code``, or by ``key`` when ``code`` is empty) and buttons each
    viewer holds, so ``release(viewer)`` (on disconnect) and ``input.release`` (on blur) can let go of them.
    The X display is shared, so a key or button is released on the display only when no other viewer still
    holds it, and a button another viewer holds is not pressed a second time.

    With ``clamp`` (a shared window, protocol.md §8), a coordinate outside the surface is moved to its nearest
    edge instead of dropping the message: the page's idea of the size may lag a resize, and input must still land
    in the window, never outside it.
    """

    def __init__(self, sink: InputSink, width: int, height: int, clamp: bool = False) -> None:
        self._sink = sink
        self._clamp = clamp
        self._width = 0
        self._height = 0
        self.resize(width, height)
        # viewer -> {key id -> (code, key) of the press}, in press order.
        self._keys: dict[str, dict[str, tuple[str, str]]] = {}
        # viewer -> buttons held, in press order (a dict used as an ordered set).
        self._buttons: dict[str, dict[int, None]] = {}
        self._last_refusal = ""
        self._handlers: dict[str, Callable[[str, dict[str, object]], None]] = {
            "input.move": self._on_move,
            "input.button": self._on_button,
            "input.wheel": self._on_wheel,
            "input.key": self._on_key,
            "input.release": self._on_release,
        }

    @property
    def width(self) -> int:
        """Width of the surface, in pixels: ``x`` must be below it."""
        return self._width

    @property
    def height(self) -> int:
        """Height of the surface, in pixels: ``y`` must be below it."""
        return self._height

    def resize(self, width: int, height: int) -> None:
        """Accept coordinates in ``0 ≤ x < width``, ``0 ≤ y < height`` from now on (after ``config``)."""
        if width <= 0 or height <= 0:
            raise ValueError(f"surface size must be positive, not {width}x{height}")
        self._width = width
        self._height = height

    def handle(self, viewer: str, msg: dict[str, object]) -> None:
        """Validate and apply one parsed control message from ``viewer``. Messages other than ``input.*`` are
        ignored (they belong to other handlers); bad ones are dropped with one log line. Never raises."""
        kind = msg.get("type")
        if not isinstance(kind, str):
            logger.warning("dropped a message from viewer %s: type is not a string: %s", viewer, _show(kind))
            return
        handler = self._handlers.get(kind)
        if handler is None:
            if kind.startswith("input."):
                logger.warning("dropped %s from viewer %s: unknown input message type", _show(kind), viewer)
            return
        try:
            handler(viewer, msg)
        except _Dropped as exc:
            logger.warning("dropped %s from viewer %s: %s", kind, viewer, exc)

    def release_all(self) -> None:
        """Release what every viewer holds (the surface paused or ended: its input is dropped from now on)."""
        for viewer in list(self._keys.keys() | self._buttons.keys()):
            self.release(viewer)

    def release(self, viewer: str) -> None:
        """Release every key and button ``viewer`` holds, latest first (it left or blurred). Never raises."""
        keys = self._keys.pop(viewer, {})
        buttons = self._buttons.pop(viewer, {})
        for ident, (code, key) in reversed(keys.items()):
            if not self._key_held_by_anyone(ident):
                self._call(viewer, self._sink.key, code, key, False)
        for button in reversed(buttons):
            if not self._button_held_by_anyone(button):
                self._call(viewer, self._sink.button, button, False)

    # -- messages --------------------------------------------------------------------------------------------

    def _point(self, msg: dict[str, object]) -> tuple[int, int]:
        if self._clamp:
            x = _int(msg, "x", -COORDINATE_LIMIT, COORDINATE_LIMIT)
            y = _int(msg, "y", -COORDINATE_LIMIT, COORDINATE_LIMIT)
            return min(max(x, 0), self._width - 1), min(max(y, 0), self._height - 1)
        return _int(msg, "x", 0, self._width - 1), _int(msg, "y", 0, self._height - 1)

    def _on_move(self, viewer: str, msg: dict[str, object]) -> None:
        x, y = self._point(msg)
        self._call(viewer, self._sink.move, x, y)

    def _on_button(self, viewer: str, msg: dict[str, object]) -> None:
        button = _int(msg, "button", POINTER_BUTTONS[0], POINTER_BUTTONS[-1])
        down = _bool(msg, "down")
        x, y = self._point(msg)
        self._call(viewer, self._sink.move, x, y)
        if down:
            # The display has one pointer: a button already down (for anyone) is not pressed again.
            if self._button_held_by_anyone(button) or self._call(viewer, self._sink.button, button, True):
                self._buttons.setdefault(viewer, {})[button] = None
        else:
            held = self._buttons.get(viewer, {})
            held.pop(button, None)
            if not held:
                self._buttons.pop(viewer, None)
            if not self._button_held_by_anyone(button):
                self._call(viewer, self._sink.button, button, False)

    def _on_wheel(self, viewer: str, msg: dict[str, object]) -> None:
        dx = _int(msg, "dx", -WHEEL_NOTCHES, WHEEL_NOTCHES)
        dy = _int(msg, "dy", -WHEEL_NOTCHES, WHEEL_NOTCHES)
        x, y = self._point(msg)
        if not self._call(viewer, self._sink.move, x, y):
            return
        for notches, (negative, positive) in ((dy, _VERTICAL_BUTTONS), (dx, _HORIZONTAL_BUTTONS)):
            button = positive if notches > 0 else negative
            for _ in range(abs(notches)):
                if not (
                    self._call(viewer, self._sink.button, button, True)
                    and self._call(viewer, self._sink.button, button, False)
                ):
                    return

    def _on_key(self, viewer: str, msg: dict[str, object]) -> None:
        code = _str(msg, "code")
        key = _str(msg, "key")
        down = _bool(msg, "down")
        if not code and not key:
            raise _Dropped("code and key are both empty")
        ident = code or key
        held = self._keys.get(viewer, {})
        if down:
            # A repeated keydown (auto-repeat) presses what the first one pressed, and is forwarded so the
            # application sees the repeat.
            code, key = held.get(ident, (code, key))
            if self._call(viewer, self._sink.key, code, key, True):
                self._keys.setdefault(viewer, {}).setdefault(ident, (code, key))
        else:
            # Release what was pressed: `key` may differ by now (Shift let go first: "!" down, "1" up).
            code, key = held.pop(ident, (code, key))
            if not held:
                self._keys.pop(viewer, None)
            if not self._key_held_by_anyone(ident):
                self._call(viewer, self._sink.key, code, key, False)

    def _on_release(self, viewer: str, msg: dict[str, object]) -> None:
        self.release(viewer)

    # -- helpers ---------------------------------------------------------------------------------------------

    def _key_held_by_anyone(self, ident: str) -> bool:
        return any(ident in keys for keys in self._keys.values())

    def _button_held_by_anyone(self, button: int) -> bool:
        return any(button in buttons for buttons in self._buttons.values())

    def _call(self, viewer: str, method: Callable[..., None], *args: object) -> bool:
        """Call the sink; on failure log it and report False: a broken display must not break the channel."""
        try:
            method(*args)
            self._last_refusal = ""
        except InputError as exc:
            # The same reason again (a drag over a covered part of a window: every move) is not news.
            level = logging.DEBUG if str(exc) == self._last_refusal else logging.WARNING
            self._last_refusal = str(exc)
            logger.log(level, "input from viewer %s not injected: %s", viewer, exc)
            return False
        except Exception:
            name = getattr(method, "__name__", repr(method))
            logger.exception("input sink failed in %s%r for viewer %s", name, args, viewer)
            return False
        return True
