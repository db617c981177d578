"""ICE policy: which local addresses and ports we offer, which remote candidates we accept, which servers we use.

aiortc offers no way to choose host candidates, and aioice skips 127.0.0.1. We wrap aioice's
``get_host_addresses`` once; the wrapper reads a context variable, so the addresses apply only to gathering done
inside ``IcePolicy.gathering()`` — per peer connection, not process-wide.

Nor can aioice bind its host candidates' sockets to chosen ports: ``Connection.get_component_candidates`` binds
each address with port 0. With a port range in force (``--ice-ports``, a context variable set the same way), our
wrapper of that method binds each host socket itself, in the range, and hands it to the loop with ``sock=``; it then
does what aioice does with its own sockets (the receive buffer, the host candidate, a STUN query for a
server-reflexive one) and lets aioice gather the rest (TURN) by calling the original method with no addresses.
Without a range the original method runs untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import random
import re
import socket
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field

import aioice.ice
import aioice.turn
from aioice.candidate import Candidate, candidate_foundation, candidate_priority
from aiortc import RTCConfiguration, RTCIceServer
from aiortc.rtcicetransport import parse_stun_turn_uri

logger = logging.getLogger(__name__)

_HOST_ADDRESSES: ContextVar[tuple[str, ...] | None] = ContextVar("impromptu_host_addresses", default=None)
_HOST_PORTS: ContextVar[tuple[int, int] | None] = ContextVar("impromptu_host_ports", default=None)
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


def _bind_in_range(address: str, ports: tuple[int, int]) -> socket.socket | None:
    """A non-blocking UDP socket bound to ``address`` on a free port of ``ports``, or ``None`` if every port is taken.

    The search starts at a random port and wraps around, so that a port a closed connection has just released is
    not the next one handed out (late packets of the old connection would reach the new one). An error other than
    "in use" (the address is not this machine's, say) is raised: no other port would do better."""
    low, high = ports
    count = high - low + 1
    start = random.randrange(count)
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    for step in range(count):
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.bind((address, low + (start + step) % count))
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE:
                continue
            raise
        sock.setblocking(False)
        return sock
    return None


async def _host_protocol(
    connection: aioice.ice.Connection, component: int, address: str, ports: tuple[int, int]
) -> aioice.ice.StunProtocol | None:
    """What aioice 0.13's ``get_component_candidates`` does for one address, on a socket bound in ``ports``."""
    try:
        sock = _bind_in_range(address, ports)
    except OSError as exc:
        logger.info("could not bind to %s: %s", address, exc)
        return None
    if sock is None:
        logger.warning(
            "no free UDP port on %s in --ice-ports %d-%d: a viewer gets no candidate on that address "
            "(each viewer's connection holds one port; widen the range)",
            address,
            *ports,
        )
        return None
    loop = asyncio.get_running_loop()
    try:
        # connection_made runs here: impromptu/rtc/udp.py's receive buffer applies as to aioice's own sockets.
        transport, protocol = await loop.create_datagram_endpoint(
            lambda: aioice.ice.StunProtocol(connection), sock=sock
        )
    except BaseException:
        sock.close()
        raise
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, aioice.turn.UDP_SOCKET_BUFFER_SIZE)  # as aioice does
    host, port = transport.get_extra_info("sockname")[:2]
    protocol.local_candidate = Candidate(
        foundation=candidate_foundation("host", "udp", host),
        component=component,
        transport="udp",
        priority=candidate_priority(component, "host"),
        host=host,
        port=port,
        type="host",
    )
    return protocol


_original_get_component_candidates = aioice.ice.Connection.get_component_candidates


async def _get_component_candidates(
    self: aioice.ice.Connection,
    component: int,
    addresses: list[str],
    timeout: int = 5,  # noqa: ASYNC109 (aioice's)
) -> list[Candidate]:
    ports = _HOST_PORTS.get()
    if ports is None:
        return list(await _original_get_component_candidates(self, component, addresses, timeout))
    protocols = []
    for address in addresses:
        protocol = await _host_protocol(self, component, address, ports)
        if protocol is not None:
            protocols.append(protocol)
            self._protocols.append(protocol)  # at once: the connection's close() closes it, even if cut short
    candidates = [protocol.local_candidate for protocol in protocols]
    # Server-reflexive candidates through our sockets (IPv4 only, as aioice), while aioice gathers the rest.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    reflexive = [
        asyncio.ensure_future(aioice.ice.server_reflexive_candidate(protocol, self.stun_server))
        for protocol in protocols
        if self.stun_server and ipaddress.ip_address(protocol.local_candidate.host).version == 4
    ]
    try:
        candidates += await _original_get_component_candidates(self, component, [], timeout)
        if reflexive:
            done, _ = await asyncio.wait(reflexive, timeout=max(0.0, deadline - loop.time()))
            candidates += [task.result()[0] for task in done if task.exception() is None]
    finally:
        for task in reflexive:
            task.cancel()
    return candidates


aioice.ice.Connection.get_component_candidates = _get_component_candidates  # type: ignore[method-assign]


def parse_port_range(text: str) -> tuple[int, int]:
    """``MIN-MAX`` (``--ice-ports``) as a pair of ints; ``ValueError`` naming the option if it is not one."""
    match = re.fullmatch(r"\s*(\d{1,5})\s*-\s*(\d{1,5})\s*", text)
    if match is None:
        raise ValueError(f"--ice-ports {text!r} is not a port range MIN-MAX, e.g. 40000-40099")
    return int(match.group(1)), int(match.group(2))


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
    """``addresses``: local host candidates to offer (empty = all interfaces). ``servers``: STUN/TURN URLs.

    ``ports``: the UDP ports (``MIN``, ``MAX``, inclusive) host candidates are bound in; ``None``: any the system
    picks. ``public_address``: an address this machine is also reachable at, on the same ports (1:1 NAT: a
    container's published ports, the host's address); the desktop's offers advertise it too (see
    :meth:`advertise`). Both, like ``addresses``, apply only to peer connections made with this policy.
    """

    addresses: tuple[str, ...] = ()
    servers: tuple[str, ...] = field(default=())
    ports: tuple[int, int] | None = None
    public_address: str | None = None

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
        if self.ports is not None:
            low, high = self.ports
            if not 1024 <= low <= high <= 65535:
                raise ValueError(f"--ice-ports {low}-{high}: need 1024 ≤ MIN ≤ MAX ≤ 65535, e.g. 40000-40099")
        if self.public_address is not None:
            try:
                ipaddress.ip_address(self.public_address)
            except ValueError as exc:
                raise ValueError(f"--ice-public-address {self.public_address!r} is not an IP address") from exc

    @classmethod
    def from_options(
        cls,
        addresses: tuple[str, ...] = (),
        servers: tuple[str, ...] = (),
        ports: str | None = None,
        public_address: str | None = None,
    ) -> IcePolicy:
        """The policy of ``--ice-address``, ``--ice-server``, ``--ice-ports`` and ``--ice-public-address`` as given;
        ``ValueError`` naming the option that is wrong."""
        port_range = None if ports is None else parse_port_range(ports)
        return cls(addresses=addresses, servers=servers, ports=port_range, public_address=public_address)

    @property
    def loopback_only(self) -> bool:
        return bool(self.addresses) and all(_is_loopback(a) for a in self.addresses)

    def configuration(self) -> RTCConfiguration:
        # An explicit empty list: with None, aiortc would fall back to a public STUN server.
        return RTCConfiguration(iceServers=[RTCIceServer(urls=url) for url in self.servers])

    @contextlib.contextmanager
    def gathering(self) -> Iterator[None]:
        """Candidates gathered inside this block are restricted to ``addresses`` and ``ports`` (when given)."""
        token = _HOST_ADDRESSES.set(self.addresses or None)
        ports_token = _HOST_PORTS.set(self.ports)
        try:
            yield
        finally:
            _HOST_PORTS.reset(ports_token)
            _HOST_ADDRESSES.reset(token)

    def advertise(self, sdp: str) -> str:
        """The desktop's offer ``sdp`` as it is sent: with ``public_address``, each UDP host candidate is followed by
        a twin on ``public_address`` with the same port.

        The local candidate is kept, not replaced: a browser on this host or on the container's own network still
        reaches it directly, and one elsewhere that cannot simply fails that pair and succeeds through the twin
        (port forwarding sends its packets to the local socket, and the replies go back out through the same
        mapping). The twin has a foundation of its own and a priority one local preference below its local
        candidate's, so the browser checks the local one first. Twins are made only for candidates of the public
        address's IP version, never for a loopback candidate when the public address is not loopback (no port is
        forwarded to a loopback socket), and once per port."""
        public = self.public_address
        if public is None:
            return sdp
        version = ipaddress.ip_address(public).version
        lines: list[str] = []
        twinned: set[int] = set()
        for line in sdp.splitlines():
            lines.append(line)
            if not line.startswith("a=candidate:"):
                continue
            try:
                local = Candidate.from_sdp(line[len("a=candidate:") :])
                local_ip = ipaddress.ip_address(local.host)
            except ValueError:
                continue
            if (
                local.type != "host"
                or local.transport.lower() != "udp"
                or local_ip.version != version
                or local.host == public
                or (local_ip.is_loopback and not _is_loopback(public))
                or local.port in twinned
            ):
                continue
            twinned.add(local.port)
            twin = Candidate(
                foundation=candidate_foundation("host", "udp", f"{public}>{local.host}"),
                component=local.component,
                transport="udp",
                priority=max(0, local.priority - (1 << 8)),  # local preference one lower (RFC 8445 §5.1.2.1)
                host=public,
                port=local.port,
                type="host",
                generation=local.generation,
            )
            lines.append(f"a=candidate:{twin.to_sdp()}")
        return "\r\n".join(lines) + "\r\n"

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
