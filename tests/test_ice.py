"""ICE policy: no STUN unless configured, host candidates restricted on request."""

from __future__ import annotations

import pytest
from aiortc import RTCPeerConnection

from impromptu.rtc import IcePolicy


def candidate_addresses(sdp: str) -> set[str]:
    return {line.split()[4] for line in sdp.splitlines() if line.startswith("a=candidate:")}


async def offer(policy: IcePolicy) -> str:
    pc = RTCPeerConnection(policy.configuration())
    pc.createDataChannel("video")
    try:
        with policy.gathering():
            await pc.setLocalDescription(await pc.createOffer())
        return str(pc.localDescription.sdp)
    finally:
        await pc.close()


async def test_ice_address_restricts_host_candidates() -> None:
    sdp = await offer(IcePolicy(addresses=("127.0.0.1",)))
    assert candidate_addresses(sdp) == {"127.0.0.1"}
    assert "typ srflx" not in sdp


async def test_default_has_no_stun_or_turn_and_includes_loopback() -> None:
    policy = IcePolicy()
    assert policy.configuration().iceServers == []
    sdp = await offer(policy)
    assert "127.0.0.1" in candidate_addresses(sdp)
    assert "typ srflx" not in sdp and "typ relay" not in sdp


async def test_restriction_applies_only_inside_gathering() -> None:
    restricted = IcePolicy(addresses=("127.0.0.1",))
    with restricted.gathering():
        pass
    assert "127.0.0.1" in candidate_addresses(await offer(IcePolicy()))


def test_loopback_only_drops_remote_candidates_it_must_not_reach() -> None:
    sdp = "\r\n".join(
        [
            "v=0",
            "a=candidate:1 1 udp 2122260223 127.0.0.1 5000 typ host",
            "a=candidate:2 1 udp 2122260223 192.0.2.7 5001 typ host",
            "a=candidate:3 1 tcp 1518280447 127.0.0.1 9 typ host tcptype active",
            "a=candidate:4 1 udp 2122260223 abcd.local 5002 typ host",
            "a=end-of-candidates",
        ]
    )
    kept = IcePolicy(addresses=("127.0.0.1",)).filter_remote_sdp(sdp)
    assert candidate_addresses(kept) == {"127.0.0.1"}
    assert "tcp" not in kept and "a=end-of-candidates" in kept
    assert IcePolicy().filter_remote_sdp(sdp) == sdp


def test_ice_address_must_be_an_ip() -> None:
    with pytest.raises(ValueError, match="not an IP address"):
        IcePolicy(addresses=("eth0",))
