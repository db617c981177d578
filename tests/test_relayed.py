"""The desktop's end of input through relays (docs/protocol.md §7): a relay passes envelopes on, but only those
a control-link holder made reach X — a relay (which may hold only Kv) can neither forge nor replay them, nor speak
for a viewer it does not serve. Here a Python viewer holding Kv plays a dishonest relay."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from Xlib import X

from impromptu import envelope as sealing
from impromptu.link import LinkKeys
from impromptu.relayed import RelayedViewers
from impromptu.session import ShareSession
from impromptu.signaling import SignalingServer
from tests.pyviewer import sharing, viewer
from tests.test_session import click, wait_until
from tests.xclient import XWindow


def envelope(key: bytes, sender: str, seq: int, message: dict[str, Any]) -> dict[str, Any]:
    return sealing.seal(key, sender, seq, json.dumps(message, separators=(",", ":"))).message()


def test_envelopes_are_checked_for_sender_mac_sequence_and_content() -> None:
    keys = LinkKeys.generate()
    relayed = RelayedViewers(keys)
    assert relayed.report("relay", {"peers": ["a", "b", "direct"]}, direct={"direct"}) == set()
    key = {"type": "input.key", "code": "KeyA", "key": "a", "down": True}
    assert relayed.open("relay", envelope(keys.control, "a", 1, key)) is not None
    assert relayed.open("relay", envelope(keys.control, "a", 1, key)) is None  # replayed
    assert relayed.open("relay", envelope(keys.view, "b", 1, key)) is None  # Kv cannot make one
    assert relayed.open("relay", envelope(keys.control, "c", 1, key)) is None  # not a viewer this relay serves
    assert relayed.open("other", envelope(keys.control, "a", 2, key)) is None  # nor one another relay serves
    assert relayed.open("relay", envelope(keys.control, "b", 1, {"type": "relay.viewers", "peers": []})) is None
    assert relayed.open("relay", {**envelope(keys.control, "b", 1, key), "seq": True}) is None
    opened = relayed.open("relay", envelope(keys.control, "b", 5, {"type": "control.hello"}))
    assert opened is not None and opened.sender == "b"
    assert relayed.count() == (2, 2)
    assert relayed.roles("relay") == {"a": "control", "b": "control"}
    assert relayed.report("relay", {"peers": ["b", "d"]}, direct=()) == {"a"}
    assert relayed.report("relay", {"peers": ["d", "b"]}, direct=()) is None  # nothing changed
    assert relayed.count() == (2, 1)
    assert relayed.roles("relay") == {"b": "control", "d": "view"}
    assert relayed.report("relay", {"peers": "b"}, direct=()) is None
    assert relayed.relay_closed("relay") == {"b", "d"}
    assert relayed.count() == (0, 0)
    # Placed behind another relay, a viewer keeps the role its envelopes proved, and its sequence numbers go on.
    relayed.report("other", {"peers": ["b"]}, direct=())
    assert relayed.roles("other") == {"b": "control"}
    assert relayed.open("other", envelope(keys.control, "b", 5, key)) is None
    assert relayed.open("other", envelope(keys.control, "b", 6, key)) is not None


@pytest.fixture
async def shared(xvfb_display: str) -> AsyncIterator[tuple[ShareSession, SignalingServer]]:
    async with sharing(xvfb_display) as pair:
        yield pair


async def test_only_envelopes_made_with_the_control_key_reach_x(
    shared: tuple[ShareSession, SignalingServer], xvfb_display: str
) -> None:
    session, server = shared
    keys = session.keys
    watcher = XWindow(xvfb_display, 0, 0, 640, 480, X.ButtonPressMask | X.ButtonReleaseMask | X.KeyPressMask)
    watcher.focus()
    relay = viewer(session, server, keys.view)  # a relay holding only the view key
    try:
        await relay.connect()
        relay.send({"type": "relay.viewers", "peers": ["honest", "viewonly"]})
        presence = await relay.wait_presence(lambda p: p["viewers"] == 3)
        assert presence["controllers"] == 0 and presence["relayed"] == {"honest": "view", "viewonly": "view"}
        key = {"type": "input.key", "code": "KeyA", "key": "a", "down": True}
        for forged in (
            envelope(keys.view, "viewonly", 1, key),  # what the relay or a view-only viewer could make
            envelope(keys.control, "stranger", 1, click(10, 10)),  # a viewer the relay never reported
            {"type": "input.key", "code": "KeyA", "key": "a", "down": True},  # bare, under the relay's own role
        ):
            relay.send(forged)
        await wait_until(lambda: session.refused_input == 3)
        # The honest control viewer proves its role, and then its click gets through.
        relay.send(envelope(keys.control, "honest", 1, {"type": "control.hello"}))
        presence = await relay.wait_presence(lambda p: p["controllers"] == 1)
        assert presence["relayed"] == {"honest": "control", "viewonly": "view"}
        relay.send(envelope(keys.control, "honest", 2, click(300, 200)))
        (press,) = await asyncio.to_thread(watcher.wait_events, {X.ButtonPress})
        assert (press.root_x, press.root_y) == (300, 200)
        assert not [e for e in watcher.events if e.type == X.KeyPress]
        # The same envelope again is a replay.
        relay.send(envelope(keys.control, "honest", 2, click(300, 200)))
        await wait_until(lambda: session.refused_input == 4)
        # The relay reports the viewer gone: the button it held goes up, and it no longer counts.
        relay.send({"type": "relay.viewers", "peers": ["viewonly"]})
        await relay.wait_presence(lambda p: p["viewers"] == 2 and p["controllers"] == 0)
        (release,) = await asyncio.to_thread(watcher.wait_events, {X.ButtonRelease})
        assert release.detail == 1
    finally:
        await relay.close()
        watcher.close()
