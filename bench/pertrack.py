"""A desktop that encodes once per viewer: the fan-out benchmark's comparison (mode b), the way a server built on
aiortc's media tracks shares a screen.

    python -m bench.pertrack --size 1280x720

It starts its own Xvfb with ffplay's testsrc2 on it, grabs the screen once per frame tick (30 per second, only
when DAMAGE says something changed, like impromptu) in one worker thread, and gives every viewer its own aiortc
video track whose sender has its own ``impromptu.encode.Encoder`` — the very libx264 settings impromptu uses
(constrained baseline, ultrafast/zerolatency, CRF 23 capped at 8 Mbit/s), run in that track's own thread. The
track hands aiortc finished ``av.Packet`` objects, which ``RTCRtpSender._next_encoded_frame`` does not encode
again: it only packetizes them (``H264Encoder.pack``). So the one thing that differs from impromptu is what is
measured: one conversion and encode per viewer instead of one in all, and RTP media instead of DataChannels.

Signaling is one loopback endpoint: POST an offer ({"sdp", "type"}) to the printed link, get the answer back.
``bench/trackprobe.py`` is its viewer. Stops on SIGINT or SIGTERM, with Xvfb, ffplay and every connection.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import logging
import os
import select
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from typing import Any

import av
from aiohttp import web
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from bench.common import ffplay_testsrc2, spawn, stop_process
from impromptu.capture import Frame, FrameSource, open_screen_source
from impromptu.display import Xvfb
from impromptu.display.xvfb import parse_size
from impromptu.encode.encoder import Encoder
from impromptu.rtc.ice import IcePolicy

logger = logging.getLogger("pertrack")

FPS = 30
TIME_BASE = Fraction(1, 1_000_000)
JOIN_TIMEOUT_S = 2.0


class ScreenFeed:
    """The screen, grabbed in one worker thread while anyone watches, with impromptu's policy (its
    ``EncodeWorker``): as soon as DAMAGE reports a change, but at most ``fps`` times a second. (A fixed 30 Hz
    clock beside ffplay's own 30 Hz one would miss a picture whenever the two drift into phase.)

    Each picture goes to the loop through a one-slot mailbox: a picture the loop has not taken yet is replaced by
    the newer one, never queued. Tracks wait on the loop for a picture newer than the last one they took."""

    def __init__(self, display: str, fps: int, loop: asyncio.AbstractEventLoop) -> None:
        self._display = display
        self._interval = 1.0 / fps
        self._loop = loop
        self._stopping = threading.Event()
        self._watched = threading.Event()  # set while anyone watches, and to stop
        self._wake_r, self._wake_w = os.pipe()  # cuts the worker's wait for DAMAGE short, to stop
        self._lock = threading.Lock()
        self._pending: Frame | None = None
        self._scheduled = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="pertrack-capture", daemon=True)
        self._watchers = 0
        self._frame: Frame | None = None
        self._version = 0
        self._new = asyncio.Event()
        self.grabs = 0

    def start(self) -> None:
        if not self._thread.is_alive() and not self._stopping.is_set():
            self._thread.start()

    def stop(self) -> None:
        """Stop the worker and wait for it (idempotent)."""
        self._stopping.set()
        self._watched.set()
        if self._wake_w >= 0:
            os.write(self._wake_w, b"\0")
        if self._thread.is_alive():
            self._thread.join(JOIN_TIMEOUT_S)
        if self._wake_r >= 0:
            os.close(self._wake_r)
            os.close(self._wake_w)
            self._wake_r = self._wake_w = -1
        self._new.set()  # tracks still waiting see that it stopped

    def watch(self, delta: int) -> None:
        self._watchers += delta
        if self._watchers > 0:
            self._watched.set()
        else:
            self._watched.clear()

    async def next_after(self, version: int) -> tuple[int, Frame]:
        """The newest picture, once there is one newer than ``version``."""
        while self._version <= version or self._frame is None:
            if self._stopping.is_set():
                raise MediaStreamError(f"the screen feed stopped: {self._error}")
            await self._new.wait()
        return self._version, self._frame

    def _run(self) -> None:
        try:
            source = open_screen_source(self._display)  # made here: a FrameSource belongs to one thread
            try:
                self._grab_loop(source)
            finally:
                source.close()
        except BaseException as exc:  # Reported to the tracks, which end; the log says why.
            logger.error("capture of %s failed: %s", self._display, exc)
            self._error = exc
            self._stopping.set()
            self._loop.call_soon_threadsafe(self._new.set)

    def _grab_loop(self, source: FrameSource) -> None:
        damage_fd = source.fileno()
        fds = [self._wake_r] if damage_fd is None else [self._wake_r, damage_fd]
        last = -self._interval
        while not self._stopping.is_set():
            if not self._watched.is_set():
                self._watched.wait()
                continue
            now = time.monotonic()
            earliest = last + self._interval
            changed = source.changed()
            if now < earliest or not changed:
                # Without DAMAGE, ``changed()`` is always true and this only waits for the next frame time.
                timeout = earliest - now if now < earliest else None
                ready, _, _ = select.select(fds, [], [], timeout)
                if self._wake_r in ready:
                    return  # only stop() writes to it
                continue
            last = now
            frame = source.grab()
            self.grabs += 1
            with self._lock:
                self._pending = frame
                schedule, self._scheduled = not self._scheduled, True
            if schedule:
                self._loop.call_soon_threadsafe(self._publish)

    def _publish(self) -> None:
        with self._lock:
            frame, self._pending, self._scheduled = self._pending, None, False
        if frame is None:
            return
        self._frame = frame
        self._version += 1
        # Wake every waiting track: they wait on the old event, later ones on the new.
        new, self._new = self._new, asyncio.Event()
        new.set()


class EncodingTrack(MediaStreamTrack):
    """One viewer's video: the shared pictures, converted and encoded by this track's own encoder in this track's
    own thread, handed to aiortc as H.264 packets. Skips pictures it had no time for, like a real-time encoder."""

    kind = "video"

    def __init__(self, feed: ScreenFeed, size: tuple[int, int], fps: int, number: int) -> None:
        super().__init__()
        self.number = number
        self._feed = feed
        self._encoder = Encoder(size[0], size[1], fps)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"pertrack-encode-{number}")
        self._seen = 0
        self._t0_us: int | None = None
        self._keyframe_wanted = True
        self._closed = False
        self.frames = 0
        feed.watch(+1)

    def request_keyframe(self) -> None:
        """A viewer's PLI or FIR: aiortc would force a keyframe in its own encoder; this track has its own."""
        self._keyframe_wanted = True

    async def recv(self) -> av.Packet[Any]:
        loop = asyncio.get_running_loop()
        while True:
            if self.readyState != "live":
                raise MediaStreamError
            self._seen, frame = await self._feed.next_after(self._seen)
            if self._t0_us is None:
                self._t0_us = frame.capture_us
            keyframe, self._keyframe_wanted = self._keyframe_wanted, False
            data, _ = await loop.run_in_executor(
                self._executor, self._encoder.encode, frame.data, frame.capture_us, keyframe
            )
            if data:
                break
        self.frames += 1
        packet = av.Packet(data)
        packet.pts = frame.capture_us - self._t0_us
        packet.time_base = TIME_BASE
        return packet

    def stop(self) -> None:
        super().stop()
        if self._closed:
            return
        self._closed = True
        self._feed.watch(-1)
        # Closed after any encode still running, in the thread that owns the encoder.
        self._executor.submit(self._encoder.close)
        self._executor.shutdown(wait=False)


class PerTrackDesktop:
    """Xvfb + testsrc2, the screen feed, and one peer connection with its own encoding track per viewer."""

    def __init__(self, size: tuple[int, int], fps: int, policy: IcePolicy) -> None:
        self.size = size
        self.fps = fps
        self._policy = policy
        self._xvfb = Xvfb(size)
        self._app: Any = None
        self._feed: ScreenFeed | None = None
        self._runner: web.AppRunner | None = None
        self._peers: dict[RTCPeerConnection, EncodingTrack] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._count = 0
        self.port = 0

    async def start(self) -> None:
        self._xvfb.start()
        self._app = spawn(ffplay_testsrc2(self.size), env=self._xvfb.env())
        self._feed = ScreenFeed(self._xvfb.name, self.fps, asyncio.get_running_loop())
        self._feed.start()
        app = web.Application()
        app.router.add_post("/offer", self._offer)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = int(self._runner.addresses[0][1])

    @property
    def display(self) -> str:
        return self._xvfb.name

    async def _offer(self, request: web.Request) -> web.Response:
        assert self._feed is not None
        params = await request.json()
        if params.get("type") != "offer" or not isinstance(params.get("sdp"), str):
            raise web.HTTPBadRequest(text='expected {"type": "offer", "sdp": "..."}')
        self._count += 1
        pc = RTCPeerConnection(self._policy.configuration())
        track = EncodingTrack(self._feed, self.size, self.fps, self._count)
        self._peers[pc] = track

        @pc.on("connectionstatechange")
        def _state() -> None:
            if pc.connectionState in ("failed", "closed") and pc in self._peers:
                task = asyncio.ensure_future(self._drop(pc))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

        try:
            await pc.setRemoteDescription(RTCSessionDescription(self._policy.filter_remote_sdp(params["sdp"]), "offer"))
            sender = pc.addTrack(track)
            # aiortc answers a PLI by flagging its own encoder, which packets bypass: route it to the track's.
            sender._send_keyframe = track.request_keyframe  # type: ignore[method-assign]
            with self._policy.gathering():
                await pc.setLocalDescription(await pc.createAnswer())
        except Exception:
            await self._drop(pc)
            raise
        logger.info("viewer %d: answered", track.number)
        return web.json_response({"sdp": pc.localDescription.sdp, "type": pc.localDescription.type})

    async def _drop(self, pc: RTCPeerConnection) -> None:
        track = self._peers.pop(pc, None)
        if track is not None:
            track.stop()
            logger.info("viewer %d: gone after %d frames", track.number, track.frames)
        await pc.close()

    async def stop(self) -> None:
        """Close every connection, then stop serving, capturing, the app and the display (idempotent)."""
        for pc in list(self._peers):
            await self._drop(pc)
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
        if self._feed is not None:
            self._feed.stop()
        if self._app is not None:
            stop_process(self._app)
        self._xvfb.stop()


async def serve(size: tuple[int, int], fps: int, ice_address: str) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    desktop = PerTrackDesktop(size, fps, IcePolicy(addresses=(ice_address,)))
    try:
        await desktop.start()
        # The same two lines as `impromptu vdisplay run`, so bench.desktop.Desktop can read them.
        print(
            f"pertrack: sharing display {desktop.display} ({size[0]}x{size[1]}@{fps}, one libx264 per viewer)",
            file=sys.stderr,
            flush=True,
        )
        print(f"Operator link: http://127.0.0.1:{desktop.port}/offer", flush=True)
        await stop.wait()
    finally:
        await desktop.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=parse_size, default=(1280, 720), help="WIDTHxHEIGHT (default 1280x720)")
    parser.add_argument("--fps", type=int, default=FPS)
    parser.add_argument("--ice-address", default="127.0.0.1", help="the one local ICE host address")
    args = parser.parse_args(argv)
    if not ipaddress.ip_address(args.ice_address).is_loopback:
        parser.error(f"--ice-address {args.ice_address} is not loopback: this benchmark stays on loopback")
    logging.basicConfig(level=logging.WARNING, format="pertrack: %(message)s", stream=sys.stderr)
    logger.setLevel(logging.INFO)
    asyncio.run(serve(args.size, args.fps, args.ice_address))
    return 0


if __name__ == "__main__":
    sys.exit(main())
