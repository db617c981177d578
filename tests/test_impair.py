"""The user-space UDP impairment relay of tests/impair.py, on loopback: delay, loss, order, routing, shutdown."""

from __future__ import annotations

import socket
import statistics
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.impair import TO_CLIENT, TO_TARGET, ImpairRelay


@contextmanager
def udp_socket(timeout: float = 2.0) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)  # capped by net.core.rmem_max
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(timeout)
    try:
        yield sock
    finally:
        sock.close()


@contextmanager
def echo_server() -> Iterator[tuple[str, int]]:
    """A UDP echo on loopback, in a thread of its own that ends with the block."""
    with udp_socket(timeout=0.05) as sock:
        stop = threading.Event()

        def serve() -> None:
            while not stop.is_set():
                try:
                    data, source = sock.recvfrom(65_535)
                except TimeoutError:
                    continue
                sock.sendto(data, source)

        thread = threading.Thread(target=serve, name="echo")
        thread.start()
        try:
            yield sock.getsockname()
        finally:
            stop.set()
            thread.join()


def wait_until(predicate: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def round_trips(relay_port: int, count: int, size: int = 100) -> list[float]:
    """Round-trip times (ms) of ``count`` datagrams sent one after another through the relay to an echo."""
    times = []
    with udp_socket() as client:
        for i in range(count):
            payload = struct.pack("!I", i) + bytes(size - 4)
            start = time.monotonic()
            client.sendto(payload, ("127.0.0.1", relay_port))
            data, source = client.recvfrom(65_535)
            times.append((time.monotonic() - start) * 1000)
            assert data == payload
            assert source == ("127.0.0.1", relay_port), "replies come from the relay"
    return times


def test_delay_each_way_measured_with_an_echo() -> None:
    with echo_server() as echo:
        with ImpairRelay(echo) as relay:
            direct = statistics.median(round_trips(relay.port, 20))
        with ImpairRelay(echo, delay_ms=40) as relay:
            delayed = round_trips(relay.port, 20)
        with ImpairRelay(echo, delay_ms=10, back_delay_ms=70) as relay:
            asymmetric = round_trips(relay.port, 10)
    assert direct < 10, direct
    # 40 ms each way: 80 ms round trip, never less, and little more (timer wheel slack, a 2-core machine).
    assert min(delayed) >= 80, delayed
    assert statistics.median(delayed) < 110, delayed
    assert min(asymmetric) >= 80 and statistics.median(asymmetric) < 110, asymmetric
    assert relay.counts.passed == {TO_TARGET: 10, TO_CLIENT: 10}
    assert relay.dropped() == 0


def test_loss_rate_within_bounds_and_seeded() -> None:
    sent = 3000

    def run(loss: float, seed: int) -> tuple[int, int, ImpairRelay]:
        with (
            udp_socket() as sink,
            udp_socket() as client,
            ImpairRelay(sink.getsockname(), loss=loss, seed=seed) as relay,
        ):
            sink.settimeout(0.5)
            delivered = 0
            for burst in range(0, sent, 100):
                for i in range(burst, burst + 100):
                    client.sendto(struct.pack("!I", i), relay.address)
                # Paced so that no buffer on the way overflows: only the relay drops.
                wait_until(lambda end=burst + 100: relay.counts.received[TO_TARGET] >= end)
                wait_until(
                    lambda: relay.passed(TO_TARGET) + relay.dropped(TO_TARGET) >= relay.counts.received[TO_TARGET]
                )
                while delivered < relay.passed(TO_TARGET):
                    sink.recvfrom(64)
                    delivered += 1
            with pytest.raises(TimeoutError):
                sink.recvfrom(64)
            return delivered, relay.counts.lost[TO_TARGET], relay

    delivered, lost, relay = run(0.10, seed=7)
    assert delivered + lost == sent
    assert relay.counts.overflow[TO_TARGET] == 0 and relay.counts.unroutable == 0
    # Binomial(3000, 0.1): mean 300, sd 16.4; ±5 sd.
    assert 218 <= lost <= 382, lost
    assert run(0.10, seed=7)[1] == lost, "the same seed loses the same datagrams"
    assert run(0.0, seed=7)[1] == 0
    assert run(1.0, seed=7)[0] == 0


def test_order_and_datagram_boundaries_kept_within_the_delay() -> None:
    # About 190 kB in all: what a default socket buffer on the way holds.
    sizes = [1, 1400, 7, 9000, 512, 20_000, 33] * 6
    with echo_server() as echo, udp_socket() as client, ImpairRelay(echo, delay_ms=25) as relay:
        start = time.monotonic()
        for i, size in enumerate(sizes):
            client.sendto(struct.pack("!I", i) + bytes([i % 251]) * (size - 4 if size > 4 else 0), relay.address)
        received = []
        for _ in sizes:
            data, _ = client.recvfrom(65_535)
            received.append(data)
        elapsed = time.monotonic() - start
    expected = [struct.pack("!I", i) + bytes([i % 251]) * (size - 4 if size > 4 else 0) for i, size in enumerate(sizes)]
    # Sizes under 4 bytes were sent as the 4-byte index alone.
    assert received == expected
    assert elapsed >= 0.050


def test_changing_the_delay_never_reorders() -> None:
    with echo_server() as echo, udp_socket() as client, ImpairRelay(echo, delay_ms=0, back_delay_ms=0) as relay:
        relay.impair(delay_ms=80, back_delay_ms=0)
        for i in range(50):
            client.sendto(struct.pack("!I", i), relay.address)
        relay.impair(delay_ms=0)  # later datagrams are due sooner, but wait their turn
        for i in range(50, 100):
            client.sendto(struct.pack("!I", i), relay.address)
        order = [struct.unpack("!I", client.recvfrom(64)[0])[0] for _ in range(100)]
    assert order == list(range(100))


def test_replies_go_to_the_latest_client_and_nothing_goes_nowhere() -> None:
    with (
        udp_socket() as target,
        udp_socket() as first,
        udp_socket() as second,
        ImpairRelay(target.getsockname()) as relay,
    ):
        # From the target before any client: nowhere to go.
        target.sendto(b"early", relay.address)
        wait_until(lambda: relay.counts.unroutable == 1)
        first.sendto(b"one", relay.address)
        assert target.recvfrom(64) == (b"one", relay.address)
        target.sendto(b"to-first", relay.address)
        assert first.recvfrom(64) == (b"to-first", relay.address)
        second.sendto(b"two", relay.address)
        assert target.recvfrom(64) == (b"two", relay.address)
        target.sendto(b"to-second", relay.address)
        assert second.recvfrom(64) == (b"to-second", relay.address)
        assert relay.client == second.getsockname()
        wait_until(lambda: relay.passed() == 4)
        assert relay.counts.passed == {TO_TARGET: 2, TO_CLIENT: 2}
        assert relay.counts.dropped == {TO_TARGET: 0, TO_CLIENT: 1}


def test_clean_shutdown_with_datagrams_in_flight() -> None:
    threads_before = set(threading.enumerate())
    with udp_socket() as target, udp_socket() as client:
        relay = ImpairRelay(target.getsockname(), delay_ms=10_000)
        with relay:
            for _ in range(100):
                client.sendto(b"queued for ten seconds", relay.address)
            wait_until(lambda: relay.counts.received[TO_TARGET] == 100)
            assert relay.running
            start = time.monotonic()
        assert time.monotonic() - start < 0.5, "stops at once, with datagrams still queued"
        assert not relay.running
        assert set(threading.enumerate()) == threads_before, "no thread left"
        # Its socket is closed: the port is free again, and nothing arrives later.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as again:
            again.bind(relay.address)
        target.settimeout(0.2)
        with pytest.raises(TimeoutError):
            target.recvfrom(64)
    relay.close()  # idempotent


def test_a_relay_never_started_closes_cleanly() -> None:
    relay = ImpairRelay(("127.0.0.1", 9))
    relay.close()
    assert not relay.running


def test_rejects_impossible_impairments() -> None:
    with pytest.raises(ValueError):
        ImpairRelay(("127.0.0.1", 9), loss=1.5)
    with pytest.raises(ValueError):
        ImpairRelay(("127.0.0.1", 9), delay_ms=-1)
