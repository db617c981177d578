"""A headless viewer of one aiortc video track that counts frames without decoding them (the fan-out benchmark's
receiver for ``bench/pertrack.py``, and the relay benchmark's for a browser that relays a MediaStream track).

    python -m bench.trackprobe http://127.0.0.1:PORT/offer --seconds 10 --json
    python -m bench.trackprobe http://127.0.0.1:PORT/peer/3 --answer --seconds 10 --json

By default it offers to receive one H.264 track, posts the offer to the URL and applies the answer. With
``--answer`` the other side offers: it GETs the offer from the URL (``{"type": "offer", "sdp"}``), answers with
whatever codec the offer prefers among aiortc's (VP8 or H.264), and POSTs the answer to the same URL. Either way
it counts the frames that aiortc's receiver reassembles, for ``--seconds`` from the first keyframe on. Nothing is
decoded: the receiver hands each complete frame to ``get_decoder(codec).decode()`` in its decoder thread, and in
this process that factory (``aiortc.rtcrtpreceiver.get_decoder``) makes a counting no-op. Everything before it
runs as usual — SRTP, RTP, depacketizing, the jitter buffer's reassembly, NACKs and PLIs — so this viewer costs
what receiving costs, like ``impromptu probe``, which reassembles DataChannel frames and does not decode them
either.

One JSON object on stdout when the time is up (before closing the connection, so its arrival marks the end of
the window): ``frames``, ``fps``, ``bitrate_kbps``, ``keyframes``, ``lost`` (RTP packets, RTCP's count),
``first_keyframe_s`` (from start), ``seconds``, ``codec`` (the MIME type received). Exit status 0 on success, 1
with a line on stderr otherwise.
Loopback only: the URL and the ICE address must be loopback addresses.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import sys
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import aiortc.rtcrtpreceiver
from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCSessionDescription
from aiortc.codecs.base import Decoder
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from av.frame import Frame

from impromptu.probe import keyframe_in_payload
from impromptu.rtc.ice import IcePolicy

FIRST_KEYFRAME_TIMEOUT_S = 20.0
CODEC_NAMES = {"video/h264": "avc1", "video/vp8": "vp8"}
"""aiortc's video codecs, as ``impromptu.probe.keyframe_in_payload`` names them."""


class FrameCounter:
    """Counts the frames of the window, on the loop. Frames arrive from aiortc's decoder thread through
    ``call_soon_threadsafe``, stamped with the time the receiver finished reassembling them."""

    def __init__(self, loop: asyncio.AbstractEventLoop, seconds: float) -> None:
        self._loop = loop
        self._seconds = seconds
        self.first_keyframe: asyncio.Future[float] = loop.create_future()
        self.start = 0.0
        self.frames = 0
        self.keyframes = 0
        self.bytes = 0
        self.codec = ""
        """The MIME type of what the receiver decodes (set in its thread when it makes its decoder)."""

    def from_thread(self, size: int, keyframe: bool) -> None:
        """Called in the decoder thread."""
        self._loop.call_soon_threadsafe(self._add, time.monotonic(), size, keyframe)

    def _add(self, when: float, size: int, keyframe: bool) -> None:
        if not self.first_keyframe.done():
            if not keyframe:
                return  # nothing before the first keyframe counts: a decoder could not use it
            self.start = when
            self.first_keyframe.set_result(when)
        if when > self.start + self._seconds:
            return
        self.frames += 1
        self.keyframes += keyframe
        self.bytes += size

    def fail(self, reason: str) -> None:
        if not self.first_keyframe.done():
            self.first_keyframe.set_exception(RuntimeError(reason))


class CountingDecoder(Decoder):
    """aiortc's decoder slot, filled with a counter: tells keyframes (H.264: an IDR slice; VP8: the key bit),
    returns no picture."""

    def __init__(self, sink: Callable[[int, bool], None], codec: str) -> None:
        self._sink = sink
        self._codec = codec

    def decode(self, encoded_frame: JitterFrame) -> list[Frame]:
        data: bytes = encoded_frame.data
        self._sink(len(data), keyframe_in_payload(self._codec, data) is True)
        return []


_COUNTER: list[FrameCounter] = []
_COUNTER_LOCK = threading.Lock()


def _counting_decoder(codec: RTCRtpCodecParameters) -> Decoder:
    with _COUNTER_LOCK:
        counter = _COUNTER[0]
    counter.codec = codec.mimeType
    return CountingDecoder(counter.from_thread, CODEC_NAMES.get(codec.mimeType.lower(), codec.mimeType))


def _require_loopback(what: str, host: str) -> None:
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise SystemExit(f"trackprobe: {what} {host!r} is not a loopback address; this benchmark stays on loopback")


async def _offer(pc: RTCPeerConnection, policy: IcePolicy, url: str, http: aiohttp.ClientSession) -> None:
    """We offer to receive H.264 (what bench/pertrack.py sends) and POST the offer; the response is the answer."""
    transceiver = pc.addTransceiver("video", direction="recvonly")
    capabilities = RTCRtpReceiver.getCapabilities("video")
    assert capabilities is not None
    transceiver.setCodecPreferences([c for c in capabilities.codecs if c.mimeType.lower() == "video/h264"])
    with policy.gathering():
        await pc.setLocalDescription(await pc.createOffer())
    offer = pc.localDescription
    async with http.post(url, json={"sdp": offer.sdp, "type": offer.type}) as response:
        if response.status != 200:
            raise RuntimeError(f"POST {url} answered {response.status}: {(await response.text())[:200]}")
        answer = await response.json()
    await pc.setRemoteDescription(RTCSessionDescription(policy.filter_remote_sdp(answer["sdp"]), "answer"))


async def _answer(pc: RTCPeerConnection, policy: IcePolicy, url: str, http: aiohttp.ClientSession) -> None:
    """The URL holds an offer to send us one video track: GET it, answer (aiortc keeps the offer's codec order,
    so the sender's first choice that aiortc supports wins), POST the answer back."""
    async with http.get(url) as response:
        if response.status != 200:
            raise RuntimeError(f"GET {url} answered {response.status}: {(await response.text())[:200]}")
        offer = await response.json()
    if offer.get("type") != "offer" or not isinstance(offer.get("sdp"), str):
        raise RuntimeError(f"GET {url} gave no offer: {str(offer)[:200]!r}")
    await pc.setRemoteDescription(RTCSessionDescription(policy.filter_remote_sdp(offer["sdp"]), "offer"))
    with policy.gathering():
        await pc.setLocalDescription(await pc.createAnswer())
    answer = pc.localDescription
    async with http.post(url, json={"sdp": answer.sdp, "type": answer.type}) as response:
        if response.status != 200:
            raise RuntimeError(f"POST {url} answered {response.status}: {(await response.text())[:200]}")


async def receive(url: str, seconds: float, ice_address: str, answer: bool = False) -> dict[str, Any]:
    """Receive, count, print the result as one JSON line, then close. ``answer``: the URL holds the offer."""
    loop = asyncio.get_running_loop()
    started = time.monotonic()
    counter = FrameCounter(loop, seconds)
    with _COUNTER_LOCK:
        _COUNTER[:] = [counter]
    # In this process only: nothing here decodes.
    aiortc.rtcrtpreceiver.get_decoder = _counting_decoder  # type: ignore[attr-defined]

    policy = IcePolicy(addresses=(ice_address,))
    pc = RTCPeerConnection(policy.configuration())
    try:

        @pc.on("connectionstatechange")
        def _state() -> None:
            if pc.connectionState in ("failed", "closed"):
                counter.fail(f"connection {pc.connectionState} before the first keyframe")

        async with aiohttp.ClientSession() as http:
            await (_answer if answer else _offer)(pc, policy, url, http)

        first = await asyncio.wait_for(counter.first_keyframe, FIRST_KEYFRAME_TIMEOUT_S)
        await asyncio.sleep(max(0.0, first + seconds - time.monotonic()))  # the measurement window itself
        lost = 0
        for transceiver in pc.getTransceivers():
            for stats in (await transceiver.receiver.getStats()).values():
                if stats.type == "inbound-rtp":
                    lost += stats.packetsLost
        result = {
            "frames": counter.frames,
            "fps": counter.frames / seconds,
            "bitrate_kbps": counter.bytes * 8 / seconds / 1000,
            "keyframes": counter.keyframes,
            "lost": lost,
            "first_keyframe_s": first - started,
            "seconds": seconds,
            "codec": counter.codec,
        }
        # Out before closing: its arrival on stdout marks the end of the window for the benchmark.
        print(json.dumps(result), flush=True)
        return result
    finally:
        await pc.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url", help="the offer endpoint bench/pertrack.py printed (with --answer: where the offer is)")
    parser.add_argument("--answer", action="store_true", help="GET the offer from the URL and POST our answer there")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long to count, from the first keyframe")
    parser.add_argument("--json", action="store_true", help="as `impromptu probe` takes it (the output is always JSON)")
    parser.add_argument("--ice-address", default="127.0.0.1", help="the one local ICE host address (loopback)")
    args = parser.parse_args(argv)
    _require_loopback("URL host", urlsplit(args.url).hostname or "")
    _require_loopback("ICE address", args.ice_address)
    try:
        result = asyncio.run(receive(args.url, args.seconds, args.ice_address, args.answer))
    except (RuntimeError, OSError, aiohttp.ClientError, TimeoutError, KeyError, ValueError) as exc:
        print(f"trackprobe: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0 if result else 1


if __name__ == "__main__":
    sys.exit(main())
