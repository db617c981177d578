"""ICE policy: which local addresses we offer, which remote candidates we accept, and which servers we use.

aiortc offers no way to choose host candidates, and aioice skips 127.0.0.1. We wrap aioice's
``get_host_addresses`` once; the wrapper reads a context variable, so the addresses apply only to gathering done
inside ``IcePolicy.gathering()`` — per peer connection, not process-wide.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field

import aioice.ice
from aiortc import RTCConfiguration, RTCIceServer
from aiortc.rtcicetransport import parse_stun_turn_uri

_HOST_ADDRESSES: ContextVar[tuple[str, ...] | None] = ContextVar("impromptu_host_addresses", default=None)
_original_get_host_addresses = aioice.ice.get_host_addresses


def _get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    override = _HOST_ADDRESSES.get()
    if override is None:
        addresses = list(_original_get_host_addresses(use_ipv4=use_ipv4, use_ipv6=use_ipv6))
        # "All interfaces" includes loopback, which aioice leaves out: a browser on this machine uses it.
        if use_ipv4 and "127.0.0.1" not in addresses:
            addresses.append("127.0.0.1")
        return addresses
    return [a for a in override if (use_ipv4 and ":" not in a) or (use_ipv6 and ":" in a)]


aioice.ice.get_host_addresses = _get_host_addresses


def lan_addresses() -> list[str]:
    """This machine's non-loopback IPv4 addresses, as aioice finds them (for a link others can open)."""
    return list(_original_get_host_addresses(use_ipv4=True, use_ipv6=False))


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class IcePolicy:
    """``addresses``: local host candidates to offer (empty = all interfaces). ``servers``: STUN/TURN URLs."""

    addresses: tuple[str, ...] = ()
    servers: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        for url in self.servers:
            try:
                parsed = parse_stun_turn_uri(url)
            except ValueError as exc:
                raise ValueError(
                    f"--ice-server {url!r} is not a STUN or TURN URL, e.g. stun:stun.example.org:3478"
                ) from exc
            if parsed["scheme"] != "stun":
                raise ValueError(f"--ice-server {url!r}: TURN needs credentials, which impromptu cannot take yet")
        for address in self.addresses:
            try:
                ipaddress.ip_address(address)
            except ValueError as exc:
                raise ValueError(f"--ice-address {address!r} is not an IP address") from exc

    @property
    def loopback_only(self) -> bool:
        return bool(self.addresses) and all(_is_loopback(a) for a in self.addresses)

    def configuration(self) -> RTCConfiguration:
        # An explicit empty list: with None, aiortc would fall back to a public STUN server.
        return RTCConfiguration(iceServers=[RTCIceServer(urls=url) for url in self.servers])

    @contextlib.contextmanager
    def gathering(self) -> Iterator[None]:
        """Candidates gathered inside this block are restricted to ``addresses`` (when given)."""
        token = _HOST_ADDRESSES.set(self.addresses or None)
        try:
            yield
        finally:
            _HOST_ADDRESSES.reset(token)

    def filter_remote_sdp(self, sdp: str) -> str:
        """Drop remote candidates we would never reach (and must not send to): with loopback-only local
        addresses, every candidate that is not a loopback UDP address."""
        if not self.loopback_only:
            return sdp
        kept = []
        for line in sdp.splitlines():
            if line.startswith("a=candidate:"):
                parts = line.split()
                # a=candidate:<foundation> <component> <transport> <priority> <address> <port> typ <type> ...
                if len(parts) < 8 or parts[2].lower() != "udp" or not _is_loopback(parts[4]):
                    continue
            kept.append(line)
        return "\r\n".join(kept) + "\r\n"
