"""The offering side of signaling, on its own: real aiortc peers on loopback, signaling as a list of sent messages."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription

from impromptu.link import Role
from impromptu.rtc import IcePolicy, ViewerOffers, ViewerPeer
from tests.harness import wait_until

LOOPBACK = IcePolicy(addresses=("127.0.0.1",))
MACS = {"control-mac": Role.CONTROL, "view-mac": Role.VIEW}


class Owner:
    """What a session gives its offers: a signaling channel to record, fake MACs, and its viewers' fates."""

    def __init__(self, capacity: int) -> None:
        self.sent: list[dict[str, Any]] = []
        self.opened: list[str] = []
        self.closed: list[str] = []
        self.offers = ViewerOffers(
            LOOPBACK,
            send_signal=self.sent.append,
            offer_mac=lambda peer, sdp: f"offer-mac:{peer}",
            answer_role=lambda peer, sdp, mac: MACS.get(mac),
            capacity=capacity,
            full_reason="the test is full",
            on_open=lambda viewer: self.opened.append(viewer.id),
            on_control=lambda viewer, message: None,
            on_closed=self._closed,
        )

    def _closed(self, viewer: ViewerPeer) -> None:
        self.closed.append(viewer.id)
        self.offers.forget(viewer)

    async def offer(self, peer: str) -> dict[str, Any]:
        self.offers.signal({"type": "join", "peer": peer})
        await wait_until(lambda: any(m["peer"] == peer for m in self.sent))
        return next(m for m in self.sent if m["peer"] == peer)


@pytest.fixture
async def owner() -> AsyncIterator[Owner]:
    owner = Owner(capacity=2)
    yield owner
    await owner.offers.stop()


@pytest.fixture
async def answerer() -> AsyncIterator[Callable[[str], Any]]:
    """Answers an offer as a viewer's browser would; returns its answer SDP."""
    pcs: list[RTCPeerConnection] = []

    async def answer(offer_sdp: str) -> str:
        pc = RTCPeerConnection(LOOPBACK.configuration())
        pcs.append(pc)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        with LOOPBACK.gathering():
            await pc.setLocalDescription(await pc.createAnswer())
        return str(pc.localDescription.sdp)

    yield answer
    for pc in pcs:
        await pc.close()


async def test_a_join_gets_a_maced_offer_and_one_beyond_capacity_a_reject() -> None:
    owner = Owner(capacity=1)
    try:
        offer = await owner.offer("first")
        assert offer["type"] == "offer" and offer["mac"] == "offer-mac:first" and "a=candidate:" in offer["sdp"]
        owner.offers.signal({"type": "join", "peer": "second"})
        assert owner.sent[-1] == {"type": "reject", "peer": "second", "reason": "the test is full"}
        owner.offers.signal({"type": "join", "peer": 7})
        owner.offers.signal({"type": "join", "peer": "x" * 257})
        await asyncio.sleep(0.1)
        assert len(owner.sent) == 2 and list(owner.offers.peers) == ["first"], "peer ids that are not ids: ignored"
    finally:
        await owner.offers.stop()


async def test_an_answer_that_fails_its_mac_is_rejected_and_its_viewer_closed(owner: Owner) -> None:
    await owner.offer("stranger")
    owner.offers.signal({"type": "answer", "peer": "stranger", "sdp": "v=0", "mac": "forged"})
    await wait_until(lambda: owner.closed == ["stranger"])
    assert owner.sent[-1] == {"type": "reject", "peer": "stranger", "reason": "not authorised"}
    assert not owner.offers.peers and not owner.offers.roles


async def test_an_accepted_answer_connects_with_its_role_and_a_second_answer_is_ignored(
    owner: Owner, answerer: Callable[[str], Any]
) -> None:
    offer = await owner.offer("viewer")
    sdp = await answerer(offer["sdp"])
    owner.offers.signal({"type": "answer", "peer": "viewer", "sdp": sdp, "mac": "control-mac"})
    await wait_until(lambda: owner.opened == ["viewer"])
    assert owner.offers.roles == {"viewer": Role.CONTROL}
    owner.offers.signal({"type": "answer", "peer": "viewer", "sdp": "v=0", "mac": "view-mac"})
    await wait_until(lambda: not owner.offers.running)
    assert owner.offers.roles == {"viewer": Role.CONTROL} and owner.offers.peers["viewer"].is_open
    assert owner.closed == [] and len(owner.sent) == 1
    # A join for a connected viewer (the server seating the desktop again, §11) leaves its connection alone.
    owner.offers.signal({"type": "join", "peer": "viewer"})
    await wait_until(lambda: not owner.offers.running)
    assert owner.offers.peers["viewer"].is_open and owner.closed == [] and len(owner.sent) == 1


async def test_an_unusable_answer_drops_only_that_viewer(
    owner: Owner, answerer: Callable[[str], Any], caplog: pytest.LogCaptureFixture
) -> None:
    good = await answerer((await owner.offer("good"))["sdp"])
    await owner.offer("bad")
    with caplog.at_level(logging.WARNING, "impromptu.rtc.offers"):
        owner.offers.signal({"type": "answer", "peer": "bad", "sdp": "not an sdp", "mac": "view-mac"})
        await wait_until(lambda: owner.closed == ["bad"])
    assert "viewer bad: unusable answer" in caplog.text and "task failed" not in caplog.text
    owner.offers.signal({"type": "answer", "peer": "good", "sdp": good, "mac": "view-mac"})
    await wait_until(lambda: owner.opened == ["good"])


async def test_a_viewer_that_leaves_before_connecting_is_closed(owner: Owner) -> None:
    await owner.offer("quitter")
    owner.offers.signal({"type": "leave", "peer": "quitter"})
    await wait_until(lambda: owner.closed == ["quitter"] and not owner.offers.running)
    assert not owner.offers.peers


async def test_a_second_join_supersedes_the_first_offer(owner: Owner) -> None:
    await owner.offer("twice")
    first = owner.offers.peers["twice"]
    owner.offers.signal({"type": "join", "peer": "twice"})
    await wait_until(lambda: len(owner.sent) == 2)
    assert owner.closed == ["twice"] and owner.offers.peers["twice"] is not first
    assert [m["type"] for m in owner.sent] == ["offer", "offer"]


async def test_dropping_the_unconnected_closes_them(owner: Owner) -> None:
    await owner.offer("waiting")
    owner.offers.drop_unconnected()
    assert not owner.offers.peers
    await wait_until(lambda: owner.closed == ["waiting"] and not owner.offers.running)


async def test_stop_closes_every_viewer_and_then_ignores_signaling(owner: Owner) -> None:
    await owner.offer("one")
    owner.offers.signal({"type": "join", "peer": "two"})  # stopped before its offer has begun
    await owner.offers.stop()
    assert owner.closed == ["one"]
    assert not owner.offers.peers and not owner.offers.running
    owner.offers.signal({"type": "join", "peer": "three"})
    await asyncio.sleep(0.1)
    assert [m["peer"] for m in owner.sent] == ["one"] and not owner.offers.running
    await owner.offers.stop()  # idempotent
