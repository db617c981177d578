"""Headless viewers acknowledge like browsers: every second packet, at once on a gap, and within 200 ms."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiortc.rtcsctptransport import RTCSctpTransport

from impromptu.rtc import sack


class Association:
    """The few fields of aiortc's RTCSctpTransport that the delayed SACK reads, made to delay its SACKs as a
    headless viewer's association is."""

    def __init__(self) -> None:
        sack.delay_acks(self)  # type: ignore[arg-type]
        self._sack_needed = True
        self._sack_misordered: set[int] = set()
        self._sack_duplicates: list[int] = []
        self._association_state = RTCSctpTransport.State.ESTABLISHED
        self.sacks = 0
        self.sent = asyncio.Event()


@pytest.fixture
def sacks(monkeypatch: pytest.MonkeyPatch) -> None:
    async def send_now(self: Any) -> None:
        self.sacks += 1
        self.sent.set()

    monkeypatch.setattr(sack, "_send_sack_now", send_now)


@pytest.mark.usefixtures("sacks")
async def test_every_second_packet_is_acknowledged() -> None:
    a = Association()
    for _ in range(10):
        await a._send_sack()  # what aiortc calls after each packet
    assert a.sacks == 5


@pytest.mark.usefixtures("sacks")
async def test_a_gap_is_acknowledged_at_once() -> None:
    a = Association()
    a._sack_misordered.add(7)
    await a._send_sack()
    assert a.sacks == 1


@pytest.mark.usefixtures("sacks")
async def test_a_lone_packet_is_acknowledged_after_a_short_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sack, "MAX_DELAY_S", 0.01)
    a = Association()
    await a._send_sack()
    assert a.sacks == 0
    await asyncio.wait_for(a.sent.wait(), 5)
    assert a.sacks == 1


def test_only_the_associations_it_is_given_delay_their_acks() -> None:
    assert RTCSctpTransport._send_sack is sack._send_sack_now, "the desktop's associations are untouched"
