"""The one encoder per shared surface (PyAV).

H.264 constrained baseline through libx264 (Annex B, SPS/PPS repeated on every keyframe so a decoder can start
at any keyframe without out-of-band configuration), tuned for latency: no B-frames, no lookahead, one packet per
frame, keyframes only when asked for. VP8 through libvpx when libx264 is missing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from fractions import Fraction

import av
from av.video.codeccontext import VideoCodecContext
from av.video.frame import PictureType

from impromptu.encode.convert import I420Converter
from impromptu.errors import EncodeError

logger = logging.getLogger(__name__)

# H.264 levels: (level_idc, max macroblocks per frame, max macroblocks per second).
_H264_LEVELS = [
    (30, 1620, 40500),
    (31, 3600, 108000),
    (32, 5120, 216000),
    (40, 8192, 245760),
    (42, 8704, 522240),
    (50, 22080, 589824),
    (51, 36864, 983040),
    (52, 36864, 2073600),
]


def h264_level(width: int, height: int, fps: int) -> int:
    """The lowest H.264 level (as level_idc, e.g. 31) that fits this size and rate."""
    mbs = ((width + 15) // 16) * ((height + 15) // 16)
    for level, max_fs, max_mbps in _H264_LEVELS:
        if mbs <= max_fs and mbs * fps <= max_mbps:
            return level
    raise EncodeError(f"{width}x{height}@{fps} exceeds H.264 level 5.2")


@dataclass(frozen=True)
class CodecChoice:
    encoder: str
    """The FFmpeg encoder name."""
    codec: str
    """The WebCodecs codec string for the stream it makes."""


def available_codecs() -> list[str]:
    """FFmpeg encoders impromptu can use, in order of preference."""
    names = []
    for name in ("libx264", "libvpx"):
        try:
            av.codec.Codec(name, "w")
        except Exception:  # PyAV raises a version-dependent error for unknown codecs.
            continue
        names.append(name)
    return names


class Encoder:
    """Encodes BGRA pictures of one fixed size. Not thread-safe: one worker thread owns it."""

    def __init__(self, width: int, height: int, fps: int, encoder: str | None = None) -> None:
        if width % 2 or height % 2 or width <= 0 or height <= 0:
            raise EncodeError(f"cannot encode {width}x{height}: width and height must be even and positive")
        choices = available_codecs()
        if encoder is None:
            if not choices:
                raise EncodeError("PyAV has neither libx264 nor libvpx: reinstall the 'av' package from PyPI")
            encoder = choices[0]
        elif encoder not in choices:
            raise EncodeError(f"encoder {encoder} is not available in this PyAV build")
        self.width = width
        self.height = height
        self.fps = fps
        ctx: VideoCodecContext = av.CodecContext.create(encoder, "w")  # type: ignore[assignment]
        ctx.width = width
        ctx.height = height
        ctx.pix_fmt = "yuv420p"
        ctx.time_base = Fraction(1, 1_000_000)
        ctx.framerate = Fraction(fps, 1)
        if encoder == "libx264":
            level = h264_level(width, height, fps)
            self.codec = f"avc1.42E0{level:02X}"
            ctx.options = {
                "preset": "ultrafast",
                "tune": "zerolatency",
                "profile": "baseline",
                "level": f"{level // 10}.{level % 10}",
                "crf": "23",
                # Parameter sets on every keyframe; keyframes only when forced; at most 8 Mbit/s (the
                # reference setup's rate), with half a second of buffer so a keyframe stays sharp.
                "x264-params": ":".join(
                    [
                        "repeat-headers=1",
                        "keyint=infinite",
                        "min-keyint=1",
                        "scenecut=0",
                        "aud=0",
                        "vbv-maxrate=8000",
                        "vbv-bufsize=4000",
                        # The converter makes BT.601 limited-range YUV: say so in the SPS, or decoders that
                        # assume BT.709 for unmarked streams (Chromium) shift saturated colours.
                        "colorprim=smpte170m",
                        "transfer=smpte170m",
                        "colormatrix=smpte170m",
                        "range=tv",
                    ]
                ),
            }
        else:
            self.codec = "vp8"
            ctx.bit_rate = 8_000_000
            ctx.options = {
                "deadline": "realtime",
                "cpu-used": "8",
                "lag-in-frames": "0",
                "error-resilient": "1",
            }
            ctx.gop_size = 1 << 30
        try:
            ctx.open()
        except Exception as exc:
            raise EncodeError(f"cannot open encoder {encoder} for {width}x{height}: {exc}") from exc
        self.encoder = encoder
        self._ctx = ctx
        self._converter = I420Converter(width, height)
        self._closed = False

    def encode(self, bgra: bytes | bytearray | memoryview, pts_us: int, keyframe: bool) -> tuple[bytes, bool]:
        """Encode one picture; returns the frame's bytes and whether it is a keyframe."""
        frame = self._converter.convert(bgra)
        frame.pts = pts_us
        if keyframe:
            frame.pict_type = PictureType.I
        try:
            packets = self._ctx.encode(frame)
        except Exception as exc:
            raise EncodeError(f"{self.encoder} failed to encode a frame: {exc}") from exc
        if not packets:
            return b"", False
        data = b"".join(bytes(p) for p in packets)
        return data, any(p.is_keyframe for p in packets)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        del self._ctx  # PyAV frees the codec with its context.
