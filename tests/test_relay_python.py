"""The Python relay (docs/protocol.md §7) between a real sharing session and Python viewers, all on loopback:
frames pass through unchanged, input only under each viewer's own key, and a relay that goes away costs its
viewers a second, not their stream.

The desktop serves one peer itself (``max_direct=1``), so the first relay takes that place and every later page is
sent to a relay.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from Xlib import X

from impromptu import envelope
from impromptu.link import LinkKeys, Role, ViewerLink
from impromptu.relay import RelayOptions, RelaySession
from impromptu.session import ShareOptions, ShareSession
from impromptu.signaling import SignalingServer
from impromptu.stream.framing import EncodedChunk, Reassembler
from tests.pyviewer import LOOPBACK, PyViewer, sharing, viewer
from tests.test_session import click, wait_until
from tests.xclient import XWindow

RECOVERY_S = 5.0
"""A relay's viewers are streaming again this soon after it goes away."""


@pytest.fixture
async def shared(xvfb_display: str) -> AsyncIterator[tuple[ShareSession, SignalingServer]]:
    async with sharing(xvfb_display, max_direct=1) as pair:
        yield pair


def link_of(session: ShareSession, server: SignalingServer, role: Role) -> ViewerLink:
    key = session.keys.control if role is Role.CONTROL else session.keys.view
    return ViewerLink(f"http://127.0.0.1:{server.port}", role, key)


async def ready(relay: RelaySession) -> RelaySession:
    """Wait until ``relay`` serves (connected upstream, configured), failing if it gave up."""
    waiting: asyncio.Future[Any] = asyncio.ensure_future(relay.ready.wait())
    try:
        await asyncio.wait({waiting, relay.failed}, timeout=15, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiting.cancel()
    if relay.failed.done():
        raise AssertionError(f"the relay failed: {relay.failed.result()}")
    assert relay.ready.is_set(), "the relay was not serving within 15 s"
    return relay


@contextlib.asynccontextmanager
async def relaying(
    session: ShareSession, server: SignalingServer, max_viewers: int = 4, role: Role = Role.VIEW
) -> AsyncIterator[RelaySession]:
    relay = RelaySession(link_of(session, server, role), RelayOptions(max_viewers=max_viewers, ice=LOOPBACK))
    try:
        await relay.start()
        yield await ready(relay)
    finally:
        await relay.stop()


async def next_frame(v: PyViewer, within: float = 10) -> EncodedChunk:
    return await asyncio.wait_for(v.frames.get(), within)


def drain(v: PyViewer) -> None:
    while not v.frames.empty():
        v.frames.get_nowait()


async def test_frames_reach_viewers_behind_the_relay_unchanged(
    shared: tuple[ShareSession, SignalingServer], xvfb_display: str
) -> None:
    session, server = shared
    painter = XWindow(xvfb_display, 0, 0, 640, 480)
    received: list[bytes] = []
    relay = RelaySession(link_of(session, server, Role.VIEW), RelayOptions(max_viewers=4, ice=LOOPBACK))
    forward = relay._upstream._on_video

    def record(message: bytes) -> None:
        received.append(message)
        forward(message)

    relay._upstream._on_video = record
    viewers = [viewer(session, server, session.keys.view), viewer(session, server, session.keys.control)]
    try:
        await relay.start()
        await ready(relay)
        assert not relay.via_relay and session.viewers == 1
        for v in viewers:
            v.raw = []
            assert (await v.connect())["type"] == "offer"
            assert v.via_relay, "the desktop has no room: the server sent it to the relay"
        got: list[list[EncodedChunk]] = [[], []]
        for i, v in enumerate(viewers):
            got[i].append(await next_frame(v))
            assert got[i][0].keyframe, "a viewer behind a relay starts at a keyframe too"
        for colour in (0xFF0000, 0x00FF00, 0x0000FF):
            painter.fill(colour)
            for i, v in enumerate(viewers):
                got[i].append(await next_frame(v))
        assert session.viewers == 1, "the desktop still serves only the relay"

        # Byte for byte what the relay received, each message and so each frame.
        upstream = set(received)
        reassembler = Reassembler()
        by_seq = {}
        for message in received:
            done = reassembler.push(message)
            if done is not None:
                by_seq[done.chunk.seq] = done.chunk
        for i, v in enumerate(viewers):
            assert v.raw and all(message in upstream for message in v.raw)
            assert all(by_seq[chunk.seq] == chunk for chunk in got[i])

        view, control = viewers
        presence = await view.wait_presence(lambda p: p["viewers"] == 3 and p["controllers"] == 1)
        assert presence["you"] == view.id and presence["role"] == "view" and presence["relayed"] == {}
        presence = await control.wait_presence(lambda p: p["role"] == "control")
        assert presence["you"] == control.id and presence["viewers"] == 3
        assert relay.viewers == 2
    finally:
        for v in viewers:
            await v.close()
        await relay.stop()
        painter.close()


async def test_only_a_control_viewer_drives_x_through_a_relay_that_holds_only_kv(
    shared: tuple[ShareSession, SignalingServer], xvfb_display: str
) -> None:
    session, server = shared
    watcher = XWindow(xvfb_display, 0, 0, 640, 480, X.ButtonPressMask | X.KeyPressMask)
    watcher.focus()
    key_a = {"type": "input.key", "code": "KeyA", "key": "a", "down": True}
    async with relaying(session, server) as relay:
        view = viewer(session, server, session.keys.view)
        control = viewer(session, server, session.keys.control)
        try:
            await view.connect()
            await control.connect()
            assert view.via_relay and control.via_relay
            await control.wait_presence(lambda p: p["role"] == "control")  # its control.hello verified

            # The view-only viewer: input sent bare is dropped by the relay; an envelope it made (with Kv) is
            # passed on and refused by the desktop. Both travel the same ordered way, the bare one first: had the
            # relay passed it on, it would be refused before the envelope.
            view.send(key_a)
            view.relayed(key_a)
            await wait_until(lambda: session.refused_input >= 1)
            assert session.refused_input == 1

            # The relay itself, holding only Kv, forges an envelope for the control viewer: refused.
            text = '{"type":"input.key","code":"KeyA","key":"a","down":true}'
            relay._upstream.send_control(envelope.seal(session.keys.view, control.id, 1000, text).message())
            await wait_until(lambda: session.refused_input == 2)

            # The control viewer's own click gets through …
            sent = control.relayed(click(400, 300))
            (press,) = await asyncio.to_thread(watcher.wait_events, {X.ButtonPress})
            assert (press.root_x, press.root_y) == (400, 300)
            # … once: the relay replaying it is refused.
            relay._upstream.send_control(sent)
            await wait_until(lambda: session.refused_input == 3)
            control.relayed(click(400, 300, down=False))
            control.relayed({"type": "input.key", "code": "KeyB", "key": "b", "down": True})
            control.relayed({"type": "input.key", "code": "KeyB", "key": "b", "down": False})
            (key,) = await asyncio.to_thread(watcher.wait_events, {X.KeyPress})
            assert watcher.d.keycode_to_keysym(key.detail, 0) == ord("b"), "no key of the view-only viewer's"
            assert len([e for e in watcher.events if e.type == X.KeyPress]) == 1
            assert session.refused_input == 3
        finally:
            await view.close()
            await control.close()
            watcher.close()


async def test_a_viewer_without_the_key_is_rejected_by_the_relay(
    shared: tuple[ShareSession, SignalingServer],
) -> None:
    session, server = shared
    async with relaying(session, server) as relay:
        stranger = viewer(session, server, LinkKeys.generate().control)  # checks offers with the real Kv
        try:
            last = await stranger.connect()
            assert last == {"type": "reject", "peer": stranger.id, "reason": "not authorised"}
            assert stranger.frames.empty() and relay.viewers == 0
        finally:
            await stranger.close()


async def test_joins_beyond_its_capacity_are_rejected_by_the_relay(
    shared: tuple[ShareSession, SignalingServer],
) -> None:
    session, server = shared
    async with relaying(session, server, max_viewers=1) as relay:
        v = viewer(session, server, session.keys.view)
        try:
            await v.connect()
            assert v.via_relay
            sent: list[dict[str, Any]] = []
            relay._upstream.send_signal = sent.append  # type: ignore[method-assign,assignment]
            relay._offers.signal({"type": "join", "peer": "one-too-many"})  # as a server that miscounted would send
            assert sent == [{"type": "reject", "peer": "one-too-many", "reason": "the relay is full"}]
        finally:
            await v.close()


async def test_when_the_relay_stops_its_viewers_stream_again_from_a_new_upstream(
    shared: tuple[ShareSession, SignalingServer],
) -> None:
    session, server = shared
    v = viewer(session, server, session.keys.control)
    try:
        async with relaying(session, server) as relay:
            await v.connect()
            assert v.via_relay
            await next_frame(v)
            assert relay.viewers == 1
            stopped = time.monotonic()
        frame = await v.frame_of(2, RECOVERY_S)
        assert time.monotonic() - stopped < RECOVERY_S
        assert frame.keyframe and not v.via_relay and v.connections == 2, "now served by the desktop itself"
    finally:
        await v.close()


async def test_a_relay_moved_to_another_upstream_keeps_its_viewers(
    shared: tuple[ShareSession, SignalingServer], xvfb_display: str
) -> None:
    """desktop ── A ── B ── viewer; A goes: B is moved up to the desktop on the same socket, and its viewer stays."""
    session, server = shared
    v = viewer(session, server, session.keys.view)
    painter = XWindow(xvfb_display, 0, 0, 640, 480)
    try:
        async with contextlib.AsyncExitStack() as stack:
            a = await stack.enter_async_context(relaying(session, server, max_viewers=1))
            b = await stack.enter_async_context(relaying(session, server, max_viewers=2))
            assert b.via_relay, "the desktop is full: B is below A"
            await v.connect()
            assert v.via_relay
            await next_frame(v)
            assert b.viewers == 1 and a.viewers == 1
            # A reports B's viewer with its own; B gets presence made out to it, listing its viewer's role.
            await v.wait_presence(lambda p: p["viewers"] == 3 and p["role"] == "view")
            assert b._presence is not None
            assert b._presence["you"] == b.peer_id and b._presence["relayed"] == {v.id: "view"}

            await a.stop()
            stopped = time.monotonic()
            await wait_until(lambda: b._upstream.connections == 2)
            drain(v)
            painter.fill(0x123456)  # a frame that can only come the new way
            await next_frame(v, RECOVERY_S - (time.monotonic() - stopped))
            assert v.connections == 1 and v.via_relay, "the viewer kept its connection to B"
            assert b._upstream.connections == 2 and not b.via_relay, "B now hangs off the desktop"
    finally:
        await v.close()
        painter.close()


async def test_impromptu_relay_serves_until_sigterm_and_its_viewer_moves_on(
    shared: tuple[ShareSession, SignalingServer],
) -> None:
    session, server = shared
    command = [sys.executable, "-m", "impromptu", "relay", "-", "--max-viewers", "2", "--bind", "127.0.0.1"]
    proc = await asyncio.create_subprocess_exec(
        *command,
        stdin=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
        cwd=Path(__file__).parent.parent,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lines: list[str] = []
    reader: asyncio.Task[None] | None = None
    v = viewer(session, server, session.keys.control)
    try:
        assert proc.stdin is not None and proc.stderr is not None
        proc.stdin.write(f"http://127.0.0.1:{server.port}/#{session.keys.view_fragment()}\n".encode())
        await proc.stdin.drain()
        proc.stdin.close()
        while not any(line.startswith("impromptu: relaying") for line in lines):
            line = await asyncio.wait_for(proc.stderr.readline(), 20)
            assert line, f"impromptu relay ended before it was ready: {lines}"
            lines.append(line.decode())
        assert lines[-1].strip() == f"impromptu: relaying http://127.0.0.1:{server.port} for up to 2 viewers"
        reader = asyncio.ensure_future(read_rest(proc.stderr, lines))

        await v.connect()
        assert v.via_relay
        assert (await next_frame(v)).keyframe
        proc.send_signal(signal.SIGTERM)
        stopped = time.monotonic()
        assert await asyncio.wait_for(proc.wait(), RECOVERY_S) == 0
        await reader
        assert not [line for line in lines if "Traceback" in line or "error" in line.lower()], lines
        await v.frame_of(2, RECOVERY_S - (time.monotonic() - stopped))
        assert not v.via_relay
    finally:
        await v.close()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        if reader is not None:
            reader.cancel()


async def read_rest(stream: Any, lines: list[str]) -> None:
    """Keep reading a child's stderr, so that a full pipe never stalls it."""
    while line := await stream.readline():
        lines.append(line.decode())


def test_bad_input_is_one_line_and_exit_2() -> None:
    import subprocess

    for args, expected in (
        (["not-a-link"], "is not an impromptu link"),
        (["http://127.0.0.1:9/#v=short"], "the link is damaged"),
        (["http://127.0.0.1:9/#v=" + "A" * 43, "--bind", "eth0"], "--bind 'eth0' is not an IP address"),
        (["http://127.0.0.1:9/#v=" + "A" * 43, "--max-viewers", "65"], "a relay serves 0 to 64 viewers"),
        (["http://127.0.0.1:9/#v=" + "A" * 43, "--ice-server", "turn:x"], "--ice-server"),
    ):
        done = subprocess.run(
            [sys.executable, "-m", "impromptu", "relay", *args], capture_output=True, text=True, timeout=30
        )
        assert done.returncode == 2, (args, done.stderr)
        assert done.stderr.count("\n") == 1 and done.stderr.startswith("impromptu: error: "), done.stderr
        assert expected in done.stderr


def test_an_unreachable_desktop_is_one_line_and_exit_1() -> None:
    import socket
    import subprocess

    with socket.socket() as s:  # a port nobody listens on: bound, never listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "impromptu", "relay", f"http://127.0.0.1:{port}/#v=" + "A" * 43],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert done.returncode == 1, done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("impromptu: error: cannot reach"), done.stderr


async def test_a_relay_whose_upstream_fails_silently_joins_again(
    shared: tuple[ShareSession, SignalingServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """desktop ── A ── B ── viewer, and A drops B's connection while staying in the room: the server does not know,
    so no new offer comes. B gives up on its socket after the grace period and joins again; its viewer, moved by
    the server when B's old socket closed, streams again."""
    monkeypatch.setattr("impromptu.relay.upstream.REOFFER_GRACE_S", 0.3)
    session, server = shared
    v = viewer(session, server, session.keys.view)
    try:
        async with contextlib.AsyncExitStack() as stack:
            a = await stack.enter_async_context(relaying(session, server, max_viewers=2))
            b = await stack.enter_async_context(relaying(session, server, max_viewers=2))
            await v.connect()
            await next_frame(v)
            assert b.via_relay and b.viewers == 1, "the viewer is behind B (2 free places against A's 1)"
            old_id = b.peer_id
            await a._offers.peers[old_id].close()
            await wait_until(lambda: b._upstream.connections == 2)
            assert b.peer_id != old_id, "a new socket"
            assert (await v.frame_of(2)).keyframe
    finally:
        await v.close()


async def test_a_relay_placed_with_an_upstream_that_never_offers_joins_again(
    shared: tuple[ShareSession, SignalingServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A "relay" that says it has room and then never offers (a liar, or one its viewers cannot reach) does not
    hold an honest relay for ever: after the handshake deadline it joins again on a new socket, and when the liar
    has gone, it gets a place that works."""
    monkeypatch.setattr("impromptu.relay.upstream.HANDSHAKE_TIMEOUT_S", 0.5)
    session, server = shared
    async with aiohttp.ClientSession() as http, contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(relaying(session, server, max_viewers=1))  # the desktop's one place
        liar = await http.ws_connect(f"http://127.0.0.1:{server.port}/ws")
        await liar.send_json({"type": "hello", "room": session.keys.room, "role": "relay"})
        await liar.send_json({"type": "capacity", "viewers": 8})  # placed below the first relay, it never answers
        seats = server._rooms[session.keys.room].tree.seats
        await wait_until(lambda: any(seat.capacity == 8 for seat in seats.values()))
        honest = RelaySession(link_of(session, server, Role.VIEW), RelayOptions(max_viewers=2, ice=LOOPBACK))
        await honest.start()
        stack.push_async_callback(honest.stop)
        await wait_until(lambda: honest.peer_id != "")
        first_socket = honest.peer_id
        await wait_until(lambda: honest.peer_id not in ("", first_socket))  # gave up on the liar, joined again
        await liar.close()
        await ready(honest)


async def test_a_relay_keeps_its_viewers_while_the_desktop_is_away(
    xvfb_display: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The desktop stops and starts again: the server tells the relay to wait, so it keeps its socket and its
    viewer, and is offered the new desktop on that socket."""
    monkeypatch.setattr("impromptu.relay.upstream.REOFFER_GRACE_S", 0.2)
    server = SignalingServer("127.0.0.1", 0)
    await server.start()
    keys = LinkKeys.generate()
    options = ShareOptions(fps=30, ice=LOOPBACK, max_direct=1)
    first = ShareSession(xvfb_display, keys, server, options)
    second = ShareSession(xvfb_display, keys, server, options)
    painter = XWindow(xvfb_display, 0, 0, 640, 480)
    v = viewer(first, server, keys.view)
    try:
        await first.start()
        async with relaying(first, server) as relay:
            await v.connect()
            await next_frame(v)
            relay_id = relay.peer_id
            await first.stop()
            await wait_until(lambda: relay._upstream._conn is not None and relay._upstream._conn.waiting)
            seat = server._rooms[keys.room].tree.seats[relay_id]
            await wait_until(lambda: seat.capacity == 0)  # it said so when it lost its upstream
            # An observation window of several grace periods: the relay must not give up its socket.
            await asyncio.sleep(1.0)
            assert relay.peer_id == relay_id and v.connections == 1
            configs = sum(1 for m in v.configs if m["type"] == "config")
            await second.start()
            await wait_until(lambda: sum(1 for m in v.configs if m["type"] == "config") > configs)
            assert relay.peer_id == relay_id and relay._upstream.connections == 2
            v._reassemblers = {}  # the new desktop's frames start again at 0 (the config says: reset)
            drain(v)
            painter.fill(0x654321)
            await next_frame(v)
            assert v.connections == 1 and v.via_relay
    finally:
        await v.close()
        await first.stop()
        await second.stop()
        await server.stop()
        painter.close()


async def test_a_viewers_figures_reach_the_desktop_through_the_relay(
    shared: tuple[ShareSession, SignalingServer],
) -> None:
    """docs/protocol.md §10: the relay passes its viewers' ``stats`` up, so the desktop sees both ends of the hop."""
    session, server = shared
    async with relaying(session, server) as relay:
        behind = viewer(session, server, session.keys.view)
        try:
            await behind.connect()
            await next_frame(behind)
            figures = {"fps_received": 29, "fps_decoded": 29, "fps_dropped": 0, "decode_ms": 4.5, "kbps": 900}
            behind.send({"type": "stats", "pair": {"state": "succeeded", "rtt_ms": 3.0}, "pipeline": figures})

            def passed_up() -> dict[str, Any] | None:
                for row in session.stats_snapshot()["viewers"]:
                    for entry in (row.get("page_side") or {}).get("downstream") or []:
                        if (entry.get("page") or {}).get("pipeline"):
                            return dict(entry)
                return None

            await wait_until(lambda: passed_up() is not None)
            entry = passed_up()
            assert entry is not None and entry["page"]["pipeline"]["decode_ms"] == 4.5
            assert entry["page"]["pair"]["rtt_ms"] == 3.0
            assert relay.ready.is_set()

            # And the desktop's verdict on that connection comes back down through the relay, to that page alone.
            def verdicts() -> list[dict[str, Any]]:
                return [m for m in behind.configs if m.get("type") == "diagnosis"]

            await wait_until(lambda: bool(verdicts()))
            assert verdicts()[0]["verdict"] == "healthy" and "peer" not in verdicts()[0]
            rows = [r for r in session.stats_snapshot()["viewers"] if r["role"] == "relayed"]
            assert [r["verdict"] for r in rows] == ["healthy"] and rows[0]["via"] != rows[0]["peer"]
        finally:
            await behind.close()
