"""What ``--record`` costs: the desktop's CPU and the bytes it writes, with and without a recording, side by side.

    .venv/bin/python bench/record.py            # 3 runs of ~10 s per scenario (also `bench/run.py --only record`)
    .venv/bin/python bench/record.py --quick    # 1 run of ~4 s per scenario

One ``impromptu vdisplay run`` at 1280x720 with FFmpeg's moving testsrc2 pattern (30 fps), in three scenarios:

(a) viewer: one headless viewer (``impromptu probe``), no recording — the baseline;
(b) viewer + record: the same, with ``--record FILE.mp4``;
(c) record only: ``--record`` and no viewer (the recording alone makes the surface encode).

Figures, medians over the runs: the desktop process's CPU (utime+stime of all its threads, % of one core) over
the measurement window; the stream's rate as the viewer received it (Mbit/s); the recording's rate (its size over
its duration, Mbit/s); and their ratios to (a). A recording muxes the very packets viewers get, so its rate is
the stream's (plus the periodic keyframes a recording asks for while nothing else does) and its CPU is the muxing
alone: no second encode.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script (bench/record.py): import the benchmarks as the `bench` package, from the repository root.
_REPO = Path(__file__).resolve().parent.parent
if sys.path and Path(sys.path[0]).resolve() == _REPO / "bench":
    sys.path[0] = str(_REPO)

import argparse  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

from bench.common import CpuMeter, Receiver, ffplay_testsrc2, fmt, log, table  # noqa: E402
from bench.desktop import run_desktop  # noqa: E402

SIZE = (1280, 720)
WARMUP_S = 2.0
SCENARIOS = ("viewer", "viewer + record", "record only")
HEADERS = ["scenario", "desktop %", "x (a)", "viewer fps", "viewer Mbit/s", "record fps", "record Mbit/s"]
HEADERS += ["record/viewer", "runs"]


def _file_rate(path: Path) -> tuple[float, float, float]:
    """A recording's duration (s), rate (Mbit/s) and frames per second."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        end = start = None
        frames = 0
        for packet in container.demux(stream):
            if packet.pts is None:
                continue
            frames += 1
            t = float(packet.pts * stream.time_base)
            start = t if start is None else min(start, t)
            end = t if end is None else max(end, t)
    duration = (end or 0.0) - (start or 0.0)
    if duration <= 0:
        return duration, 0.0, 0.0
    return duration, path.stat().st_size * 8 / duration / 1e6, frames / duration


def measure(scenario: str, seconds: float, folder: Path) -> dict[str, Any]:
    record = scenario != "viewer"
    path = folder / "run.mp4"
    options = ["--record", str(path)] if record else []
    result: dict[str, Any] = {"scenario": scenario}
    with run_desktop(SIZE, ffplay_testsrc2(SIZE), options=options) as desktop:
        receiver = None
        if scenario != "record only":
            probe = [sys.executable, "-m", "impromptu", "probe", desktop.url, "--json", "--ice-address", "127.0.0.1"]
            receiver = Receiver([*probe, "--seconds", f"{seconds + WARMUP_S + 1:g}"], name="record-probe")
        try:
            time.sleep(WARMUP_S)  # the viewer joined (or the recording started), the first keyframe sent
            meter = CpuMeter({"impromptu": [desktop.pid]}).start()
            time.sleep(seconds)
            result["cpu_pct"] = meter.stop()["impromptu"]
            if receiver is not None:
                report = receiver.wait(seconds + WARMUP_S + 30)
                result["viewer_mbps"] = report["bytes"] * 8 / report["seconds"] / 1e6
                result["viewer_fps"] = report["fps"]
        finally:
            if receiver is not None:
                receiver.stop()
        if not desktop.alive():
            raise RuntimeError(f"impromptu exited during the measurement: {' | '.join(desktop.output)}")
    if record:
        result["record_s"], result["record_mbps"], result["record_fps"] = _file_rate(path)
        path.unlink()
    return result


def run(quick: bool) -> list[dict[str, Any]]:
    seconds = 4.0 if quick else 10.0
    runs = 1 if quick else 3
    rows = []
    with tempfile.TemporaryDirectory(prefix="impromptu-bench-record-") as tmp:
        samples: dict[str, list[dict[str, Any]]] = {s: [] for s in SCENARIOS}
        for n in range(runs):  # scenarios interleaved, so a drift in the machine's load hits them alike
            for scenario in SCENARIOS:
                log(f"record: {scenario}, run {n + 1}/{runs}, {seconds:.0f} s of testsrc2 1280x720")
                samples[scenario].append(measure(scenario, seconds, Path(tmp)))
        for scenario in SCENARIOS:
            got = samples[scenario]

            def med(key: str, got: list[dict[str, Any]] = got) -> float | None:
                values = [r[key] for r in got if key in r]
                return statistics.median(values) if values else None

            rows.append(
                {
                    "scenario": scenario,
                    "runs": len(got),
                    "seconds": seconds,
                    "cpu_pct": med("cpu_pct"),
                    "viewer_mbps": med("viewer_mbps"),
                    "viewer_fps": med("viewer_fps"),
                    "record_fps": med("record_fps"),
                    "record_mbps": med("record_mbps"),
                    "cpu_runs": [r["cpu_pct"] for r in got],
                }
            )
    return rows


def render(rows: list[dict[str, Any]]) -> str:
    base = next((r["cpu_pct"] for r in rows if r["scenario"] == "viewer"), None)
    lines = []
    for label, r in zip("abc", rows, strict=False):
        cpu, viewer, rec = r["cpu_pct"], r["viewer_mbps"], r["record_mbps"]
        lines.append(
            [
                f"({label}) {r['scenario']}",
                fmt(cpu),
                fmt(cpu / base, 2) + "x" if cpu is not None and base else "—",
                fmt(r["viewer_fps"]),
                fmt(viewer, 2),
                fmt(r["record_fps"]),
                fmt(rec, 2),
                fmt(rec / viewer, 2) if rec is not None and viewer else "—",
                str(r["runs"]),
            ]
        )
    seconds = rows[0]["seconds"] if rows else 0
    return table(
        "Recording: desktop CPU and bytes, testsrc2 1280x720@30 (medians)",
        HEADERS,
        lines,
        [
            f"desktop %: utime+stime of the `impromptu vdisplay run` process over {seconds:.0f} s (% of one core); "
            "x (a): against the viewer alone.",
            "viewer fps, Mbit/s: what `impromptu probe` received; record fps, Mbit/s: the recording's frames and size "
            "over its duration",
            "(the whole run, start-up included).",
            "A recording muxes the packets viewers get (no second encode): what it adds is the muxing thread.",
        ],
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one short run per scenario")
    args = parser.parse_args(argv)
    print(render(run(args.quick)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
