"""Run impromptu's benchmarks one after the other and print a table per benchmark, then a summary against the
issue's targets and the reference figures. Results also go to bench/results/latest.json.

    .venv/bin/python bench/run.py                 # everything, a few minutes (what `make bench` runs)
    .venv/bin/python bench/run.py --quick         # a smoke run, a few minutes
    .venv/bin/python bench/run.py --only g2g      # one benchmark (repeatable, or comma-separated)
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script (bench/run.py): import the benchmarks as the `bench` package, from the repository root.
_REPO = Path(__file__).resolve().parent.parent
if sys.path and Path(sys.path[0]).resolve() == _REPO / "bench":
    sys.path[0] = str(_REPO)

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

from bench import cpu, fanout, files, grab_encode, latency, record, relay  # noqa: E402
from bench.common import (  # noqa: E402
    FOREIGN_WARN_PCT,
    INTERRUPTED,
    REPO,
    SELKIES_CPU_PCT,
    SELKIES_G2G_MS,
    SIZES,
    CpuMeter,
    fmt,
    install_signal_handlers,
    log,
    table,
    wait_until_quiet,
)
from bench.desktop import Browsers  # noqa: E402

BENCHMARKS = ("grab", "cpu", "idle", "g2g", "fanout", "relay", "files", "record")
RESULTS = REPO / "bench" / "results" / "latest.json"

GRAB_TARGET_MS = 3.0
IDLE_TARGET_PCT = 2.0
CPU_TARGET_RATIO = 1.5
G2G_TARGET_MS = 30.0
FULL_RATE_FPS = 27
"""A viewer getting fewer frames per second than this did not get the 30 fps the CPU targets are about."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short measurement windows: a smoke run")
    parser.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help=f"run only these benchmarks ({', '.join(BENCHMARKS)}); repeatable or comma-separated",
    )
    parser.add_argument("--json", type=Path, default=RESULTS, help=f"where to write results (default: {RESULTS})")
    args = parser.parse_args(argv)
    chosen = [n.strip() for item in (args.only or list(BENCHMARKS)) for n in item.split(",") if n.strip()]
    unknown = sorted(set(chosen) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}: choose from {', '.join(BENCHMARKS)}")
    args.chosen = [n for n in BENCHMARKS if n in chosen]
    return args


def environment() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import av

    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "pyav": av.__version__,
    }


def verdict(ok: bool | None) -> str:
    return "—" if ok is None else "PASS" if ok else "MISS"


def summary(results: dict[str, Any], foreign: dict[str, float]) -> tuple[str, list[dict[str, Any]]]:
    rows: list[dict[str, Any]] = []

    def add(
        benchmark: str, target: str, goal: str, measured: str, reference: str, ok: bool | None, mark: str = ""
    ) -> None:
        busy = foreign.get(benchmark, 0.0) > FOREIGN_WARN_PCT
        rows.append(
            {
                "benchmark": benchmark,
                "target": target,
                "goal": goal,
                "measured": measured,
                "reference": reference,
                "ok": ok,
                "busy_machine": busy,
                "verdict": verdict(ok) + ("" if ok is None else mark + ("?" if busy else "")),
            }
        )

    grab = {r["size"]: r for r in results.get("grab", [])}
    g = grab.get("1920x1080")
    value = g["grab_ms"]["median"] if g else None
    add(
        "grab",
        "grab 1920x1080, median",
        f"≤ {GRAB_TARGET_MS:.0f} ms",
        f"{fmt(value, 2)} ms (quiet {fmt(g['quiet_grab_ms']['median'], 2)})" if g else "—",
        "—",
        None if value is None else value <= GRAB_TARGET_MS,
    )

    idle = results.get("idle")
    if idle:
        pct, frames = idle["cpu_pct"]["impromptu"], idle["frames"]
        measured, ok = f"{pct:.2f} %, {frames} frames", pct < IDLE_TARGET_PCT and frames == 0
    else:
        measured, ok = "—", None
    add("idle", "idle desktop CPU, frames encoded", f"< {IDLE_TARGET_PCT:.0f} %, 0 frames", measured, "—", ok)

    streaming = {r["size"]: r for r in results.get("cpu", [])}
    for size, ref in SELKIES_CPU_PCT.items():
        r = streaming.get(size)
        limit = ref * CPU_TARGET_RATIO
        mark = ""
        if r is None:
            measured, ok = "—", None
        else:
            pct, fps, app_fps = r["cpu_pct"]["impromptu"], r["fps"], r.get("app_fps", 0.0)
            measured = f"{pct:.1f} % ({pct / ref:.2f}x)"
            if 0 < fps < FULL_RATE_FPS:
                # The viewer got fewer frames than Selkies sends: say what 30 would cost at this CPU per frame.
                measured += f" at {fps:.0f} fps (app {app_fps:.0f}): {pct * 30 / fps:.0f} % per 30 fps"
                mark = "*"
            ok = pct <= limit
        add("cpu", f"streaming CPU {size}@30", f"≤ {limit:.0f} % ({CPU_TARGET_RATIO}x Selkies)", measured,
            f"Selkies {ref:.0f} %", ok, mark)  # fmt: skip

    g2g = {r["size"]: r for r in results.get("g2g", []) if not r.get("loaded")}
    r = g2g.get("1920x1080")
    med = r["g2g_ms"]["median"] if r else None
    add(
        "g2g",
        "glass-to-glass 1920x1080@30, median",
        f"≤ {G2G_TARGET_MS:.0f} ms",
        f"{med:.1f} ms (p95 {r['g2g_ms']['p95']:.1f})" if r and med is not None else "—",
        f"Selkies {SELKIES_G2G_MS[0]:.0f} ms (p95 {SELKIES_G2G_MS[1]:.0f})",
        None if med is None else med <= G2G_TARGET_MS,
    )

    for target, goal, measured, reference, ok in fanout.summary_rows(results.get("fanout", []), FULL_RATE_FPS):
        add("fanout", target, goal, measured, reference, ok)
    for target, goal, measured, reference, ok in relay.summary_rows(results.get("relay", [])):
        add("relay", target, goal, measured, reference, ok)
    for target, goal, measured, reference, ok in files.summary_rows(results.get("files", [])):
        add("files", target, goal, measured, reference, ok)
    text = table(
        "Summary: the issue's targets",
        ["target", "goal", "measured", "reference", "verdict"],
        [[r["target"], r["goal"], r["measured"], r["reference"], r["verdict"]] for r in rows],
        [
            "— : not measured in this run (see --only) or the benchmark failed.",
            f"?: other processes used over {FOREIGN_WARN_PCT:.0f}% of a core during that benchmark: rerun on a "
            "quiet machine.",
            f"*: judged as measured, but the viewer got under {FULL_RATE_FPS} fps (no more than the app drew) where "
            "Selkies encodes 30: CPU x 30 / fps is what 30 would cost.",
        ],
        align="lllll",
    )
    return text, rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    install_signal_handlers()
    started = time.monotonic()
    env = environment()
    print(
        f"impromptu benchmarks{' (--quick)' if args.quick else ''}: {env['cpu']}, {env['cores']} cores, "
        f"Linux {env['kernel']}, Python {env['python']}, PyAV {env['pyav']}\n",
        flush=True,
    )
    results: dict[str, Any] = {}
    errors: dict[str, str] = {}
    foreign: dict[str, float] = {}
    browsers = Browsers()

    def attempt(name: str, body: Callable[[], Any], render: Callable[[], str] | None) -> None:
        wait_until_quiet(10 if args.quick else 60, sample_s=0.5 if args.quick else 1.0)
        meter = CpuMeter().start()
        try:
            results[name] = body()
        except Exception as exc:  # One failed benchmark must not hide the others' figures.
            if INTERRUPTED.is_set():
                raise KeyboardInterrupt from exc
            errors[name] = f"{type(exc).__name__}: {exc}"
            log(f"{name} failed:\n{traceback.format_exc()}")
            print(f"[{name}] FAILED: {errors[name]}\n", flush=True)
        foreign[name] = meter.stop()["foreign"]
        if foreign[name] > FOREIGN_WARN_PCT:
            warning = (
                f"[{name}] warning: other processes used {foreign[name]:.0f}% of a core during this benchmark; "
                "its figures are suspect"
            )
            print(warning, flush=True)
        if render is not None and (name in results or (name == "idle" and "cpu" in results)):
            try:
                print(render() + "\n", flush=True)
            except Exception:  # a bug in a table must not lose the figures: they still go to the JSON file
                log(f"cannot print the {name} table:\n{traceback.format_exc()}")

    def render_cpu() -> str:
        # Streaming and idle side by side, in one table.
        return cpu.render(results.get("cpu", []), results.get("idle"))

    try:
        if "grab" in args.chosen:
            attempt("grab", lambda: grab_encode.run(SIZES, args.quick), lambda: grab_encode.render(results["grab"]))
        if "cpu" in args.chosen:
            streaming_render = None if "idle" in args.chosen else render_cpu
            attempt("cpu", lambda: cpu.run_streaming(SIZES, browsers, args.quick), streaming_render)
        if "idle" in args.chosen:
            attempt("idle", lambda: cpu.run_idle(browsers, args.quick), render_cpu)
        if "g2g" in args.chosen:
            attempt("g2g", lambda: latency.run(SIZES, browsers, args.quick), lambda: latency.render(results["g2g"]))
        if "fanout" in args.chosen:
            attempt("fanout", lambda: fanout.run(SIZES, args.quick), lambda: fanout.render(results["fanout"]))
            # A mode that failed leaves its rows marked and the other mode's figures standing: an error, not a crash.
            errors.update(fanout.failures(results.get("fanout", [])))
        if "relay" in args.chosen:
            attempt("relay", lambda: relay.run(SIZES, args.quick, browsers), lambda: relay.render(results["relay"]))
            errors.update(relay.failures(results.get("relay", [])))
        if "files" in args.chosen:
            attempt("files", lambda: files.run(args.quick, browsers), lambda: files.render(results["files"]))
            errors.update(files.failures(results.get("files", [])))
        if "record" in args.chosen:
            attempt("record", lambda: record.run(args.quick), lambda: record.render(results["record"]))
        if browsers.version():
            env["chromium"] = browsers.version()
    except KeyboardInterrupt:
        # A terminal's Ctrl-C also reached Playwright's driver (it shares our process group and handles SIGINT
        # itself), so closing the browser through it fails: its processes are gone already. Say it once.
        logging.getLogger("asyncio").setLevel(logging.CRITICAL)
        log("interrupted: stopped everything it started")
        return 130
    finally:
        browsers.close()

    text, rows = summary(results, foreign)
    print(text, flush=True)
    elapsed = time.monotonic() - started
    print(f"\n{len(results)} benchmark(s) in {elapsed:.0f} s; results in {args.json}", flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "environment": env,
        "results": results,
        "errors": errors,
        "foreign_cpu_pct": foreign,
        "summary": rows,
        "seconds": elapsed,
    }
    args.json.write_text(json.dumps(_json_safe(document), indent=2, allow_nan=False) + "\n")
    return 1 if errors else 0


def _json_safe(value: Any) -> Any:
    """NaN (a statistic of no values) becomes null; tuples become lists."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


if __name__ == "__main__":
    sys.exit(main())
