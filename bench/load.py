"""Load: many headless viewers on a moving desktop for a minute, killed and rejoined at random meanwhile.

    .venv/bin/python bench/load.py                      # 20 viewers, 60 s, a kill every ~5 s (`make load`)
    .venv/bin/python bench/load.py --viewers 5 --seconds 20 --churn-every 3 --seed 42 --content full

The desktop is ``impromptu vdisplay run`` at 1280x720@30 showing FFmpeg's testsrc2 in a 640x360 window, or full
screen with ``--content full`` (bench.desktop.run_desktop: loopback only). The viewers are ``impromptu probe``
processes, each receiving for the rest of the run after its first keyframe and printing one JSON report when
done. Every ``--churn-every`` seconds on average (the gaps are drawn at random, seeded; the seed is printed) a
random viewer is killed with SIGKILL, so it says nothing and its connection is left to time out on the desktop,
and a new viewer joins for the time that remains. The desktop's RSS (VmRSS of the desktop process itself) is
sampled every second.

Three verdicts, and the exit status is 1 if any fails:

1. frames: every viewer that ran to the end reports ok (a keyframe, no protocol violations) and lost == 0: each
   frame it missed after its first keyframe is one the desktop said it skipped for that viewer's backpressure
   (docs/protocol.md §6). A viewer that exited on its own without a report fails this too.
2. memory: no growth trend. Between the moment every first viewer was receiving and the end of the run, the
   highest RSS of the second half stays within ``RSS_MARGIN_MIB`` of the highest of the first half (which holds
   the joins and the first kills).
3. joining: every viewer that reported saw its first keyframe within ``FIRST_KEYFRAME_TARGET_S`` of its channels
   opening (late joiners see a picture within a second).

A killed viewer's connection lingers on the desktop until ICE consent fails (about 30 s), and the desktop accepts
32 viewers at most, so churning much faster than one kill per 2-3 s would get joins refused: that is the cap
working, not a failure of the fan-out.

Not part of ``make test`` or ``make bench``: it takes a minute and a bit and saturates a small machine (on 2
cores, 20 aiortc viewers and the desktop compete for the CPU; the load average and other processes' CPU are
reported with the results). Results go to bench/results/load.json.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script (bench/load.py): import the benchmarks as the `bench` package, from the repository root.
_REPO = Path(__file__).resolve().parent.parent
if sys.path and Path(sys.path[0]).resolve() == _REPO / "bench":
    sys.path[0] = str(_REPO)

import argparse  # noqa: E402
import contextlib  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import subprocess  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import Any  # noqa: E402

from bench.common import (  # noqa: E402
    CLK_TCK,
    REPO,
    CpuMeter,
    ReportingProcess,
    ffplay_testsrc2,
    fmt,
    install_signal_handlers,
    log,
    median,
    own_ticks,
    size_name,
    stop_process,
    table,
)
from bench.desktop import Desktop, run_desktop  # noqa: E402

SIZE = (1280, 720)
VIEWERS = 20
SECONDS = 60.0
CHURN_EVERY_S = 5.0
MIN_REJOIN_S = 5.0
"""No kill once less than this remains: the viewer joining in its place would have nothing to measure."""
MIN_KILL_AGE_S = 3.0
"""Only viewers running at least this long are killed: a younger one may still be importing aiortc, and killing
it would cost the desktop nothing."""
RSS_SAMPLE_S = 1.0
RSS_MARGIN_MIB = 32.0
LOADED_SHARE = 0.75
"""The memory verdict is inconclusive when the second half had fewer viewers receiving than this share of the
first half's (say, because connections failed): no growth then proves nothing."""
FIRST_KEYFRAME_TARGET_S = 1.0
COLLECT_TIMEOUT_S = 60.0
"""Beyond the end of the run: a viewer's last join (up to the probe's 15 s connect + 10 s first-frame timeouts)
plus closing and printing its report."""
STOP_TIMEOUT_S = 5.0
RESULTS = REPO / "bench" / "results" / "load.json"
PROBLEM_HEADERS = ["#", "kind", "start s", "got/asked s", "fps", "missed", "skipped", "lost", "undec.", "1st key s"]
PROBLEM_HEADERS += ["problem"]


# ---- viewers ----


VIEWER_NICENESS = 10
"""The viewers stand in for other machines: on this one they run below the desktop's priority, so that twenty of
them compete with each other for what the desktop leaves, rather than starving the desktop they measure."""


class Viewer(ReportingProcess):
    """One ``impromptu probe`` process: its report, when the report arrived, and whether we killed it."""

    def __init__(self, index: int, url: str, seconds: float, replaces: int | None) -> None:
        command = [
            "nice", "-n", str(VIEWER_NICENESS), sys.executable, "-m", "impromptu", "probe", url,
            "--seconds", f"{seconds:.1f}", "--json", "--ice-address", "127.0.0.1",
        ]  # fmt: skip
        super().__init__(command, name=f"load-viewer-{index}")
        self.index = index
        self.seconds = seconds
        self.replaces = replaces
        self.killed_at: float | None = None
        self.timed_out = False

    @property
    def kind(self) -> str:
        return "initial" if self.replaces is None else "rejoined"

    def alive(self) -> bool:
        return self.proc.poll() is None

    @property
    def killed(self) -> bool:
        """Killed by the churn before it reported (a kill racing with its own exit after a report does not count)."""
        return self.killed_at is not None and self.result is None

    def kill(self) -> None:
        """SIGKILL: the probe prints nothing and closes nothing, as a crashed or frozen-then-killed viewer."""
        self.killed_at = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        self.proc.wait(STOP_TIMEOUT_S)  # SIGKILL cannot be ignored: this returns at once

    def wait(self, deadline: float) -> None:
        """Until it exits on its own, or ``deadline`` (then it counts as timed out and is stopped)."""
        try:
            self.proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.timed_out = True
        self.stop()

    def stop(self) -> None:
        """Idempotent: SIGTERM (SIGKILL if it lingers) while running; then the pipe closes once the reader is done
        with it, so a report printed just before the end is not lost."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(STOP_TIMEOUT_S)
        if self.proc.poll() is not None:
            self.join_reader(STOP_TIMEOUT_S)
        stop_process(self.proc, timeout=STOP_TIMEOUT_S)

    @property
    def status(self) -> str:
        if self.result is not None:
            return "done"
        if self.killed_at is not None:
            return "killed"
        return "timed out" if self.timed_out else "no report"

    def record(self, t0: float) -> dict[str, Any]:
        def rel(at: float | None) -> float | None:
            return None if at is None else round(at - t0, 3)

        return {
            "index": self.index,
            "kind": self.kind,
            "replaces": self.replaces,
            "seconds_asked": self.seconds,
            "started_s": rel(self.started_at),
            "killed_s": rel(self.killed_at),
            "result_s": rel(self.result_at),
            "status": self.status,
            "exit_status": self.proc.returncode,
            "result": self.result,
            "output_tail": list(self.tail) if self.result is None or not self.result.get("ok") else [],
        }


# ---- the desktop's memory, the machine's UDP counters ----


def vm_rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    return None


def udp_socket_drops() -> dict[int, int]:
    """Datagrams each UDP socket dropped (its receive buffer was full), by socket inode, from /proc/net/udp{,6}."""
    drops: dict[int, int] = {}
    for name in ("udp", "udp6"):
        try:
            lines = Path(f"/proc/net/{name}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            # sl local rem st tx:rx tr:when retrnsmt uid timeout inode ref pointer drops
            if len(fields) >= 13 and fields[9].isdigit() and fields[12].isdigit():
                drops[int(fields[9])] = int(fields[12])
    return drops


def socket_inodes(pid: int) -> set[int]:
    found = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    found.add(int(target[8:-1]))
    return found


class Sampler:
    """Every ``RSS_SAMPLE_S``, in a thread: the desktop's VmRSS as (monotonic time, MiB), and every UDP socket's
    drop count, attributed to the desktop or to a viewer by which process holds the socket. The kernel's own
    counters (/proc/net/snmp) cannot say whose receive buffer overflowed; this can, to within a second (a socket
    closed between two samples keeps the count of the last)."""

    def __init__(self, desktop_pid: int, viewer_pids: Callable[[], list[int]]) -> None:
        self.desktop_pid = desktop_pid
        self._viewer_pids = viewer_pids
        self.rss: list[tuple[float, float]] = []
        self.drops: dict[int, int] = {}
        self._owner: dict[int, str] = {}
        self._first_drops: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="load-sampler", daemon=True)

    def __enter__(self) -> Sampler:
        self._first_drops = udp_socket_drops()  # sockets that existed before: count only what they drop from now
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while True:
            self._sample()
            if self._stop.wait(RSS_SAMPLE_S):
                return

    def _sample(self) -> None:
        rss = vm_rss_mib(self.desktop_pid)
        if rss is not None:
            self.rss.append((time.monotonic(), rss))
        for inode in socket_inodes(self.desktop_pid):
            self._owner.setdefault(inode, "desktop")
        for pid in self._viewer_pids():
            for inode in socket_inodes(pid):
                self._owner.setdefault(inode, "viewers")
        for inode, drops in udp_socket_drops().items():
            self.drops[inode] = drops - self._first_drops.get(inode, 0)

    def drops_by_owner(self) -> dict[str, int]:
        """Datagrams dropped for full receive buffers: at the desktop's sockets, the viewers', and others'."""
        out = {"desktop": 0, "viewers": 0, "other": 0}
        for inode, drops in self.drops.items():
            out[self._owner.get(inode, "other")] += drops
        return out


def udp_counters() -> dict[str, int]:
    """The Udp line of /proc/net/snmp (this network namespace, every process: others' traffic counts too)."""
    try:
        rows = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines() if line.startswith("Udp:")]
        return {name: int(value) for name, value in zip(rows[0][1:], rows[1][1:], strict=True)}
    except (OSError, IndexError, ValueError):
        return {}


def load_average() -> tuple[float, float, float]:
    try:
        return os.getloadavg()
    except OSError:
        return (math.nan, math.nan, math.nan)


@dataclass
class RssSummary:
    start: float | None = None
    """The first sample once every initial viewer was receiving."""
    first_half_max: float | None = None
    second_half_max: float | None = None
    max: float | None = None
    end: float | None = None
    """The last sample before the end of the run."""
    after: float | None = None
    """The last sample of all, once every viewer had finished."""
    trend_mib_per_min: float | None = None
    """Least-squares slope over the window."""
    viewers_first_half: float | None = None
    viewers_second_half: float | None = None
    """Median number of viewers receiving at the samples of each half."""
    bounded: bool | None = None
    """``None``: inconclusive (too few samples, or the second half had too few viewers to load the desktop)."""
    samples: int = 0


def summarize_rss(
    samples: Sequence[tuple[float, float]], start: float, end: float, spans: Sequence[tuple[float, float]]
) -> RssSummary:
    """RSS over [start, end]; ``spans`` are when each viewer was receiving, to tell whether the second half
    carried the load of the first: a second half with most viewers gone says nothing about growth."""
    out = RssSummary()
    if samples:
        out.after = samples[-1][1]
    inside = [(t, r) for t, r in samples if start <= t <= end]
    out.samples = len(inside)
    if len(inside) < 4:
        return out
    mid = (start + end) / 2
    first = [r for t, r in inside if t < mid]
    second = [r for t, r in inside if t >= mid]
    out.start, out.end = inside[0][1], inside[-1][1]
    out.max = max(r for _, r in inside)
    out.first_half_max, out.second_half_max = max(first), max(second)

    def receiving(t: float) -> int:
        return sum(a <= t <= b for a, b in spans)

    out.viewers_first_half = median([receiving(t) for t, _ in inside if t < mid])
    out.viewers_second_half = median([receiving(t) for t, _ in inside if t >= mid])
    if out.viewers_second_half >= LOADED_SHARE * out.viewers_first_half:
        out.bounded = out.second_half_max <= out.first_half_max + RSS_MARGIN_MIB
    mean_t = sum(t for t, _ in inside) / len(inside)
    mean_r = sum(r for _, r in inside) / len(inside)
    var_t = sum((t - mean_t) ** 2 for t, _ in inside)
    if var_t > 0:
        out.trend_mib_per_min = 60 * sum((t - mean_t) * (r - mean_r) for t, r in inside) / var_t
    return out


# ---- the run ----


@dataclass
class Run:
    viewers: list[Viewer] = field(default_factory=list)
    t0: float = 0.0
    """When the first viewers were started."""
    deadline: float = 0.0
    """``t0`` + seconds: the end of churn; every viewer still running was receiving then."""
    cpu: dict[str, float] = field(default_factory=dict)
    cpu_seconds: float = 0.0
    rss_samples: list[tuple[float, float]] = field(default_factory=list)
    udp_before: dict[str, int] = field(default_factory=dict)
    udp_after: dict[str, int] = field(default_factory=dict)
    udp_drops: dict[str, int] = field(default_factory=dict)
    """Datagrams dropped for a full receive buffer, by who held the socket (see ``Sampler``)."""
    load_before: tuple[float, float, float] = (math.nan, math.nan, math.nan)
    load_after: tuple[float, float, float] = (math.nan, math.nan, math.nan)
    desktop_output: list[str] = field(default_factory=list)
    churn: list[dict[str, Any]] = field(default_factory=list)


def pause_until(desktop: Desktop, until: float) -> None:
    """Wait for the next point of the schedule, or for the desktop to exit (which ends the run at once)."""
    try:
        code = desktop.proc.wait(max(0.0, until - time.monotonic()))
    except subprocess.TimeoutExpired:
        return
    raise RuntimeError(f"the desktop exited with status {code} during the run: {' | '.join(desktop.output)}")


def churn_once(run: Run, desktop: Desktop, rng: random.Random) -> None:
    now = time.monotonic()
    candidates = [
        v
        for v in run.viewers
        if v.killed_at is None and v.result is None and v.alive() and now - v.started_at >= MIN_KILL_AGE_S
    ]
    if not candidates:
        log(f"  {now - run.t0:5.1f} s: no viewer old enough to kill; skipping this round")
        return
    victim = rng.choice(candidates)
    victim.kill()
    remaining = run.deadline - time.monotonic()
    joiner = Viewer(len(run.viewers), desktop.url, remaining, replaces=victim.index)
    run.viewers.append(joiner)
    run.churn.append(
        {"at_s": round(now - run.t0, 3), "killed": victim.index, "age_s": round(now - victim.started_at, 1),
         "joined": joiner.index, "seconds": round(remaining, 1)}
    )  # fmt: skip
    log(f"  {now - run.t0:5.1f} s: killed viewer {victim.index} (running {now - victim.started_at:.0f} s); "
        f"viewer {joiner.index} joins for {remaining:.1f} s")  # fmt: skip


def execute(run: Run, desktop: Desktop, viewers: int, seconds: float, churn_every: float, rng: random.Random) -> None:
    children = [pid for pids in desktop.children().values() for pid in pids]
    meter = CpuMeter({"desktop": [desktop.pid], "display+app": children})
    run.udp_before, run.load_before = udp_counters(), load_average()
    with Sampler(desktop.pid, lambda: [v.pid for v in list(run.viewers) if v.proc.returncode is None]) as sampler:
        own_before = own_ticks()
        meter.start()
        run.t0 = time.monotonic()
        run.deadline = run.t0 + seconds
        run.viewers = [Viewer(i, desktop.url, seconds, replaces=None) for i in range(viewers)]
        log(f"{viewers} viewers started; churning until {max(0.0, seconds - MIN_REJOIN_S):.0f} s")
        if churn_every > 0:
            next_kill = run.t0 + rng.uniform(0.5, 1.5) * churn_every
            while next_kill <= run.deadline - MIN_REJOIN_S:
                pause_until(desktop, next_kill)
                churn_once(run, desktop, rng)
                next_kill += rng.uniform(0.5, 1.5) * churn_every
        pause_until(desktop, run.deadline)
        run.cpu = meter.stop()
        run.cpu_seconds = meter.seconds
        # Everything this script started, minus the desktop and its children: the viewers (and this script).
        own = 100.0 * (own_ticks() - own_before) / CLK_TCK / meter.seconds
        run.cpu["viewers"] = max(0.0, own - run.cpu["desktop"] - run.cpu["display+app"])
        log(f"{seconds:.0f} s up: collecting reports")
        collect_by = time.monotonic() + COLLECT_TIMEOUT_S
        for v in run.viewers:
            v.wait(collect_by)
        run.udp_after, run.load_after = udp_counters(), load_average()
        if not desktop.alive():
            raise RuntimeError(f"the desktop exited during the run: {' | '.join(desktop.output)}")
    run.rss_samples = sampler.rss
    run.udp_drops = sampler.drops_by_owner()
    # Lines the desktop printed besides its links (whose fragments hold the keys): warnings, refused joins.
    run.desktop_output = [line for line in desktop.output if "link:" not in line]


# ---- the report ----


def joined_at(run: Run) -> float:
    """When every first viewer was receiving: each report's arrival minus its measured seconds (a report is printed
    after closing, so this errs late). Viewers killed before reporting are not known; without any report, ``t0``."""
    starts = [
        v.result_at - float(v.result.get("seconds") or 0.0)
        for v in run.viewers
        if v.replaces is None and v.result is not None and v.result_at is not None
    ]
    return min(max(starts), run.deadline) if starts else run.t0


def receiving_spans(run: Run) -> list[tuple[float, float]]:
    """When each viewer was receiving: a report covers its measured seconds up to its arrival; a killed viewer, from
    its start (joining included, so this errs early) to its kill."""
    spans = []
    for v in run.viewers:
        if v.result is not None and v.result_at is not None:
            spans.append((v.result_at - float(v.result.get("seconds") or 0.0), v.result_at))
        elif v.killed_at is not None:
            spans.append((v.started_at, v.killed_at))
    return spans


def viewer_problems(v: Viewer) -> list[str]:
    if v.killed:
        return []
    r = v.result
    if r is None:
        return [v.status]
    problems = []
    if not r.get("ok"):
        problems.append(str(r.get("error") or f"{r.get('violation_count')} violations"))
    if (r.get("lost") or 0) > 0:
        problems.append(f"lost {r['lost']}")
    key = r.get("first_keyframe_s")
    if key is not None and key > FIRST_KEYFRAME_TARGET_S:
        problems.append(f"first keyframe after {key:.2f} s")
    return problems


def group_row(label: str, group: Sequence[Viewer]) -> list[str]:
    done = [v.result for v in group if v.result is not None]
    fps = [float(r.get("fps") or 0.0) for r in done]
    sent = [(int(r.get("frames") or 0) + int(r.get("missed") or 0)) / r["seconds"] for r in done if r.get("seconds")]
    keys = [float(r["first_keyframe_s"]) for r in done if r.get("first_keyframe_s") is not None]

    def total(name: str) -> str:
        return str(sum(int(r.get(name) or 0) for r in done)) if done else "—"

    return [
        label,
        str(len(group)),
        str(sum(v.killed for v in group)),
        str(len(done)),
        str(sum(not v.killed and v.result is None for v in group)),
        str(sum(not r.get("ok") for r in done)),
        fmt(median(fps)),
        fmt(min(fps)) if fps else "—",
        fmt(median(sent)),
        total("missed"),
        total("skipped"),
        total("lost"),
        total("undecodable"),
        fmt(median(keys), 2),
        fmt(max(keys), 2) if keys else "—",
        total("violation_count"),
    ]


def mib(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} MiB"


def render(run: Run, rss: RssSummary, args: argparse.Namespace, join_s: float) -> str:
    initial = [v for v in run.viewers if v.replaces is None]
    rejoined = [v for v in run.viewers if v.replaces is not None]
    headers = ["viewers", "started", "killed", "done", "no report", "not ok", "fps med", "fps min", "seq fps"]
    headers += ["missed"]
    churn = f"a kill every ~{args.churn_every:g} s" if args.churn_every > 0 else "no churn"
    headers += ["skipped", "lost", "undecodable", "1st key med s", "1st key max s", "violations"]
    out = [
        table(
            f"Load: {args.viewers} viewers for {args.seconds:.0f} s on {size_name(SIZE)}@30 "
            f"(testsrc2 {'full screen' if args.content == 'full' else 'in a 640x360 window'}), {churn} "
            f"(seed {args.seed})",
            headers,
            [group_row("initial", initial), group_row("rejoined", rejoined), group_row("all", run.viewers)],
            [
                "done: ran to the end and reported; killed: SIGKILLed by the churn (they report nothing); no report: "
                "exited on their own or timed out without one.",
                "missed: frames absent after a viewer's first keyframe; skipped: of those, the ones the desktop said "
                "it skipped for that viewer's backpressure; lost = missed - skipped.",
                "seq fps: median of the frame numbers per second a viewer saw go by (received + missed): the "
                "desktop's encode rate, less any backlog still queued for the viewer when it ended.",
                "undecodable: frames received after a loss before the next keyframe. 1st key: from the channels "
                "opening to the first complete keyframe.",
            ],
            align="l" + "r" * (len(headers) - 1),
        )
    ]
    problems = [(v, p) for v in run.viewers if (p := viewer_problems(v))]
    if problems:
        rows = []
        for v, p in problems:
            r = v.result or {}
            rows.append(
                [str(v.index), v.kind, fmt(v.started_at - run.t0), f"{fmt(r.get('seconds'))}/{v.seconds:.0f}",
                 fmt(float(r.get("fps") or 0.0)),
                 *(str(r.get(k, "—")) for k in ("missed", "skipped", "lost", "undecodable")),
                 fmt(r.get("first_keyframe_s"), 2), "; ".join(p)[:90]]
            )  # fmt: skip
        out.append(
            table(
                "Viewers that failed a check",
                PROBLEM_HEADERS,
                rows,
                align="ll" + "r" * 8 + "l",
            )
        )
    udp = {k: run.udp_after.get(k, 0) - run.udp_before.get(k, 0) for k in run.udp_after}
    cpu, trend = run.cpu, rss.trend_mib_per_min
    rows = [
        ["RSS once all first viewers received", mib(rss.start)],
        ["RSS max, first half / second half", f"{mib(rss.first_half_max)} / {mib(rss.second_half_max)}"],
        ["RSS max / at the end of the run", f"{mib(rss.max)} / {mib(rss.end)}"],
        ["viewers receiving, first / second half", f"{fmt(rss.viewers_first_half)} / {fmt(rss.viewers_second_half)}"],
        ["RSS after every viewer finished", mib(rss.after)],
        ["RSS trend over the window", "—" if trend is None else f"{trend:+.1f} MiB/min"],
        ["desktop CPU (% of one core)", fmt(cpu.get("desktop"))],
        ["Xvfb + ffplay CPU", fmt(cpu.get("display+app"))],
        ["viewers (and this script) CPU", fmt(cpu.get("viewers"))],
        ["other processes CPU", fmt(cpu.get("foreign"))],
        ["machine CPU (all cores)", fmt(cpu.get("machine"))],
        ["load average before / after", f"{fmt(run.load_before[0], 2)} / {fmt(run.load_after[0], 2)}"],
        ["UDP datagrams received", str(udp.get("InDatagrams", "—"))],
        ["UDP receive-buffer overflows (RcvbufErrors)", str(udp.get("RcvbufErrors", "—"))],
        [
            "  of which at the desktop / viewers / others",
            " / ".join(str(run.udp_drops.get(k, "—")) for k in ("desktop", "viewers", "other")),
        ],
    ]
    out.append(
        table(
            "Desktop and machine",
            ["measure", "value"],
            rows,
            [
                f"RSS: VmRSS of the desktop process, every {RSS_SAMPLE_S:g} s; window from {join_s:.1f} s (every "
                f"first viewer receiving) to {args.seconds:.0f} s, {rss.samples} samples.",
                f"CPU over 0-{run.cpu_seconds:.0f} s, joins included, on {os.cpu_count()} cores. UDP counters are "
                "the machine's (anyone's traffic), from before the first join to after the last report; the split, "
                "from each socket's drop count in /proc/net/udp and who held it.",
            ],
        )
    )
    return "\n\n".join(out)


def verdicts(run: Run, rss: RssSummary) -> list[tuple[str, bool | None, str]]:
    finished = [v for v in run.viewers if not v.killed]
    done = [v.result for v in finished if v.result is not None]
    missing = len(finished) - len(done)
    not_ok = sum(not r.get("ok") for r in done)
    lost = sum(int(r.get("lost") or 0) for r in done)
    lossy = sum(int(r.get("lost") or 0) > 0 for r in done)
    frames_ok = bool(done) and missing == 0 and not_ok == 0 and lost == 0
    errors = Counter(str(r.get("error") or f"{r.get('violation_count')} violations") for r in done if not r.get("ok"))
    said = "; ".join(f"{n}x {error}" for error, n in errors.most_common(3))
    frames_text = (
        f"{len(done)} viewers reported, {missing} without a report, {not_ok} not ok{f' ({said})' if said else ''}, "
        f"{lost} frames lost (not skipped for backpressure) at {lossy} viewers"
    )
    rss_ok = rss.bounded
    rss_text = (
        f"second-half max {mib(rss.second_half_max)} vs first-half max {mib(rss.first_half_max)} "
        f"+ {RSS_MARGIN_MIB:.0f} MiB, with {fmt(rss.viewers_second_half)} vs {fmt(rss.viewers_first_half)} viewers "
        "receiving"
    )
    if rss.second_half_max is None:
        rss_text = f"too few RSS samples in the window ({rss.samples})"
    elif rss_ok is None:
        rss_text = f"inconclusive, too few viewers left to load the desktop: {rss_text}"
    keys = [r.get("first_keyframe_s") for r in done]
    known = [float(k) for k in keys if k is not None]
    slow = sum(k > FIRST_KEYFRAME_TARGET_S for k in known)
    key_ok = bool(known) and len(known) == len(keys) and slow == 0 and missing == 0

    def max_key(kind: str) -> str:
        found = [v.result.get("first_keyframe_s") for v in finished if v.kind == kind and v.result is not None]
        times = [float(k) for k in found if k is not None]
        return fmt(max(times), 2) if times else "—"

    key_text = (
        f"max {fmt(max(known), 2) if known else '—'} s over {len(known)} viewers "
        f"(initial {max_key('initial')}, rejoined {max_key('rejoined')})"
        f"{f', {len(keys) - len(known)} without a keyframe' if len(keys) > len(known) else ''}"
        f"{f', {slow} over {FIRST_KEYFRAME_TARGET_S:g} s' if slow else ''}"
    )
    return [
        ("frames: each viewer got every frame but those skipped for its backpressure", frames_ok, frames_text),
        ("memory: desktop RSS bounded (no growth in the second half)", rss_ok, rss_text),
        (f"joining: first keyframe within {FIRST_KEYFRAME_TARGET_S:g} s for every viewer", key_ok, key_text),
    ]


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--viewers", type=int, default=VIEWERS, help=f"viewers at once (default {VIEWERS})")
    parser.add_argument("--seconds", type=float, default=SECONDS, help=f"length of the run (default {SECONDS:g})")
    parser.add_argument(
        "--churn-every",
        type=float,
        default=CHURN_EVERY_S,
        metavar="S",
        help=f"kill one viewer and start another every S seconds on average; 0: no churn (default {CHURN_EVERY_S:g})",
    )
    parser.add_argument(
        "--content",
        choices=("window", "full"),
        default="window",
        help="what moves: a 640x360 video in a window (default) or the whole screen",
    )
    parser.add_argument("--seed", type=int, default=None, help="seed of the churn's randomness (default: a new one)")
    parser.add_argument("--json", type=Path, default=RESULTS, help=f"where to write results (default: {RESULTS})")
    args = parser.parse_args(argv)
    if args.viewers < 1:
        parser.error("--viewers must be at least 1")
    if args.seconds <= MIN_REJOIN_S:
        parser.error(f"--seconds must be more than {MIN_REJOIN_S:g}")
    if args.churn_every < 0:
        parser.error("--churn-every must be 0 or more")
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(2**31)
    return args


def moving_content(content: str) -> list[str]:
    """What moves on the 1280x720 desktop: by default a 640x360 video (FFmpeg's testsrc2) playing in a window, the
    rest of the screen still, as when a desktop shows a video or an animation (about 2 Mbit/s); ``full``: the
    pattern over the whole screen, every pixel changing every frame (about 7 Mbit/s, the fan-out benchmark's worst
    case, more than twenty Python viewers on two shared cores can take in)."""
    if content == "full":
        return ffplay_testsrc2(SIZE)
    return ffplay_testsrc2((SIZE[0] // 2, SIZE[1] // 2))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    install_signal_handlers()
    rng = random.Random(args.seed)
    started = time.monotonic()
    log(f"load: seed {args.seed} (rerun the same churn with --seed {args.seed}); "
        f"load average {' '.join(fmt(x, 2) for x in load_average())}")  # fmt: skip
    run = Run()
    try:
        with run_desktop(SIZE, moving_content(args.content)) as desktop:
            log(f"desktop {size_name(SIZE)}@30 up (pid {desktop.pid}, RSS {mib(vm_rss_mib(desktop.pid))})")
            try:
                execute(run, desktop, args.viewers, args.seconds, args.churn_every, rng)
            finally:
                for v in run.viewers:
                    v.stop()
    except KeyboardInterrupt:
        log("interrupted: stopped everything it started")
        return 130
    except RuntimeError as exc:
        log(f"load: {exc}")
        return 2

    join = joined_at(run)
    rss = summarize_rss(run.rss_samples, join, run.deadline, receiving_spans(run))
    print(render(run, rss, args, join - run.t0), flush=True)
    results = verdicts(run, rss)
    print()
    for name, ok, text in results:
        print(f"{'INCONCLUSIVE' if ok is None else 'PASS' if ok else 'FAIL'}  {name}: {text}")
    if run.desktop_output:
        print("\nThe desktop said:\n" + "\n".join(f"  {line}" for line in run.desktop_output[-10:]))
    document = {
        "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "config": {
            "size": size_name(SIZE),
            "viewers": args.viewers,
            "seconds": args.seconds,
            "churn_every_s": args.churn_every,
            "seed": args.seed,
            "cores": os.cpu_count(),
        },
        "joined_s": join - run.t0,
        "verdicts": [{"check": name, "ok": ok, "detail": text} for name, ok, text in results],
        "rss_mib": vars(rss),
        "rss_samples": [(round(t - run.t0, 2), round(r, 2)) for t, r in run.rss_samples],
        "cpu_pct": run.cpu,
        "cpu_seconds": run.cpu_seconds,
        "load_average": {"before": run.load_before, "after": run.load_after},
        "udp": {"before": run.udp_before, "after": run.udp_after, "drops_by_owner": run.udp_drops},
        "churn": run.churn,
        "viewers": [v.record(run.t0) for v in run.viewers],
        "desktop_output": run.desktop_output,
        "seconds": time.monotonic() - started,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(_json_safe(document), indent=2, allow_nan=False) + "\n")
    print(f"\nresults in {args.json}", flush=True)
    return 0 if all(ok is True for _, ok, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
