"""InputDispatcher: validation of input.* messages (protocol.md §5), held-input bookkeeping, wheel mapping."""

from __future__ import annotations

import logging

import pytest

from impromptu.errors import InputError
from impromptu.input import InputDispatcher, InputSink

Call = tuple[object, ...]


class RecordingSink:
    """An InputSink that records every call, and can be told to fail."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.fail_with: Exception | None = None
        self.closed = False

    def _record(self, *call: object) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        self.calls.append(call)

    def move(self, x: int, y: int) -> None:
        self._record("move", x, y)

    def button(self, button: int, down: bool) -> None:
        self._record("button", button, down)

    def key(self, code: str, key: str, down: bool) -> None:
        self._record("key", code, key, down)

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


@pytest.fixture
def dispatcher(sink: RecordingSink) -> InputDispatcher:
    as_protocol: InputSink = sink  # checked by mypy: the fake really implements the protocol
    return InputDispatcher(as_protocol, 640, 480)


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "impromptu.input" and r.levelno >= logging.WARNING]


# -- valid messages -----------------------------------------------------------------------------------------


def test_move(dispatcher: InputDispatcher, sink: RecordingSink) -> None:
    dispatcher.handle("v1", {"type": "input.move", "x": 10, "y": 20})
    dispatcher.handle("v1", {"type": "input.move", "x": 0, "y": 0})
    dispatcher.handle("v1", {"type": "input.move", "x": 639, "y": 479})
    assert sink.calls == [("move", 10, 20), ("move", 0, 0), ("move", 639, 479)]


def test_button_moves_first(dispatcher: InputDispatcher, sink: RecordingSink) -> None:
    dispatcher.handle("v1", {"type": "input.button", "button": 1, "down": True, "x": 5, "y": 6})
    dispatcher.handle("v1", {"type": "input.button", "button": 1, "down": False, "x": 7, "y": 8})
    dispatcher.handle("v1", {"type": "input.button", "button": 3, "down": True, "x": 1, "y": 2})
    assert sink.calls == [
        ("move", 5, 6),
        ("button", 1, True),
        ("move", 7, 8),
        ("button", 1, False),
        ("move", 1, 2),
        ("button", 3, True),
    ]


def test_key_passes_code_and_key(dispatcher: InputDispatcher, sink: RecordingSink) -> None:
    dispatcher.handle("v1", {"type": "input.key", "code": "KeyA", "key": "a", "down": True})
    dispatcher.handle("v1", {"type": "input.key", "code": "KeyA", "key": "a", "down": False})
    dispatcher.handle("v1", {"type": "input.key", "code": "", "key": "é", "down": True})
    assert sink.calls == [("key", "KeyA", "a", True), ("key", "KeyA", "a", False), ("key", "", "é", True)]


def test_extra_fields_are_ignored(dispatcher: InputDispatcher, sink: RecordingSink) -> None:
    dispatcher.handle("v1", {"type": "input.move", "x": 1, "y": 2, "pressure": "high", "surface": 0})
    assert sink.calls == [("move", 1, 2)]


@pytest.mark.parametrize(
    ("dx", "dy", "clicks"),
    [
        (0, 1, [5]),
        (0, 3, [5, 5, 5]),
        (0, -2, [4, 4]),
        (1, 0, [7]),
        (-2, 0, [6, 6]),
        (-1, 2, [5, 5, 6]),
        (0, 0, []),
        (10, -10, [4] * 10 + [7] * 10),
    ],
)
def test_wheel_mapping(dispatcher: InputDispatcher, sink: RecordingSink, dx: int, dy: int, clicks: list[int]) -> None:
    dispatcher.handle("v1", {"type": "input.wheel", "dx": dx, "dy": dy, "x": 30, "y": 40})
    expected: list[Call] = [("move", 30, 40)]
    for button in clicks:
        expected += [("button", button, True), ("button", button, False)]
    assert sink.calls == expected


# -- held input ---------------------------------------------------------------------------------------------


def test_release_lets_go_of_everything_held_latest_first(dispatcher: InputDispatcher, sink: RecordingSink) -> None:
    dispatcher.handle("v1", {"type": "input.key", "code": "ShiftLeft", "key": "Shift", "down": True})
    dispatcher.handle("v1", {"type": "input.key", "code": "KeyA", "key": "A", "down": True})
    dispatcher.handle("v1", {"type": "input.key", "code": "KeyB", "key": "B", "down": True})
    dispatcher.handle("v1", {"type": "input.key", "code": "KeyB", "key": "B", "down": False})
    dispatcher.handle("v1", {"type": "input.button", "button": 1, "down": True, "x": 1, "y": 1})
    dispatcher.handle("v1", {"type": "input.button", "button": 3, "down": True, "x": 1, "y": 1})
    sink.calls.clear()

    dispatcher.release("v1")

    assert sink.calls == [
        ("key", "KeyA", "A", False),
        ("key", "ShiftLeft", "Shift", False),
        ("button", 3, False),
        ("button", 1, False),
    ]
    sink.calls.clear()
    dispatcher.release("v1")  # nothing held any more
    dispatcher.release("never-seen")
    assert sink.calls == []


def test_input_release_message(dispatcher: InputDispatcher, sink: RecordingSink) -> None:
    dispatcher.handle("v1", {"type": "input.key", "code": "ControlLeft", "key": "Control", "down": True})
    dispatcher.handle("v1", {"type": "input.button", "button": 2, "down": True, "x": 3, "y": 4})
    sink.calls.clear()
    dispatcher.handle("v1", {"type": "input.release"})
    assert sink.calls == [("key", "ControlLeft", "Control", False), ("button", 2, False)]


def test_release_only_touches_that_viewer(dispatcher: InputDispatcher, sink: RecordingSink) -> None:
    dispatcher.handle("v1", {"type": "input.key", "code": "KeyA", "key": "a", "down": True})
    dispatcher.handle("v2", {"type": "input.key", "code": "KeyB", "key": "b", "down": True})
    sink.calls.clear()
    dispatcher.release("v1")
    assert sink.calls == [("key", "KeyA", "a", False)]


def test_key_held_by_another_viewer_stays_down(dispatcher: InputDispatcher, sink: RecordingSink) -> None:
    dispatcher.handle("v1", {"type": "input.key", "code": "ShiftLeft", "key": "Shift", "down": True})
    dispatcher.handle("v2", {"type": "input.key", "code": "ShiftLeft", "key": "Shift", "down": True})
    sink.calls.clear()
    dispatcher.release("v1")
    assert sink.calls == []
    dispatcher.handle("v2", {"type": "input.key", "code": "ShiftLeft", "key": "Shift", "down": False})
    assert sink.calls == [("key", "ShiftLeft", "Shift", False)]


def test_button_held_by_another_viewer(dispatcher: InputDispatcher, sink: RecordingSink) -> None:
    dispatcher.handle("v1", {"type": "input.button", "button": 1, "down": True, "x": 1, "y": 1})
    dispatcher.handle("v2", {"type": "input.button", "button": 1, "down": True, "x": 2, "y": 2})
    dispatcher.handle("v1", {"type": "input.button", "button": 1, "down": False, "x": 3, "y": 3})
    assert sink.calls == [("move", 1, 1), ("button", 1, True), ("move", 2, 2), ("move", 3, 3)]
    sink.calls.clear()
    dispatcher.release("v2")
    assert sink.calls == [("button", 1, False)]


def test_release_uses_the_press_key_value(dispatcher: InputDispatcher, sink: RecordingSink) -> None:
    # Without a code the key value identifies the key; a repeat and the release reuse what was pressed.
    dispatcher.handle("v1", {"type": "input.key", "code": "", "key": "é", "down": True})
    dispatcher.handle("v1", {"type": "input.key", "code": "", "key": "é", "down": True})
    # With a code, the release presses what the down pressed even if Shift changed `key` meanwhile.
    dispatcher.handle("v1", {"type": "input.key", "code": "Digit1", "key": "!", "down": True})
    dispatcher.handle("v1", {"type": "input.key", "code": "Digit1", "key": "1", "down": False})
    assert sink.calls == [
        ("key", "", "é", True),
        ("key", "", "é", True),
        ("key", "Digit1", "!", True),
        ("key", "Digit1", "!", False),
    ]
    sink.calls.clear()
    dispatcher.release("v1")
    assert sink.calls == [("key", "", "é", False)]


def test_key_up_without_down_is_still_sent(dispatcher: InputDispatcher, sink: RecordingSink) -> None:
    dispatcher.handle("v1", {"type": "input.key", "code": "KeyQ", "key": "q", "down": False})
    assert sink.calls == [("key", "KeyQ", "q", False)]


# -- invalid messages: dropped with exactly one warning -----------------------------------------------------

BAD_MESSAGES: list[dict[str, object]] = [
    # move
    {"type": "input.move", "x": 640, "y": 0},
    {"type": "input.move", "x": 0, "y": 480},
    {"type": "input.move", "x": -1, "y": 0},
    {"type": "input.move", "x": 1},
    {"type": "input.move", "x": 1.0, "y": 2},
    {"type": "input.move", "x": "1", "y": 2},
    {"type": "input.move", "x": True, "y": 2},
    {"type": "input.move", "x": 1, "y": False},
    {"type": "input.move", "x": None, "y": 2},
    {"type": "input.move", "x": 10**30, "y": 2},
    # button
    {"type": "input.button", "button": 0, "down": True, "x": 1, "y": 1},
    {"type": "input.button", "button": 4, "down": True, "x": 1, "y": 1},
    {"type": "input.button", "button": True, "down": True, "x": 1, "y": 1},
    {"type": "input.button", "button": 1, "down": 1, "x": 1, "y": 1},
    {"type": "input.button", "button": 1, "down": "true", "x": 1, "y": 1},
    {"type": "input.button", "button": 1, "x": 1, "y": 1},
    {"type": "input.button", "button": 1, "down": True, "x": 1, "y": 999},
    {"type": "input.button", "button": 1, "down": True},
    # wheel
    {"type": "input.wheel", "dx": 0, "dy": 11, "x": 1, "y": 1},
    {"type": "input.wheel", "dx": -11, "dy": 0, "x": 1, "y": 1},
    {"type": "input.wheel", "dx": 0, "dy": True, "x": 1, "y": 1},
    {"type": "input.wheel", "dx": 0.5, "dy": 0, "x": 1, "y": 1},
    {"type": "input.wheel", "dy": 1, "x": 1, "y": 1},
    {"type": "input.wheel", "dx": 0, "dy": 1, "x": 640, "y": 1},
    # key
    {"type": "input.key", "code": "KeyA", "key": "a"},
    {"type": "input.key", "code": "KeyA", "key": "a", "down": 0},
    {"type": "input.key", "code": 65, "key": "a", "down": True},
    {"type": "input.key", "code": "KeyA", "key": None, "down": True},
    {"type": "input.key", "key": "a", "down": True},
    {"type": "input.key", "code": "K" * 33, "key": "a", "down": True},
    {"type": "input.key", "code": "KeyA", "key": "a" * 33, "down": True},
    {"type": "input.key", "code": "", "key": "", "down": True},
    # type
    {"type": "input.teleport", "x": 1, "y": 1},
    {"type": 7},
    {"x": 1, "y": 1},
]


@pytest.mark.parametrize("msg", BAD_MESSAGES)
def test_bad_message_dropped_with_one_warning(
    dispatcher: InputDispatcher, sink: RecordingSink, caplog: pytest.LogCaptureFixture, msg: dict[str, object]
) -> None:
    caplog.set_level(logging.DEBUG, logger="impromptu")
    dispatcher.handle("v1", msg)
    assert sink.calls == []
    records = warnings_of(caplog)
    assert len(records) == 1, [r.getMessage() for r in records]
    assert "\n" not in records[0].getMessage()


def test_bad_key_is_not_recorded_as_held(dispatcher: InputDispatcher, sink: RecordingSink) -> None:
    dispatcher.handle("v1", {"type": "input.key", "code": "KeyA", "key": "a" * 33, "down": True})
    dispatcher.release("v1")
    assert sink.calls == []


def test_exact_string_limit_is_accepted(dispatcher: InputDispatcher, sink: RecordingSink) -> None:
    dispatcher.handle("v1", {"type": "input.key", "code": "K" * 32, "key": "k" * 32, "down": True})
    assert sink.calls == [("key", "K" * 32, "k" * 32, True)]


def test_long_values_are_cut_in_the_log(dispatcher: InputDispatcher, caplog: pytest.LogCaptureFixture) -> None:
    dispatcher.handle("v1", {"type": "input.key", "code": "x" * 10_000, "key": "a", "down": True})
    (record,) = warnings_of(caplog)
    assert len(record.getMessage()) < 300


def test_other_message_types_are_ignored_silently(
    dispatcher: InputDispatcher, sink: RecordingSink, caplog: pytest.LogCaptureFixture
) -> None:
    dispatcher.handle("v1", {"type": "keyframe.request", "surface": 0})
    assert sink.calls == []
    assert warnings_of(caplog) == []


def test_resize_changes_bounds(
    dispatcher: InputDispatcher, sink: RecordingSink, caplog: pytest.LogCaptureFixture
) -> None:
    dispatcher.resize(1920, 1080)
    assert (dispatcher.width, dispatcher.height) == (1920, 1080)
    dispatcher.handle("v1", {"type": "input.move", "x": 1919, "y": 1079})
    assert sink.calls == [("move", 1919, 1079)]
    dispatcher.resize(100, 100)
    dispatcher.handle("v1", {"type": "input.move", "x": 100, "y": 5})
    assert sink.calls == [("move", 1919, 1079)]
    assert len(warnings_of(caplog)) == 1
    with pytest.raises(ValueError):
        dispatcher.resize(0, 100)


# -- a failing sink never breaks the dispatcher -------------------------------------------------------------


def test_a_new_refusal_reason_is_logged_again(
    dispatcher: InputDispatcher, sink: RecordingSink, caplog: pytest.LogCaptureFixture
) -> None:
    for reason in ("covered", "covered", "not shown", "covered"):
        sink.fail_with = InputError(reason)
        dispatcher.handle("v1", {"type": "input.move", "x": 1, "y": 1})
    assert [r.getMessage().rsplit(": ", 1)[1] for r in warnings_of(caplog)] == ["covered", "not shown", "covered"]


@pytest.mark.parametrize("error", [InputError("display gone"), RuntimeError("bug")])
def test_sink_failure_is_logged_not_raised(
    dispatcher: InputDispatcher,
    sink: RecordingSink,
    caplog: pytest.LogCaptureFixture,
    error: Exception,
) -> None:
    sink.fail_with = error
    dispatcher.handle("v1", {"type": "input.key", "code": "KeyA", "key": "a", "down": True})
    dispatcher.handle("v1", {"type": "input.wheel", "dx": 0, "dy": 3, "x": 1, "y": 1})
    dispatcher.release("v1")
    # The same refusal again is logged once (at debug level after the first: a drag over a covered part of a shared
    # window fails on every move); a bug is logged every time.
    assert len(warnings_of(caplog)) == (1 if isinstance(error, InputError) else 2)
    # The failed press was not recorded as held, so nothing is released once the sink works again.
    sink.fail_with = None
    dispatcher.release("v1")
    assert sink.calls == []
