"""Small JPEG pictures of a surface, for the lobby (docs/protocol.md §11): made from a captured frame, never from
the video stream (the signaling server must not hold anything it could decode the stream with)."""

from __future__ import annotations

import cv2
import numpy as np

from impromptu.capture.base import Frame

MAX_WIDTH = 320
MAX_HEIGHT = 200
MAX_BYTES = 40 * 1024
QUALITIES = (70, 50, 30)


def downscale(frame: Frame, max_width: int = MAX_WIDTH, max_height: int = MAX_HEIGHT) -> np.ndarray:
    """``frame`` made to fit in ``max_width`` × ``max_height`` (aspect kept), as a BGR array of its own: cheap enough
    for the encode thread (1-2 ms at 1080p), and no longer tied to the capture's buffer."""
    pixels = np.frombuffer(frame.data, dtype=np.uint8, count=frame.width * frame.height * 4)
    pixels = pixels.reshape(frame.height, frame.width, 4)
    scale = min(max_width / frame.width, max_height / frame.height, 1.0)
    size = (max(1, round(frame.width * scale)), max(1, round(frame.height * scale)))
    small = cv2.resize(pixels, size, interpolation=cv2.INTER_AREA) if scale < 1.0 else pixels
    return cv2.cvtColor(small, cv2.COLOR_BGRA2BGR)


def jpeg(picture: np.ndarray) -> bytes | None:
    """A JPEG of a (small) BGR picture within ``MAX_BYTES``, or ``None`` if even the lowest quality is too big."""
    for quality in QUALITIES:
        ok, encoded = cv2.imencode(".jpg", picture, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if ok and len(encoded) <= MAX_BYTES:
            return encoded.tobytes()
    return None


def thumbnail(frame: Frame) -> bytes | None:
    """A JPEG of ``frame``, at most ``MAX_WIDTH`` × ``MAX_HEIGHT`` and ``MAX_BYTES`` (``None`` if it cannot be)."""
    return jpeg(downscale(frame))
