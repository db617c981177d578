"""Video fragments on the wire (docs/protocol.md §4): cut encoded frames into ≤ 16 KiB messages and put them
back together, dropping anything malformed and never delivering a frame older than one already delivered."""

from __future__ import annotations

import logging
import struct
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)

VERSION = 1
FLAG_KEYFRAME = 0x01
HEADER = struct.Struct("<BBHIHHIQ")
HEADER_SIZE = HEADER.size  # 24
MAX_MESSAGE = 16 * 1024
MAX_PAYLOAD = MAX_MESSAGE - HEADER_SIZE
MAX_PENDING = 8
STALE_AFTER_S = 1.0
SEQ_MOD = 1 << 32


@dataclass(frozen=True, slots=True)
class EncodedChunk:
    """One encoded frame of one surface, as the encoder made it."""

    surface: int
    seq: int
    keyframe: bool
    capture_us: int
    data: bytes


def fragment(chunk: EncodedChunk, max_payload: int = MAX_PAYLOAD) -> list[bytes]:
    """Cut ``chunk`` into wire messages (header + payload)."""
    data = chunk.data
    size = len(data)
    count = max(1, -(-size // max_payload))
    if count > 0xFFFF:
        raise ValueError(f"frame of {size} bytes needs more than 65535 fragments")
    flags = FLAG_KEYFRAME if chunk.keyframe else 0
    view = memoryview(data)
    out = []
    for index in range(count):
        header = HEADER.pack(VERSION, flags, chunk.surface, chunk.seq % SEQ_MOD, index, count, size, chunk.capture_us)
        out.append(header + view[index * max_payload : (index + 1) * max_payload])
    return out


def seq_newer(a: int, b: int) -> bool:
    """True when sequence number ``a`` comes after ``b`` (serial number arithmetic, 32 bits)."""
    return a != b and ((a - b) % SEQ_MOD) < SEQ_MOD // 2


@dataclass
class _Pending:
    flags: int
    count: int
    size: int
    capture_us: int
    started: float
    parts: dict[int, bytes] = field(default_factory=dict)
    received: int = 0


@dataclass(frozen=True, slots=True)
class Reassembled:
    chunk: EncodedChunk
    lost_before: bool
    """True when frames were lost between the previous delivered frame and this one."""


class Reassembler:
    """Reassembles the fragments of one surface, in any order, with the loss rules of protocol.md §4."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._pending: OrderedDict[int, _Pending] = OrderedDict()
        self._last_seq: int | None = None
        self._lost = False
        self.dropped_fragments = 0
        self.lost_frames = 0

    def push(self, message: bytes) -> Reassembled | None:
        """Feed one wire message; returns a frame when it completes one."""
        self._expire()
        if len(message) < HEADER_SIZE:
            return self._drop("short fragment")
        version, flags, surface, seq, index, count, size, capture_us = HEADER.unpack_from(message)
        if version != VERSION:
            return self._drop(f"unknown version {version}")
        if count == 0 or index >= count:
            return self._drop(f"fragment index {index} of {count}")
        if self._last_seq is not None and not seq_newer(seq, self._last_seq):
            return self._drop("fragment of a frame older than the last delivered")
        payload = message[HEADER_SIZE:]
        if len(payload) > size or len(payload) > MAX_PAYLOAD:
            return self._drop("fragment larger than its frame")
        pending = self._pending.get(seq)
        if pending is None:
            pending = _Pending(flags, count, size, capture_us, self._clock())
            self._pending[seq] = pending
            while len(self._pending) > MAX_PENDING:
                self._pending.popitem(last=False)
                self._mark_lost()
        elif (pending.count, pending.size, pending.flags) != (count, size, flags):
            return self._drop("fragment disagrees with its frame's header")
        if index in pending.parts:
            return self._drop("duplicate fragment")
        if pending.received + len(payload) > size:
            return self._drop("fragments exceed the frame size")
        pending.parts[index] = bytes(payload)
        pending.received += len(payload)
        if len(pending.parts) < count:
            return None
        if pending.received != size:
            del self._pending[seq]
            self._mark_lost()
            return self._drop("fragments do not add up to the frame size")
        del self._pending[seq]
        # Older incomplete frames can no longer be delivered: they are lost.
        for old in [s for s in self._pending if seq_newer(seq, s)]:
            del self._pending[old]
            self._mark_lost()
        gap = self._last_seq is not None and (seq - self._last_seq) % SEQ_MOD != 1
        lost_before = self._lost or gap
        if gap and not self._lost:
            self.lost_frames += 1
        self._lost = False
        self._last_seq = seq
        data = b"".join(pending.parts[i] for i in range(count))
        chunk = EncodedChunk(surface, seq, bool(flags & FLAG_KEYFRAME), capture_us, data)
        return Reassembled(chunk, lost_before)

    def _mark_lost(self) -> None:
        self._lost = True
        self.lost_frames += 1

    def _expire(self) -> None:
        now = self._clock()
        for seq in [s for s, p in self._pending.items() if now - p.started > STALE_AFTER_S]:
            del self._pending[seq]
            self._mark_lost()

    def _drop(self, why: str) -> Reassembled | None:
        """Count and log a dropped fragment; returns ``None`` so callers can ``return self._drop(...)``."""
        self.dropped_fragments += 1
        logger.debug("dropped video fragment: %s", why)
        return None
