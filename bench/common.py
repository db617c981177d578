"""Shared pieces of the benchmarks: statistics, plain-text tables, child processes, CPU time from /proc."""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

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
    """The ``q``-th percentile (0–100) with linear interpolation; NaN for no values."""
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


def table(title: str, headers: Sequence[str], rows: Sequence[Sequence[str]], notes: Sequence[str] = ()) -> str:
    """A plain-text table: the first column left-aligned, the others right-aligned."""
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    def line(cells: Sequence[str]) -> str:
        parts = [c.ljust(widths[0]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(cells)]
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
    return subprocess.Popen(  # type: ignore[call-overload, no-any-return]
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
    """The moving-content app of the issue: FFmpeg's testsrc2 pattern filling the screen at 30 fps."""
    w, h = size
    return [
        "ffplay", "-loglevel", "error", "-nostats",
        "-f", "lavfi", "-i", f"testsrc2=size={w}x{h}:rate=30",
        "-an", "-noborder", "-left", "0", "-top", "0", "-x", str(w), "-y", str(h),
    ]  # fmt: skip


def install_signal_handlers() -> None:
    """SIGTERM and SIGHUP unwind like Ctrl-C, so every ``finally`` stops what it started."""

    def interrupt(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupt)


# ---- CPU time from /proc ----


@dataclass(frozen=True)
class ProcStat:
    pid: int
    comm: str
    ppid: int
    ticks: int
    """utime + stime of the process itself (all its threads), in clock ticks."""


def proc_stat(pid: int) -> ProcStat | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    comm = text[text.index("(") + 1 : text.rindex(")")]
    fields = text[text.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state) of proc(5): ppid is field 4, utime 14, stime 15.
    return ProcStat(pid, comm, int(fields[1]), int(fields[11]) + int(fields[12]))


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


class CpuMeter:
    """CPU used by named groups of processes between ``start()`` and ``stop()``, as % of one core.

    ``groups`` maps a label to the pids to count; a pid that is gone at ``stop()`` counts nothing."""

    def __init__(self, groups: dict[str, list[int]]) -> None:
        self.groups = groups
        self._start: dict[int, int] = {}
        self._t0 = 0.0
        self.percent: dict[str, float] = {}
        self.seconds = 0.0

    def start(self) -> None:
        self._start = {}
        for pids in self.groups.values():
            for pid in pids:
                stat = proc_stat(pid)
                if stat is not None:
                    self._start[pid] = stat.ticks
        self._t0 = time.monotonic()

    def stop(self) -> dict[str, float]:
        elapsed = time.monotonic() - self._t0
        self.seconds = elapsed
        for label, pids in self.groups.items():
            ticks = 0
            for pid in pids:
                stat = proc_stat(pid)
                if stat is not None and pid in self._start:
                    ticks += stat.ticks - self._start[pid]
            self.percent[label] = 100.0 * ticks / CLK_TCK / elapsed
        return self.percent


def log(message: str) -> None:
    """Progress on stderr, so stdout carries only the tables."""
    print(f"bench: {message}", file=sys.stderr, flush=True)
