"""Shared pieces of the benchmarks: statistics, plain-text tables, child processes, CPU time from /proc."""

from __future__ import annotations

import collections
import contextlib
import ctypes
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.harness import moving_app  # one moving-content app for tests and benchmarks

REPO = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Reference figures from the issue, measured on these machines with the same methods.
SELKIES_CPU_PCT = {"1280x720": 14.0, "1920x1080": 22.0}
SELKIES_G2G_MS = (22.0, 32.0)  # median, p95 at 1080p30
X11VNC_G2G_MS = (30.0, 42.0)

SIZES = ((1280, 720), (1920, 1080))


def size_name(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


# ---- statistics ----


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


def p95(values: Sequence[float]) -> float:
    return percentile(values, 95)


def fmt(value: float | int | None, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}f}"


# ---- tables ----


def table(
    title: str,
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    notes: Sequence[str] = (),
    align: str = "",
) -> str:
    """A plain-text table. ``align`` has one letter per column, ``l`` or ``r``; by default the first column is
    left-aligned and the others right-aligned."""
    align = align or "l" + "r" * (len(headers) - 1)
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    def line(cells: Sequence[str]) -> str:
        parts = [c.ljust(widths[i]) if align[i] == "l" else c.rjust(widths[i]) for i, c in enumerate(cells)]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    out = [title, "=" * len(title), line(headers), rule, *(line(r) for r in rows)]
    out.extend(f"  {n}" for n in notes)
    return "\n".join(out)


# ---- child processes ----


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM if the benchmark process dies (even by SIGKILL)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn(
    command: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    stdout: int | None = subprocess.DEVNULL,
    stderr: int | None = subprocess.DEVNULL,
    text: bool = False,
) -> subprocess.Popen[str]:
    """A child in its own session (so a Ctrl-C on the terminal reaches only us, and we stop it in order), which
    also gets SIGTERM should this process die without cleaning up."""
    return subprocess.Popen(
        list(command),
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        text=text,
        cwd=REPO,
        start_new_session=True,
        preexec_fn=_die_with_parent,
    )


def stop_process(proc: subprocess.Popen[str], sig: signal.Signals = signal.SIGTERM, timeout: float = 10.0) -> None:
    """Signal ``proc`` (and, if it lingers, kill its process group); idempotent."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()


@contextmanager
def running(
    command: Sequence[str], *, env: dict[str, str] | None = None, sig: signal.Signals = signal.SIGTERM
) -> Iterator[subprocess.Popen[str]]:
    proc = spawn(command, env=env)
    try:
        yield proc
    finally:
        stop_process(proc, sig)


def ffplay_testsrc2(size: tuple[int, int]) -> list[str]:
    """The moving-content app of the issue: FFmpeg's testsrc2 pattern filling the screen at 30 fps (the tests' own
    moving app)."""
    return moving_app(*size)


class ReportingProcess:
    """A child that prints one JSON object as its report (``impromptu probe --json``, ``bench/trackprobe.py``),
    spawned like every benchmark child. A thread reads its output (stdout and stderr together) for its whole life:
    the first line that is a JSON object is the report (``result``, and ``result_at``, when it came); the last
    other lines are kept in ``tail`` to explain a failure."""

    def __init__(self, command: Sequence[str], name: str) -> None:
        self.command = list(command)
        self.started_at = time.monotonic()
        self.proc = spawn(self.command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.result: dict[str, Any] | None = None
        self.result_at: float | None = None
        self.tail: collections.deque[str] = collections.deque(maxlen=20)
        self._reader = threading.Thread(target=self._read, name=name, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        stream = self.proc.stdout
        assert stream is not None
        with contextlib.suppress(OSError, ValueError):
            for line in stream:
                text = line.strip()
                if text.startswith("{") and self.result is None:
                    with contextlib.suppress(ValueError):
                        parsed = json.loads(text)
                        if isinstance(parsed, dict):
                            self.result, self.result_at = parsed, time.monotonic()
                            continue
                if text:
                    self.tail.append(text[:300])

    @property
    def pid(self) -> int:
        return self.proc.pid

    def join_reader(self, timeout: float) -> None:
        """Once the process has exited: wait until its last output has been read."""
        self._reader.join(timeout)


INTERRUPTED = threading.Event()
"""Set on Ctrl-C, SIGTERM or SIGHUP: an error that follows (Playwright's driver got the Ctrl-C too) is the
interruption, not a benchmark failure."""


def install_signal_handlers() -> None:
    """Ctrl-C, SIGTERM and SIGHUP unwind as KeyboardInterrupt, so every ``finally`` stops what it started."""

    def interrupt(signum: int, _frame: object) -> None:
        INTERRUPTED.set()
        raise KeyboardInterrupt(f"signal {signum}")

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupt)


# ---- CPU time from /proc ----


@dataclass(frozen=True)
class ProcStat:
    pid: int
    comm: str
    ppid: int
    ticks: int
    """utime + stime of the process itself (all its threads), in clock ticks."""
    reaped_ticks: int
    """cutime + cstime: what its children that it has waited for used (theirs and their own reaped children's)."""


def proc_stat(pid: int) -> ProcStat | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    comm = text[text.index("(") + 1 : text.rindex(")")]
    fields = text[text.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state) of proc(5): ppid is field 4, utime 14, stime 15.
    return ProcStat(pid, comm, int(fields[1]), int(fields[11]) + int(fields[12]), int(fields[13]) + int(fields[14]))


def all_procs() -> list[ProcStat]:
    stats = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = proc_stat(int(entry))
            if stat is not None:
                stats.append(stat)
    return stats


def descendants(root: int, procs: Sequence[ProcStat] | None = None) -> list[ProcStat]:
    procs = all_procs() if procs is None else procs
    children: dict[int, list[ProcStat]] = {}
    for p in procs:
        children.setdefault(p.ppid, []).append(p)
    found: list[ProcStat] = []
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child.pid)
    return found


def machine_busy_ticks() -> int:
    """CPU ticks the whole machine spent busy since boot (every core; /proc/stat's first line)."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return user + nice + system + irq + softirq + steal


def own_ticks() -> int:
    """CPU ticks used so far by this process and everything it started, reaped or not (the desktop, ffplay,
    Xvfb, Playwright's driver, Chromium): each live process's own time plus its reaped children's."""
    return sum(p.ticks + p.reaped_ticks for p in (proc_stat(os.getpid()), *descendants(os.getpid())) if p is not None)


class CpuMeter:
    """CPU used by named groups of processes between ``start()`` and ``stop()``, as % of one core.

    ``groups`` maps a label to the pids to count; a pid that is gone at ``stop()`` counts nothing. Two more
    figures come for free: ``machine`` (every core, every process) and ``foreign`` (the machine minus this
    process and all its descendants: someone else's load, which makes the figures unreliable)."""

    def __init__(self, groups: dict[str, list[int]] | None = None) -> None:
        self.groups = groups or {}
        self._start: dict[int, int] = {}
        self._own = 0
        self._machine = 0
        self._t0 = 0.0
        self.percent: dict[str, float] = {}
        self.seconds = 0.0

    def start(self) -> CpuMeter:
        self._own = own_ticks()
        self._start = {}
        for pid in {pid for pids in self.groups.values() for pid in pids}:
            stat = proc_stat(pid)
            if stat is not None:
                self._start[pid] = stat.ticks
        self._machine = machine_busy_ticks()
        self._t0 = time.monotonic()
        return self

    def _ticks(self, pids: Sequence[int]) -> int:
        ticks = 0
        for pid in pids:
            stat = proc_stat(pid)
            if stat is not None and pid in self._start:
                ticks += stat.ticks - self._start[pid]
        return ticks

    def stop(self) -> dict[str, float]:
        elapsed = time.monotonic() - self._t0
        machine = machine_busy_ticks() - self._machine
        self.seconds = elapsed

        def pct(ticks: int) -> float:
            return 100.0 * ticks / CLK_TCK / elapsed

        for label, pids in self.groups.items():
            self.percent[label] = pct(self._ticks(pids))
        self.percent["machine"] = pct(machine)
        self.percent["foreign"] = max(0.0, pct(machine - (own_ticks() - self._own)))
        return self.percent


FOREIGN_WARN_PCT = 10.0
"""Other processes using more than this (% of one core) during a benchmark make its figures suspect."""


def wait_until_quiet(max_wait_s: float, sample_s: float = 1.0) -> float:
    """Wait (up to ``max_wait_s``) until no other process uses more than ``FOREIGN_WARN_PCT`` of a core;
    returns the last foreign load measured."""
    deadline = time.monotonic() + max_wait_s
    warned = False
    while True:
        meter = CpuMeter().start()
        time.sleep(sample_s)
        foreign = meter.stop()["foreign"]
        if foreign <= FOREIGN_WARN_PCT or time.monotonic() >= deadline:
            if foreign > FOREIGN_WARN_PCT:
                log(f"other processes still use {foreign:.0f}% of a core: figures will be off")
            return foreign
        if not warned:
            log(f"other processes use {foreign:.0f}% of a core: waiting up to {max_wait_s:.0f} s for quiet")
            warned = True


def log(message: str) -> None:
    """Progress on stderr, so stdout carries only the tables."""
    print(f"bench: {message}", file=sys.stderr, flush=True)


# ---- viewers that report once, and CPU over the window in which they all received ----


class Receiver(ReportingProcess):
    """One headless viewer process (``impromptu probe --json``, ``bench/trackprobe.py``) that receives for S
    seconds from its first keyframe and then prints its result: the result, and when it arrived."""

    def __init__(self, command: Sequence[str], name: str = "receiver") -> None:
        super().__init__(command, name=name)

    def wait(self, timeout: float) -> dict[str, Any]:
        try:
            status = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(f"a viewer did not finish within {timeout:.0f} s: {self._tail()}") from exc
        self.join_reader(5)
        if status != 0:
            raise RuntimeError(f"a viewer exited with status {status}: {self._tail()}")
        result = self.result
        if result is None:
            raise RuntimeError(f"a viewer printed no JSON result: {self._tail()}")
        if "frames" not in result or "fps" not in result:
            raise RuntimeError(f"a viewer's result lacks frames/fps: {str(result)[:200]!r}")
        return result

    @property
    def reported_at(self) -> float:
        """When the result came (after ``wait``)."""
        assert self.result_at is not None, "wait() for the result first"
        return self.result_at

    def _tail(self) -> str:
        program = next((i for i, arg in enumerate(self.command) if arg == "-m"), 0)
        return f"`{' '.join(self.command[program + 1 : program + 3])} …`: {' | '.join(self.tail) or '(no output)'}"

    def stop(self) -> None:
        stop_process(self.proc)


def receiving_spans(
    receivers: Sequence[Receiver], results: Sequence[dict[str, Any]], seconds: float
) -> list[tuple[float, float]]:
    """When each viewer was receiving: from its result's arrival − its S seconds to its result's arrival. So no
    viewer has to announce its first keyframe while it runs, and no fixed delay guesses when they all joined."""
    return [
        (r.reported_at - float(res.get("seconds", seconds)), r.reported_at)
        for r, res in zip(receivers, results, strict=True)
    ]


SAMPLE_S = 0.2


@dataclass(frozen=True)
class Sample:
    at: float
    ticks: dict[int, int]
    """Own utime+stime of this process and each of its descendants."""
    own: int
    """All of that plus what reaped children used (``own_ticks``, from the same scan)."""
    machine: int


class Sampler:
    """Reads /proc every ``SAMPLE_S`` in a thread, so CPU can be taken over any window of the run afterwards (one
    found from the viewers' results, for instance)."""

    def __init__(self, name: str = "sampler") -> None:
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while True:
            self.samples.append(self._sample())
            if self._stop.wait(SAMPLE_S):
                self.samples.append(self._sample())
                return

    @staticmethod
    def _sample() -> Sample:
        procs = all_procs()
        me = os.getpid()
        mine = [p for p in procs if p.pid == me] + descendants(me, procs)
        return Sample(
            time.monotonic(),
            {p.pid: p.ticks for p in mine},
            sum(p.ticks + p.reaped_ticks for p in mine),
            machine_busy_ticks(),
        )

    def percent(self, start: float, end: float, groups: dict[str, list[int]]) -> tuple[dict[str, float], float]:
        """% of one core used by each group between the first sample at or after ``start`` and the last at or
        before ``end``, plus ``machine`` and ``foreign`` (as in ``CpuMeter``); and the seconds covered. A process
        of a group that started within the window counts from zero (the first sample saw every descendant, so it
        did not exist yet); one that ended within it counts nothing."""
        inside = [s for s in self.samples if start <= s.at <= end]
        if len(inside) < 2:
            raise RuntimeError(f"no CPU window: every viewer was receiving for {max(0.0, end - start):.1f} s only")
        first, last = inside[0], inside[-1]
        elapsed = last.at - first.at

        def pct(ticks: int) -> float:
            return 100.0 * ticks / CLK_TCK / elapsed

        percent = {
            label: pct(sum(last.ticks[p] - first.ticks.get(p, 0) for p in set(pids) if p in last.ticks))
            for label, pids in groups.items()
        }
        machine = last.machine - first.machine
        percent["machine"] = pct(machine)
        percent["foreign"] = max(0.0, pct(machine - (last.own - first.own)))
        return percent, elapsed


def series_failures(rows: Sequence[dict[str, Any]], bench: str, labels: dict[str, str]) -> dict[str, str]:
    """One line per size and mode of a size × mode × N benchmark that failed (rows with an ``error``)."""
    found: dict[str, str] = {}
    for r in rows:
        if "error" in r:
            found.setdefault(f"{bench} {r['size']} {labels[r['mode']]}", r["error"])
    return found
