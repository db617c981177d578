"""CPU of the desktop process while it streams to one Chromium viewer, and while an idle desktop is shared.

The figure is the desktop process's own utime+stime (all its threads) from /proc/PID/stat, as % of one core.
Xvfb and the app are its children and are reported separately, as is the viewer's Chromium, for context.
"""

from __future__ import annotations

import time
from typing import Any

from bench.common import SELKIES_CPU_PCT, CpuMeter, ffplay_testsrc2, fmt, log, size_name, table
from bench.desktop import Browsers, Desktop, frames_decoded, run_desktop, viewer
from bench.xdamage import DrawCounter

WARMUP_S = 3.0
IDLE_SETTLE_S = 3.0
HEADERS = ["scenario", "impromptu %", "Selkies %", "ratio", "app fps", "viewer fps", "ms/frame"]
HEADERS += ["Xvfb %", "app %", "chromium %", "other %"]


def _groups(desktop: Desktop, browsers: Browsers) -> dict[str, list[int]]:
    children = desktop.children()
    return {
        "impromptu": [desktop.pid],
        "Xvfb": children.get("Xvfb", []),
        "app": [pid for comm, pids in children.items() if comm != "Xvfb" for pid in pids],
        "chromium": browsers.chromium_pids(),
    }


def _measure(desktop: Desktop, browsers: Browsers, page: Any, seconds: float) -> dict[str, Any]:
    counter = DrawCounter(desktop.display)
    try:
        time.sleep(0.5)
        meter = CpuMeter(_groups(desktop, browsers))
        frames_before, draws_before = frames_decoded(page), counter.draws
        meter.start()
        time.sleep(seconds)
        percent = meter.stop()
        frames, draws = frames_decoded(page) - frames_before, counter.draws - draws_before
    finally:
        counter.close()
    if not desktop.alive():
        raise RuntimeError(f"impromptu exited during the measurement: {' | '.join(desktop.output)}")
    return {
        "seconds": meter.seconds,
        "cpu_pct": percent,
        "frames": frames,
        "fps": frames / meter.seconds,
        "app_fps": draws / meter.seconds,
    }


def run_streaming(sizes: tuple[tuple[int, int], ...], browsers: Browsers, quick: bool) -> list[dict[str, Any]]:
    seconds = 4.0 if quick else 15.0
    results = []
    for size in sizes:
        log(f"cpu {size_name(size)}: streaming testsrc2 to one viewer for {seconds:.0f} s")
        with run_desktop(size, ffplay_testsrc2(size)) as desktop, viewer(browsers, desktop.url) as page:
            time.sleep(WARMUP_S / 2 if quick else WARMUP_S)
            result = _measure(desktop, browsers, page, seconds)
        result["size"] = size_name(size)
        results.append(result)
    return results


def run_idle(browsers: Browsers, quick: bool) -> dict[str, Any]:
    seconds = 4.0 if quick else 10.0
    size = (1920, 1080)
    log(f"cpu idle: an xterm shared to one viewer, nothing changing, for {seconds:.0f} s")
    with run_desktop(size, ["xterm", "-geometry", "80x24+0+0"]) as desktop, viewer(browsers, desktop.url) as page:
        time.sleep(IDLE_SETTLE_S / 2 if quick else IDLE_SETTLE_S)  # the first keyframes, xterm drawing its prompt
        result = _measure(desktop, browsers, page, seconds)
    result["size"] = size_name(size)
    return result


def render(streaming: list[dict[str, Any]], idle: dict[str, Any] | None) -> str:
    rows = []
    for r in streaming:
        cpu = r["cpu_pct"]
        ref = SELKIES_CPU_PCT.get(r["size"])
        ratio = cpu["impromptu"] / ref if ref else None
        rows.append(
            [
                f"testsrc2 {r['size']}@30",
                fmt(cpu["impromptu"]),
                fmt(ref),
                fmt(ratio, 2) + "x" if ratio is not None else "—",
                fmt(r["app_fps"]),
                fmt(r["fps"]),
                fmt(cpu["impromptu"] * 10 / r["fps"]) if r["fps"] else "—",
                fmt(cpu["Xvfb"]),
                fmt(cpu["app"]),
                fmt(cpu["chromium"]),
                fmt(cpu["foreign"]),
            ]
        )
    if idle is not None:
        cpu = idle["cpu_pct"]
        rows.append(
            [
                f"idle xterm {idle['size']}",
                fmt(cpu["impromptu"], 2),
                "—",
                "—",
                fmt(idle["app_fps"]),
                f"{idle['frames']} fr",
                "—",
                fmt(cpu["Xvfb"], 2),
                fmt(cpu["app"], 2),
                fmt(cpu["chromium"]),
                fmt(cpu["foreign"]),
            ]
        )
    seconds = streaming[0]["seconds"] if streaming else idle["seconds"] if idle else 0
    return table(
        "CPU of the desktop process, one Chromium viewer (% of one core)",
        HEADERS,
        rows,
        [
            f"impromptu %: utime+stime of the `impromptu vdisplay run` process itself over ~{seconds:.0f} s; "
            "Xvfb, the app (ffplay/xterm) and the viewer",
            "(all Chromium processes) are measured separately, for context. app fps: pictures the app drew per "
            "second (DAMAGE bursts);",
            "viewer fps: frames the page decoded per second (idle: frames decoded in the window); ms/frame: the "
            "desktop's CPU time per frame the viewer got.",
            "The desktop encodes only the pictures the app draws: when the 2 cores are saturated ffplay draws "
            "fewer than 30 per second (Selkies encodes 30 regardless).",
            "other %: every other process on the machine (not started by the benchmark): above ~10 the figures "
            "are suspect.",
            "Selkies 2.1 (x264, 8 Mbps, WebSocket) measured on these machines with the same testsrc2 method.",
        ],
    )
