"""Who may send input: every control viewer, or one at a time with --one-controller."""

from __future__ import annotations

from impromptu.control import ControlFloor, ControlMode
from impromptu.link import Role


def test_shared_mode_lets_every_control_viewer_in_and_no_view_only_one() -> None:
    floor = ControlFloor(ControlMode.SHARED)
    assert floor.may_input("a", Role.CONTROL) and floor.may_input("b", Role.CONTROL)
    assert not floor.may_input("c", Role.VIEW)
    assert not floor.request("a", Role.CONTROL), "nothing to request in shared mode"
    assert floor.holder is None and floor.requests == []


def test_one_controller_takes_queues_and_hands_over() -> None:
    floor = ControlFloor(ControlMode.ONE)
    assert not floor.may_input("a", Role.CONTROL), "nobody holds control at first"
    assert floor.request("a", Role.CONTROL) and floor.holder == "a"
    assert floor.may_input("a", Role.CONTROL) and not floor.may_input("b", Role.CONTROL)
    assert floor.request("b", Role.CONTROL) and floor.request("c", Role.CONTROL)
    assert not floor.request("b", Role.CONTROL), "asking twice queues once"
    assert floor.requests == ["b", "c"]
    assert floor.release("a") and floor.holder == "b" and floor.requests == ["c"], "to the oldest request"
    assert floor.release("c") and floor.requests == [], "a waiting viewer withdraws"
    assert not floor.release("c")
    assert floor.leave("b") and floor.holder is None


def test_view_only_viewers_never_hold_or_queue_for_control() -> None:
    floor = ControlFloor(ControlMode.ONE)
    assert not floor.request("v", Role.VIEW)
    assert floor.holder is None and floor.requests == []
    assert not floor.may_input("v", Role.VIEW)


def test_a_holder_leaving_passes_control_on() -> None:
    floor = ControlFloor(ControlMode.ONE)
    floor.request("a", Role.CONTROL)
    floor.request("b", Role.CONTROL)
    assert floor.leave("a") and floor.holder == "b"
    assert not floor.leave("zzz")
