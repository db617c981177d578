"""Fan-out: what each extra viewer costs the desktop, impromptu's one encode against one encode per viewer.

The same moving content (ffplay's testsrc2) at 1280x720@30 and 1920x1080@30, to N = 1, 2, 3, 5 viewers:

(a) ``impromptu vdisplay run``: one capture, one encode, the same bytes on every viewer's DataChannel;
(b) ``bench/pertrack.py``: one capture, then per viewer an aiortc video track with its own encoder, the same
    libx264 settings (H.264, CRF 23 capped at 8 Mbit/s) — the usual way to serve a screen over WebRTC.

Viewers are lightweight headless aiortc receivers in their own processes, the same kind for both modes: they
receive and reassemble every frame and decode none (``impromptu probe`` for (a), ``bench/trackprobe.py`` for
(b)). Each counts frames for S seconds from its first keyframe and prints one JSON object when done.

The desktop's CPU (its own utime+stime from /proc, not Xvfb's or the app's) is taken over the window in which
every viewer was receiving, found afterwards: a sampler thread reads /proc every ``SAMPLE_S`` (bench.common)
during the run, and viewer i received from (its result's arrival − its S) to its result's arrival. So no viewer
has to announce its first keyframe while it runs (impromptu's probe only reports at exit), and no fixed delay
guesses when they have all joined. The window leaves out ``START_MARGIN_S`` after the last join (its keyframe)
and ``END_MARGIN_S`` before the first result (time to print it).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from bench.common import (
    FOREIGN_WARN_PCT,
    INTERRUPTED,
    SIZES,
    Receiver,
    Sampler,
    ffplay_testsrc2,
    fmt,
    log,
    median,
    receiving_spans,
    series_failures,
    size_name,
    table,
    wait_until_quiet,
)
from bench.desktop import Desktop, run_desktop, run_pertrack

MODES = ("impromptu", "pertrack")
MODE_LABELS = {"impromptu": "(a) impromptu", "pertrack": "(b) per-track"}
VIEWERS = (1, 2, 3, 5)
WINDOW_S = 15.0
QUICK_WINDOW_S = 4.0
START_MARGIN_S = 1.0
END_MARGIN_S = 1.0
JOIN_ALLOWANCE_S = 0.2
"""Per viewer: how much later than the first the last one may start receiving (they start at once, but each is a
Python process importing aiortc on a busy machine). Viewers receive this much longer, so the window stays
about ``WINDOW_S`` long; the window measured is reported either way."""
QUIET_WAIT_S = 5.0
QUICK_QUIET_WAIT_S = 3.0
RECEIVER_TIMEOUT_S = 45.0
"""Beyond its S seconds: joining (the receivers give up on a first keyframe after 20 s) and closing."""

HEADERS = ["size", "mode", "N", "desktop %", "x N=1", "fps min", "fps med", "Mbit/s", "a/b", "viewers %"]
HEADERS += ["Xvfb+app %", "other %", "window s"]
SCALING_TARGET = 1.25
VERSUS_TARGET = 1 / 3


# ---- viewers ----


def receiver_command(mode: str, url: str, seconds: float) -> list[str]:
    program = ["-m", "impromptu", "probe"] if mode == "impromptu" else ["-m", "bench.trackprobe"]
    return [sys.executable, *program, url, "--seconds", f"{seconds:g}", "--json", "--ice-address", "127.0.0.1"]


# ---- the two desktops ----


@contextmanager
def run_mode(mode: str, size: tuple[int, int]) -> Iterator[Desktop]:
    if mode == "impromptu":
        with run_desktop(size, ffplay_testsrc2(size)) as desktop:
            yield desktop
    else:
        with run_pertrack(size) as desktop:
            yield desktop


# ---- the benchmark ----


def measure(mode: str, desktop: Desktop, viewers: int, window_s: float) -> dict[str, Any]:
    """N viewers on ``desktop`` at once; the desktop's CPU while all of them were receiving."""
    seconds = window_s + START_MARGIN_S + END_MARGIN_S + JOIN_ALLOWANCE_S * viewers
    receivers: list[Receiver] = []
    try:
        with Sampler("fanout-sampler") as sampler:
            receivers = [
                Receiver(receiver_command(mode, desktop.url, seconds), name="fanout-receiver") for _ in range(viewers)
            ]
            results = [r.wait(seconds + RECEIVER_TIMEOUT_S) for r in receivers]
    finally:
        for r in receivers:
            r.stop()
    if not desktop.alive():
        raise RuntimeError(f"the desktop exited during the measurement: {' | '.join(desktop.output)}")
    spans = receiving_spans(receivers, results, seconds)
    start = max(s for s, _ in spans) + START_MARGIN_S
    end = min(e for _, e in spans) - END_MARGIN_S
    groups = {
        "desktop": [desktop.pid],
        "display+app": [pid for pids in desktop.children().values() for pid in pids],
        "viewers": [r.pid for r in receivers],
    }
    percent, covered = sampler.percent(start, end, groups)
    fps = [float(res["fps"]) for res in results]
    return {
        "mode": mode,
        "viewers": viewers,
        "seconds": covered,
        "receive_s": seconds,
        "join_spread_s": max(s for s, _ in spans) - min(s for s, _ in spans),
        "cpu_pct": percent,
        "viewer_fps": fps,
        "viewer_kbps": [float(res.get("bitrate_kbps", 0.0)) for res in results],
        "viewer_lost": [res.get("lost") for res in results],
        "viewer_first_keyframe_s": [res.get("first_keyframe_s") for res in results],
    }


def run(sizes: Sequence[tuple[int, int]] = SIZES, quick: bool = False) -> list[dict[str, Any]]:
    """Every size × mode × N; a mode that fails is recorded as failed and the other still runs."""
    window_s = QUICK_WINDOW_S if quick else WINDOW_S
    rows: list[dict[str, Any]] = []
    for size in sizes:
        for mode in MODES:
            log(f"fanout {size_name(size)} {MODE_LABELS[mode]}: {', '.join(map(str, VIEWERS))} viewers, "
                f"~{window_s:.0f} s each")  # fmt: skip
            done = 0
            try:
                with run_mode(mode, size) as desktop:
                    for viewers in VIEWERS:
                        # Someone else's burst of load spoils one row, not all: wait for it to pass (bounded).
                        wait_until_quiet(QUICK_QUIET_WAIT_S if quick else QUIET_WAIT_S, sample_s=0.5)
                        row = measure(mode, desktop, viewers, window_s)
                        row["size"] = size_name(size)
                        rows.append(row)
                        done += 1
                        log(f"  {viewers} viewer(s): desktop {row['cpu_pct']['desktop']:.1f} %, "
                            f"fps {' '.join(f'{f:.1f}' for f in row['viewer_fps'])}")  # fmt: skip
            except Exception as exc:  # recorded in the table and the summary; the next mode still runs
                if INTERRUPTED.is_set():
                    raise KeyboardInterrupt from exc
                error = f"{type(exc).__name__}: {exc}"
                log(f"fanout {size_name(size)} {MODE_LABELS[mode]} failed: {error}")
                for viewers in VIEWERS[done:]:
                    rows.append({"size": size_name(size), "mode": mode, "viewers": viewers, "error": error})
    return rows


def failures(rows: Sequence[dict[str, Any]]) -> dict[str, str]:
    """One line per size and mode that failed."""
    return series_failures(rows, "fanout", MODE_LABELS)


def _index(rows: Sequence[dict[str, Any]]) -> dict[tuple[str, str, int], dict[str, Any]]:
    return {(r["size"], r["mode"], r["viewers"]): r for r in rows if "error" not in r}


def render(rows: Sequence[dict[str, Any]]) -> str:
    index = _index(rows)
    out = []
    for r in rows:
        head = [r["size"], MODE_LABELS[r["mode"]], str(r["viewers"])]
        if "error" in r:
            out.append([*head, "failed", *["—"] * 9])
            continue
        cpu = r["cpu_pct"]
        one = index.get((r["size"], r["mode"], 1))
        ratio = cpu["desktop"] / one["cpu_pct"]["desktop"] if one and one["cpu_pct"]["desktop"] else None
        versus = "—"
        other = index.get((r["size"], "pertrack", r["viewers"]))
        if r["mode"] == "impromptu" and r["viewers"] == VIEWERS[-1] and other and other["cpu_pct"]["desktop"]:
            versus = fmt(cpu["desktop"] / other["cpu_pct"]["desktop"], 2) + "x"
        out.append(
            [
                *head,
                fmt(cpu["desktop"]),
                fmt(ratio, 2) + "x" if ratio is not None else "—",
                fmt(min(r["viewer_fps"])),
                fmt(median(r["viewer_fps"])),
                fmt(median(r["viewer_kbps"]) / 1000, 2),
                versus,
                fmt(cpu["viewers"]),
                fmt(cpu["display+app"]),
                fmt(cpu["foreign"]) + ("?" if cpu["foreign"] > FOREIGN_WARN_PCT else ""),
                fmt(r["seconds"]),
            ]
        )
    failed = failures(rows)
    return table(
        "Fan-out: desktop CPU against the number of viewers (% of one core)",
        HEADERS,
        out,
        [
            "(a) impromptu vdisplay run: one encode, DataChannels. (b) bench/pertrack.py: one aiortc video track "
            "and one libx264 encoder (same settings) per viewer.",
            "Viewers: headless aiortc receivers, one process each, reassembling frames without decoding them "
            "((a) `impromptu probe`, (b) bench/trackprobe.py).",
            "desktop %: utime+stime of the desktop process itself over the window in which every viewer was "
            "receiving (window s); x N=1: against its own 1 viewer.",
            "fps min/med: frames per second each viewer got (from its first keyframe on); Mbit/s: median per viewer; "
            "a/b: (a)'s desktop CPU over (b)'s at the same N.",
            "viewers %, Xvfb+app %: all viewer processes; Xvfb and ffplay. other %: processes the benchmark did not "
            f"start; ?: above {FOREIGN_WARN_PCT:.0f}, that row's figures are suspect.",
            "The viewers share the 2 cores with the desktop, Xvfb and ffplay: a desktop short of CPU drops frames, "
            "and fps shows it.",
            *(f"{name} failed: {error}" for name, error in failed.items()),
        ],
        align="lll" + "r" * 10,
    )


def summary_rows(rows: Sequence[dict[str, Any]], full_rate_fps: float) -> list[tuple[str, str, str, str, bool | None]]:
    """(target, goal, measured, reference, ok) for the run's summary: per size, impromptu's 5 viewers against
    its 1, and against (b)'s 5; each also needs every viewer at full rate."""
    index = _index(rows)
    n = VIEWERS[-1]
    out: list[tuple[str, str, str, str, bool | None]] = []
    for size in map(size_name, SIZES):
        a1, an = index.get((size, "impromptu", 1)), index.get((size, "impromptu", n))
        bn = index.get((size, "pertrack", n))
        a_fps = min(an["viewer_fps"]) if an else None
        rate = f"; slowest viewer {a_fps:.1f} fps" if a_fps is not None else ""
        if a1 and an and a1["cpu_pct"]["desktop"] > 0:
            ratio = an["cpu_pct"]["desktop"] / a1["cpu_pct"]["desktop"]
            measured = f"{an['cpu_pct']['desktop']:.1f} % vs {a1['cpu_pct']['desktop']:.1f} % ({ratio:.2f}x){rate}"
            ok: bool | None = ratio <= SCALING_TARGET and a_fps is not None and a_fps >= full_rate_fps
        else:
            measured, ok = "—", None
        out.append((f"fan-out {size}@30: impromptu, {n} viewers vs 1", f"≤ {SCALING_TARGET}x, all ≥ "
                    f"{full_rate_fps:.0f} fps", measured, "—", ok))  # fmt: skip
        if an and bn and bn["cpu_pct"]["desktop"] > 0:
            ratio = an["cpu_pct"]["desktop"] / bn["cpu_pct"]["desktop"]
            measured = f"{an['cpu_pct']['desktop']:.1f} % vs {bn['cpu_pct']['desktop']:.1f} % ({ratio:.2f}x){rate}"
            b_pct, b_fps = bn["cpu_pct"]["desktop"], median(bn["viewer_fps"])
            reference = f"(b) per-track: {b_pct:.0f} % at {b_fps:.0f} fps"
            if 0 < b_fps < full_rate_fps:
                # (b) could not keep up, so it spent less than full rate would cost: judged as measured (in its
                # favour); what 30 fps would cost at its CPU per frame, for context.
                reference += f" (x30/fps: {b_pct * 30 / b_fps:.0f} %)"
            ok = ratio <= VERSUS_TARGET and a_fps is not None and a_fps >= full_rate_fps
        else:
            measured, reference, ok = "—", "—", None
        out.append((f"fan-out {size}@30: impromptu vs per-viewer encoding, {n} viewers", "≤ 1/3 of (b), all ≥ "
                    f"{full_rate_fps:.0f} fps", measured, reference, ok))  # fmt: skip
    return out
