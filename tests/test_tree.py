"""Who serves whom in a room: the desktop up to its cap, then the relay with most room, never in a loop."""

from __future__ import annotations

from impromptu.signaling.tree import DESKTOP, RoomTree


def ready_relay(tree: RoomTree, peer: str, capacity: int) -> None:
    tree.add(peer, relay=True)
    tree.set_capacity(peer, capacity)


def test_the_desktop_serves_up_to_its_cap_then_relays_take_over() -> None:
    tree = RoomTree()
    tree.desktop_joined(max_direct=1)
    assert tree.add("r1", relay=True) == [("r1", DESKTOP)]
    # The desktop is full and r1 is not ready yet: the viewer waits.
    assert tree.add("v1", relay=False) == []
    assert tree.waiting() == ["v1"]
    # r1 says it is ready: the waiting viewer goes to it.
    assert tree.set_capacity("r1", 2) == [("v1", "r1")]
    assert tree.add("v2", relay=False) == [("v2", "r1")]
    assert tree.add("v3", relay=False) == []  # r1 is full too


def test_the_relay_with_most_room_wins_and_the_nearest_on_a_tie() -> None:
    tree = RoomTree()
    tree.desktop_joined(max_direct=2)
    ready_relay(tree, "r1", 2)
    ready_relay(tree, "r2", 3)
    assert tree.add("v1", relay=False) == [("v1", "r2")]  # 3 free beats 2
    ready_relay(tree, "r3", 3)
    assert tree.seats["r3"].upstream == "r1"
    assert tree.add("v2", relay=False) == [("v2", "r3")]  # r1: 1, r2: 2, r3: 3 free
    assert tree.add("v3", relay=False) == [("v3", "r2")]  # r2 and r3 have 2 each: r2 is nearer the desktop


def test_a_relay_never_goes_below_its_own_relays() -> None:
    tree = RoomTree()
    tree.desktop_joined(max_direct=1)
    ready_relay(tree, "r1", 4)
    ready_relay(tree, "r2", 4)
    assert tree.seats["r2"].upstream == "r1"
    # r1 loses its place, and the desktop's only one is taken meanwhile: r2 has room, but is below r1.
    tree.desktop_left()
    tree.add("v", relay=False)
    tree.seats["r1"].upstream = None
    tree.seats["v"].upstream = DESKTOP
    tree.desktop = True
    assert tree.set_capacity("r2", 4) == []
    assert tree.seats["r1"].upstream is None


def test_a_relay_that_leaves_hands_its_pages_on_and_its_relays_keep_theirs() -> None:
    tree = RoomTree()
    tree.desktop_joined(max_direct=1)
    ready_relay(tree, "r1", 3)
    ready_relay(tree, "r2", 2)
    tree.add("v1", relay=False)
    assert tree.seats["v1"].upstream == "r1"
    tree.add("v2", relay=False)
    assert tree.seats["v2"].upstream == "r2"
    upstream, orphans, placed = tree.remove("r1")
    assert upstream == DESKTOP
    assert sorted(orphans) == ["r2", "v1"]
    assert placed == [("r2", DESKTOP), ("v1", "r2")]  # the relay first, so the viewer has a place
    assert tree.seats["v2"].upstream == "r2"  # never left its relay


def test_when_the_desktop_leaves_only_its_own_pages_wait() -> None:
    tree = RoomTree()
    tree.desktop_joined(max_direct=1)
    ready_relay(tree, "r1", 2)
    tree.add("v1", relay=False)
    assert tree.desktop_left() == ["r1"]
    assert tree.seats["v1"].upstream == "r1"
    # A relay cut off from the desktop takes nobody new.
    tree.add("v2", relay=False)
    assert "v2" in tree.waiting()


def test_only_relays_have_a_capacity() -> None:
    tree = RoomTree()
    tree.desktop_joined(max_direct=1)
    tree.add("v", relay=False)
    assert tree.set_capacity("v", 5) == []
    assert tree.seats["v"].capacity == 0
