"""Bridge networking: host candidates bound in a port range (--ice-ports) and advertised at a public address
(--ice-public-address). Loopback only: every socket here is on 127.0.0.0/8."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from aioice import stun
from aiortc import RTCPeerConnection, RTCSessionDescription

from impromptu.link import LinkKeys
from impromptu.rtc import IcePolicy
from impromptu.rtc.ice import parse_port_range
from tests.harness import IMPROMPTU, desktop_args, moving_app, probe_report, probing, read_lines_until, run_desktop
from tests.harness import wait_for as wait_for_sync
from tests.pyviewer import LOOPBACK, PyViewer, sharing, viewer

CANDIDATE = re.compile(r"^a=candidate:(\S+) \d+ udp (\d+) (\S+) (\d+) typ (\w+)", re.MULTILINE)


def candidates(sdp: str) -> list[tuple[str, int, str, int, str]]:
    """(foundation, priority, address, port, type) of each UDP candidate, in order."""
    return [(f, int(prio), addr, int(port), typ) for f, prio, addr, port, typ in CANDIDATE.findall(sdp)]


@contextlib.contextmanager
def holding(address: str, low: int, high: int, *, spare: int | None = None) -> Iterator[list[socket.socket]]:
    """UDP sockets on every port of ``low``–``high`` at ``address`` (but ``spare``): the range is taken."""
    held = []
    try:
        for port in range(low, high + 1):
            if port == spare:
                continue
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                sock.bind((address, port))
            except OSError:  # taken by someone else already: taken all the same
                sock.close()
                continue
            held.append(sock)
        yield held
    finally:
        for sock in held:
            sock.close()


async def offer(policy: IcePolicy) -> tuple[RTCPeerConnection, str]:
    """A peer connection gathered under ``policy`` (the caller closes it) and its offer as the desktop sends it."""
    pc = RTCPeerConnection(policy.configuration())
    pc.createDataChannel("video")
    with policy.gathering():
        await pc.setLocalDescription(await pc.createOffer())
    return pc, policy.advertise(str(pc.localDescription.sdp))


# --- validation -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ports", [(1023, 2000), (2000, 1999), (40000, 65536), (0, 0)])
def test_port_range_must_be_unprivileged_and_ordered(ports: tuple[int, int]) -> None:
    with pytest.raises(ValueError, match="--ice-ports"):
        IcePolicy(ports=ports)


def test_port_range_bounds_are_inclusive() -> None:
    assert IcePolicy(ports=(1024, 1024)).ports == (1024, 1024)
    assert IcePolicy(ports=(65535, 65535)).ports == (65535, 65535)


@pytest.mark.parametrize("text", ["40000", "40000:40099", "a-b", "-1-5", "40000-", "400000-400001"])
def test_port_range_syntax(text: str) -> None:
    with pytest.raises(ValueError, match="--ice-ports"):
        parse_port_range(text)


def test_port_range_parses() -> None:
    assert parse_port_range("40000-40099") == (40000, 40099)
    assert parse_port_range(" 41000 - 41000 ") == (41000, 41000)


@pytest.mark.parametrize("address", ["host.example.org", "192.0.2", ""])
def test_public_address_must_be_an_ip(address: str) -> None:
    with pytest.raises(ValueError, match="--ice-public-address"):
        IcePolicy(public_address=address)


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--ice-ports", "80-90"], "--ice-ports"),
        (["--ice-ports", "41009-41000"], "--ice-ports"),
        (["--ice-ports", "41000"], "--ice-ports"),
        (["--ice-public-address", "desktop.example.org"], "--ice-public-address"),
    ],
)
@pytest.mark.parametrize("command", [["share", "--display", ":99"], ["vdisplay", "run"], ["relay"]])
def test_bad_options_are_one_line_usage_errors(command: list[str], args: list[str], option: str) -> None:
    link = f"http://127.0.0.1:9/#{LinkKeys.generate().view_fragment()}"
    tail = {"share": [], "vdisplay": ["--", "true"], "relay": [link]}[command[0]]
    result = subprocess.run(
        [*IMPROMPTU, *command, *(["--bind", "127.0.0.1"] if command == ["relay"] else []), *args, *tail],
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and option in lines[0], result.stderr


def test_env_variables_are_read() -> None:
    result = subprocess.run(
        [*IMPROMPTU, "share", "--display", ":99", "--bind", "127.0.0.1:0"],
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "IMPROMPTU_ICE_PORTS": "5-6"},
    )
    assert result.returncode == 2 and "--ice-ports 5-6" in result.stderr, result


# --- the port range -----------------------------------------------------------------------------------------------


async def test_host_candidates_bind_in_the_range_and_skip_taken_ports() -> None:
    policy = IcePolicy(addresses=("127.0.0.1",), ports=(41020, 41023))
    pcs = []
    try:
        with holding("127.0.0.1", 41020, 41023, spare=41022):
            pc, sdp = await offer(policy)
            pcs.append(pc)
        assert [(address, port, kind) for _, _, address, port, kind in candidates(sdp)] == [
            ("127.0.0.1", 41022, "host")
        ]
        ports = {41022}
        for _ in range(3):  # the rest of the range, one connection each
            pc, sdp = await offer(policy)
            pcs.append(pc)
            ports |= {port for _, _, _, port, _ in candidates(sdp)}
        assert ports == {41020, 41021, 41022, 41023}
    finally:
        for pc in pcs:
            await pc.close()


async def test_a_full_range_gives_no_candidate_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    policy = IcePolicy(addresses=("127.0.0.1",), ports=(41030, 41033))
    with caplog.at_level(logging.WARNING, "impromptu.rtc.ice"), holding("127.0.0.1", 41030, 41033):
        pc, sdp = await offer(policy)
        await pc.close()
    assert candidates(sdp) == []
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "no free UDP port on 127.0.0.1 in --ice-ports 41030-41033" in warnings[0]


async def test_without_a_range_the_range_does_not_linger() -> None:
    with IcePolicy(addresses=("127.0.0.1",), ports=(41040, 41040)).gathering():
        pass
    with holding("127.0.0.1", 41040, 41040):
        pc, sdp = await offer(LOOPBACK)
        await pc.close()
    assert [address for _, _, address, _, _ in candidates(sdp)] == ["127.0.0.1"]


class StunServer(asyncio.DatagramProtocol):
    """Answers STUN binding requests with the address they came from (a server-reflexive address)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        request = stun.parse_message(data)
        response = stun.Message(
            message_method=stun.Method.BINDING,
            message_class=stun.Class.RESPONSE,
            transaction_id=request.transaction_id,
        )
        response.attributes["XOR-MAPPED-ADDRESS"] = addr
        self.transport.sendto(bytes(response), addr)


async def test_stun_queries_go_through_the_sockets_in_the_range() -> None:
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(StunServer, local_addr=("127.0.0.1", 0))
    try:
        port = transport.get_extra_info("sockname")[1]
        policy = IcePolicy(addresses=("127.0.0.1",), servers=(f"stun:127.0.0.1:{port}",), ports=(41050, 41059))
        pc, sdp = await offer(policy)
        await pc.close()
    finally:
        transport.close()
    found = {(kind, port) for _, _, _, port, kind in candidates(sdp)}
    (host_port,) = [port for kind, port in found if kind == "host"]
    assert 41050 <= host_port <= 41059
    assert ("srflx", host_port) in found, sdp


# --- a real desktop -------------------------------------------------------------------------------------------------


def udp_ports(pid: int) -> set[int]:
    """The local ports of the UDP sockets process ``pid`` has open, from /proc."""
    by_inode = {}
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        with open(table) as f:
            next(f)
            for line in f:
                fields = line.split()
                by_inode[fields[9]] = int(fields[1].rsplit(":", 1)[1], 16)
    ports = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = fd.readlink().name
            if target.startswith("socket:[") and target[8:-1] in by_inode:
                ports.add(by_inode[target[8:-1]])
    return ports


def test_a_desktop_serves_a_probe_from_ports_in_the_range() -> None:
    args = desktop_args("--size", "160x120", "--ice-ports", "41000-41009")
    with run_desktop("vdisplay", "run", *args, "--", *moving_app(160, 120)) as desktop:
        assert desktop.peer_connections() == 0
        with probing(desktop.url, 2) as proc:
            ports = wait_for_sync(lambda: udp_ports(desktop.proc.pid), 15, "the probe's connection")
            assert ports and all(41000 <= port <= 41009 for port in ports), ports
            report = probe_report(proc, 30)
        assert report["exit"] == 0, report


def test_a_desktop_with_its_range_taken_fails_the_viewer_cleanly_and_warns() -> None:
    args = desktop_args("--size", "160x120", "--ice-ports", "41000-41009")
    with (
        holding("127.0.0.1", 41000, 41009),
        run_desktop("vdisplay", "run", *args, "--", *moving_app(160, 120)) as desktop,
        probing(desktop.url, 1) as proc,
    ):
        report = probe_report(proc, 40)
        assert report["exit"] != 0, report
        assert "Traceback" not in report["stderr"], report["stderr"]
        found, _ = read_lines_until(desktop.proc, {"warning": re.compile(r"(no free UDP port .*)")}, timeout=10)
        assert "127.0.0.1 in --ice-ports 41000-41009" in found["warning"]
        assert desktop.peer_connections() == 0


# --- the public address -----------------------------------------------------------------------------------------


PUBLIC = IcePolicy(addresses=("127.0.0.1",), ports=(41060, 41069), public_address="127.0.0.2")


def test_public_address_twins_each_host_candidate() -> None:
    sdp = "\r\n".join(
        [
            "v=0",
            "a=candidate:aaa 1 udp 2130706431 172.17.0.2 40001 typ host",
            "a=candidate:bbb 1 udp 2130706431 127.0.0.1 40002 typ host",
            "a=candidate:ccc 1 udp 2130706431 fd00::2 40003 typ host",
            "a=candidate:ddd 1 udp 1694498815 198.51.100.1 40001 typ srflx raddr 172.17.0.2 rport 40001",
            "a=end-of-candidates",
        ]
    )
    policy = IcePolicy(public_address="203.0.113.5")
    found = candidates(policy.advertise(sdp))
    assert [(address, port) for _, _, address, port, _ in found] == [
        ("172.17.0.2", 40001),
        ("203.0.113.5", 40001),  # after its local candidate, same port
        ("127.0.0.1", 40002),  # no twin: nothing is forwarded to loopback
        ("fd00::2", 40003),  # no twin: another IP version
        ("198.51.100.1", 40001),
    ]
    (local, twin) = found[:2]
    assert twin[0] != local[0] and twin[1] < local[1] and twin[4] == "host"
    assert "a=end-of-candidates" in policy.advertise(sdp)
    assert IcePolicy().advertise(sdp) == sdp


async def test_public_address_is_offered_macced_and_the_viewer_connects(xvfb_display: str) -> None:
    async with sharing(xvfb_display, ice=PUBLIC) as (session, server):
        pyviewer = viewer(session, server, session.keys.control)
        try:
            await pyviewer.connect()  # checks the offer's MAC against the SDP as sent
            await asyncio.wait_for(pyviewer.opened.wait(), 10)
            (offered,) = [m for m in pyviewer.signals if m["type"] == "offer"]
            found = [(address, port) for _, _, address, port, _ in candidates(offered["sdp"])]
            (port,) = {port for _, port in found}
            assert found == [("127.0.0.1", port), ("127.0.0.2", port)] and 41060 <= port <= 41069
        finally:
            await pyviewer.close()


class NattedViewer(PyViewer):
    """A viewer that sees only the desktop's public candidates: the local ones are beyond its reach."""

    async def _answer(self, msg: dict[str, Any]) -> None:
        assert msg["mac"] == self.offer_keys.offer_mac(self.id, msg["sdp"]), "offer not from the desktop"
        sdp = "\r\n".join(line for line in msg["sdp"].splitlines() if " 127.0.0.1 " not in line) + "\r\n"
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp, "offer"))
        with LOOPBACK.gathering():
            await self.pc.setLocalDescription(await self.pc.createAnswer())
        answer = self.pc.localDescription.sdp
        assert self._ws is not None
        await self._ws.send_json(
            {"type": "answer", "sdp": answer, "mac": LinkKeys.answer_mac(self.key, self.id, answer)}
        )


class Nat(asyncio.DatagramProtocol):
    """1:1 NAT on loopback, as Docker's published ports: what reaches 127.0.0.2:P goes to 127.0.0.1:P (from
    127.0.0.3, the NAT's inside address), and the replies go back out from 127.0.0.2:P."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.outside: asyncio.DatagramTransport | None = None
        self.inside: asyncio.DatagramTransport | None = None
        self.client: tuple[str, int] | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.outside, _ = await loop.create_datagram_endpoint(
            lambda: _Side(self.from_outside), local_addr=("127.0.0.2", self.port)
        )
        self.inside, _ = await loop.create_datagram_endpoint(
            lambda: _Side(self.from_inside), local_addr=("127.0.0.3", 0)
        )

    def from_outside(self, data: bytes, addr: tuple[str, int]) -> None:
        self.client = addr
        assert self.inside is not None
        self.inside.sendto(data, ("127.0.0.1", self.port))

    def from_inside(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.client is not None and self.outside is not None:
            self.outside.sendto(data, self.client)

    def close(self) -> None:
        for transport in (self.outside, self.inside):
            if transport is not None:
                transport.close()


class _Side(asyncio.DatagramProtocol):
    def __init__(self, received: Any) -> None:
        self.received = received

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received(data, addr)


async def test_a_viewer_that_reaches_only_the_public_address_connects(xvfb_display: str) -> None:
    policy = IcePolicy(addresses=("127.0.0.1",), ports=(41070, 41070), public_address="127.0.0.2")
    nat = Nat(41070)  # the range is one port: the desktop's socket is on it
    await nat.start()
    try:
        async with sharing(xvfb_display, ice=policy) as (session, server):
            natted = NattedViewer(
                f"http://127.0.0.1:{server.port}", session.keys.room, session.keys.control, session.keys
            )
            try:
                await natted.connect()
                await asyncio.wait_for(natted.opened.wait(), 15)
                assert nat.client is not None  # its packets did go through the NAT
            finally:
                await natted.close()
    finally:
        nat.close()
