"""File transfers (docs/protocol.md §9): how fast a file goes each way between a desktop and a viewer on loopback,
and how much memory the desktop takes meanwhile.

    .venv/bin/python bench/files.py            # 1 GiB each way with send/fetch, 300 MiB with Chromium (also
                                               # `bench/run.py --only files`)
    .venv/bin/python bench/files.py --quick    # 100 MiB each way, both ends
    .venv/bin/python bench/files.py --no-browser --baseline   # also both ends as before impromptu.rtc.sack's changes

The issue's targets: at least ``TARGET_MBPS`` each way, and the desktop's resident memory growing by less than
``RSS_TARGET_MB`` while it moves a file of any size.

One desktop, ``impromptu vdisplay run --files DIR`` (xterm on a 640x480 display, ICE on 127.0.0.1 only), and:

(a) upload: ``impromptu send -`` (the link on its standard input) of a file of random bytes, written to disk
    beforehand in 1 MiB blocks (never held in memory);
(b) download: ``impromptu fetch -`` of that file back, compared with the original byte for byte;
(c) page upload: headless Chromium on the operator link uploads a ``File`` of ``PAGE_SIZE`` random bytes made in
    the page (``window.impromptu.files.upload``; the page keeps it in memory, hence the smaller size);
(d) page download: the same page downloads that file (``window.impromptu.files.download``; the page holds it in
    memory until it is complete and its SHA-256 checked, then hands it to Playwright's download handling).

Figures, per row: Mbit/s over the transfer (a, b: from the command's first progress line — connected, the desktop
ready — to its exit, so hashing, fsync and commit count; c, d: from the page's call to the transfer's ``done``),
and over the whole command (a, b: start-up and connection included); the desktop's RSS (``/proc/PID/status``
VmRSS) before the transfer and its peak during it, sampled every ``RSS_SAMPLE_S``, and its VmHWM (the kernel's own
peak, which also covers the moments between samples); the CPU the desktop and the other end used over the
transfer (% of one core: the other end is the one process ``send``/``fetch`` runs in, or every Chromium process).

``--baseline`` adds rows with aiortc as it is, as before impromptu.rtc.sack's changes for bulk data (a file
channel's association acknowledging every second packet; reassembly not rescanning a message at each fragment):
the same desktop and send/fetch commands started after ``BASELINE_PRELUDE`` undoes them, so before and after sit
side by side in one run on the same machine. (The page is Chromium either way.)
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script (bench/files.py): import the benchmarks as the `bench` package, from the repository root.
_REPO = Path(__file__).resolve().parent.parent
if sys.path and Path(sys.path[0]).resolve() == _REPO / "bench":
    sys.path[0] = str(_REPO)

import argparse  # noqa: E402
import contextlib  # noqa: E402
import filecmp  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator, Sequence  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from typing import Any  # noqa: E402

from bench.common import (  # noqa: E402
    CLK_TCK,
    FOREIGN_WARN_PCT,
    INTERRUPTED,
    CpuMeter,
    fmt,
    install_signal_handlers,
    log,
    proc_stat,
    stop_process,
    table,
    wait_until_quiet,
)
from bench.desktop import Browsers, Desktop, desktop_process  # noqa: E402

SIZE = 1 << 30
QUICK_SIZE = 100 << 20
PAGE_SIZE = 300 << 20
QUICK_PAGE_SIZE = 100 << 20
"""The page holds what it uploads and downloads in memory: ≤ 300 MB keeps a headless renderer comfortable."""
TARGET_MBPS = 200.0
RSS_TARGET_MB = 64.0
RSS_SAMPLE_S = 0.05
BLOCK = 1 << 20
QUIET_WAIT_S = 30.0
"""Before each transfer, wait up to this long for other processes to use under FOREIGN_WARN_PCT of a core."""
TRANSFER_TIMEOUT_S = 1800.0
"""Per transfer: 1 GB at 5 Mbit/s would still finish."""

MODES = ("shipped", "baseline")
MODE_LABELS = {"shipped": "as shipped", "baseline": "before (aiortc as is)"}
BASELINE_PRELUDE = """
import impromptu.files.wire as wire
import impromptu.rtc.sack as sack
from aiortc.rtcsctptransport import InboundStream
wire.delay_acks = lambda transport: None
InboundStream.add_chunk, InboundStream.pop_messages = sack._add_chunk, sack._pop_messages
"""
"""Run in the desktop process before impromptu's CLI, for ``--baseline``: aiortc as it is, as before the change —
a SACK for every DATA packet, and reassembly scanning a message's fragments at each one (impromptu.rtc.sack)."""

KINDS = ("send", "fetch", "page-up", "page-down")
KIND_LABELS = {
    "send": "(a) upload, impromptu send",
    "fetch": "(b) download, impromptu fetch",
    "page-up": "(c) upload, Chromium page",
    "page-down": "(d) download, Chromium page",
}

HEADERS = ["transfer", "desktop", "MB", "Mbit/s", "cmd Mbit/s", "RSS MB", "peak MB", "growth MB", "HWM MB"]
HEADERS += ["desktop %", "other end %", "desktop drops", "UDP drops", "foreign %"]


# ---- the desktop and its memory ----


def impromptu_command(args: Sequence[str], mode: str) -> list[str]:
    """``python -m impromptu ARGS``; for ``baseline``, after ``BASELINE_PRELUDE``."""
    if mode == "shipped":
        return [sys.executable, "-m", "impromptu", *args]
    # The same CLI, after the prelude: runpy runs impromptu/__main__.py as `python -m impromptu` would.
    launcher = f"{BASELINE_PRELUDE}import runpy, sys\nsys.argv = ['impromptu', *sys.argv[1:]]\n"
    launcher += "runpy.run_module('impromptu', run_name='__main__', alter_sys=True)\n"
    return [sys.executable, "-c", launcher, *args]


def desktop_command(folder: Path, mode: str) -> list[str]:
    args = [
        "vdisplay", "run", "--size", "640x480", "--files", str(folder),
        "--bind", "127.0.0.1:0", "--ice-address", "127.0.0.1", "--", "xterm",
    ]  # fmt: skip
    return impromptu_command(args, mode)


@contextmanager
def run_files_desktop(folder: Path, mode: str) -> Iterator[Desktop]:
    import signal

    with desktop_process(desktop_command(folder, mode), signal.SIGINT) as desktop:
        yield desktop


def memory_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of ``pid``, KiB."""
    rss = hwm = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    return rss, hwm


def socket_drops(pid: int) -> dict[int, int]:
    """Datagrams dropped on each UDP socket of ``pid`` (by inode), its receive buffer full: /proc/PID/net/udp's
    ``drops``, for the sockets among the process's file descriptors."""
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:["):
                    inodes.add(int(link[8:-1]))
    drops = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/net/udp").read_text().splitlines()[1:]:
            fields = line.split()
            if len(fields) >= 13 and int(fields[9]) in inodes:
                drops[int(fields[9])] = int(fields[12])
    return drops


class RssSampler:
    """VmRSS of one process every ``RSS_SAMPLE_S`` in a thread: its peak between ``__enter__`` and ``__exit__``;
    and the datagrams its UDP sockets dropped meanwhile (a connection's sockets close with it: each is followed
    while it lives)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.before_kib, _ = memory_kib(pid)
        self.peak_kib = self.before_kib
        self.samples = 0
        self._drops_before = socket_drops(pid)
        self._drops: dict[int, int] = dict(self._drops_before)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss", daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while True:
            with contextlib.suppress(OSError):
                rss, _ = memory_kib(self.pid)
                self.peak_kib = max(self.peak_kib, rss)
                self.samples += 1
            self._drops.update(socket_drops(self.pid))
            if self._stop.wait(RSS_SAMPLE_S):
                return

    @property
    def drops(self) -> int:
        return sum(n - self._drops_before.get(inode, 0) for inode, n in self._drops.items())


def udp_receive_errors() -> int:
    """Datagrams the kernel dropped because a UDP socket's receive buffer was full, since boot (every socket)."""
    lines = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines() if line.startswith("Udp:")]
    return int(lines[1][lines[0].index("RcvbufErrors")])


def ticks(pids: Sequence[int]) -> int:
    return sum(s.ticks for s in map(proc_stat, pids) if s is not None)


# ---- the test file ----


def make_file(path: Path, size: int) -> None:
    """``size`` random bytes at ``path``, a block at a time."""
    with path.open("wb") as f:
        left = size
        while left:
            n = min(BLOCK, left)
            f.write(os.urandom(n))
            left -= n


# ---- (a), (b): impromptu send / fetch ----


class Command:
    """``impromptu send|fetch -`` with the link on its standard input; when its first progress line came (the
    transfer starts), and its CPU time (from ``wait4``, so nothing after its last /proc sample is lost)."""

    def __init__(self, args: Sequence[str], url: str, mode: str) -> None:
        self.name = args[0]
        self.started = time.monotonic()
        self.first_progress: float | None = None
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            impromptu_command([*args, "--ice-address", "127.0.0.1"], mode),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=_REPO,
            start_new_session=True,
        )
        assert self.proc.stdin is not None
        self.proc.stdin.write(url + "\n")
        self.proc.stdin.close()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.cpu_s = 0.0
        self.ended = 0.0

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if self.first_progress is None and "%" in line and "MB/s" in line:
                self.first_progress = time.monotonic()
            self.lines.append(line.rstrip()[:200])

    def wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(self.proc.pid, os.WNOHANG)
            if pid:
                self.ended = time.monotonic()
                self.proc.returncode = os.waitstatus_to_exitcode(status)
                self.cpu_s = usage.ru_utime + usage.ru_stime
                break
            if time.monotonic() > deadline:
                stop_process(self.proc)
                raise RuntimeError(f"`impromptu {self.name}` did not finish in {timeout:.0f} s")
            time.sleep(0.02)
        self._reader.join(5)
        if self.proc.returncode != 0:
            raise RuntimeError(f"`impromptu {self.name}` failed: {' | '.join(self.lines[-5:])}")

    def stop(self) -> None:
        if self.proc.returncode is None:
            stop_process(self.proc)


def measure(desktop: Desktop, size: int, body: Any) -> dict[str, Any]:
    """Run ``body()`` (which returns (transfer seconds, command seconds, other end's CPU seconds)) while watching
    the desktop's memory, CPU and the machine's UDP drops."""
    drops0 = udp_receive_errors()
    desktop_t0 = ticks([desktop.pid])
    meter = CpuMeter().start()
    with RssSampler(desktop.pid) as rss:
        transfer_s, command_s, other_cpu_s = body()
    foreign = meter.stop()["foreign"]
    desktop_cpu_s = (ticks([desktop.pid]) - desktop_t0) / CLK_TCK
    _, hwm = memory_kib(desktop.pid)
    return {
        "bytes": size,
        "seconds": transfer_s,
        "mbps": size * 8 / transfer_s / 1e6,
        "command_mbps": size * 8 / command_s / 1e6 if command_s else None,
        "rss_before_mb": rss.before_kib / 1024,
        "rss_peak_mb": rss.peak_kib / 1024,
        "rss_growth_mb": (rss.peak_kib - rss.before_kib) / 1024,
        "hwm_mb": hwm / 1024,
        "rss_samples": rss.samples,
        # Over the command's whole life (a, b) or the page's transfer (c, d): the desktop's too, from the same span.
        "desktop_cpu_pct": 100 * desktop_cpu_s / (command_s or transfer_s),
        "other_cpu_pct": 100 * other_cpu_s / (command_s or transfer_s),
        "udp_drops": udp_receive_errors() - drops0,
        "desktop_drops": rss.drops,
        "foreign_cpu_pct": foreign,
    }


def cli_transfer(args: Sequence[str], url: str, mode: str) -> tuple[float, float, float]:
    command = Command(args, url, mode)
    try:
        command.wait(TRANSFER_TIMEOUT_S)
    finally:
        command.stop()
    start = command.first_progress if command.first_progress is not None else command.started
    return command.ended - start, command.ended - command.started, command.cpu_s


# ---- (c), (d): a Chromium page ----

PAGE_UPLOAD_JS = """async ([size, name]) => {
  const block = new Uint8Array(1 << 20);
  const parts = [];
  for (let left = size; left > 0; left -= block.length) {
    crypto.getRandomValues(block.subarray(0, Math.min(65536, block.length)));
    for (let i = 65536; i < block.length; i += 65536) block.copyWithin(i, 0, 65536);
    block[0] = left & 255; block[1] = (left >> 8) & 255; block[2] = (left >> 16) & 255;
    parts.push(block.slice(0, Math.min(block.length, left)));
  }
  const file = new File(parts, name);
  const t0 = performance.now();
  const [id] = window.impromptu.files.upload(file, {replace: true});
  return await new Promise((resolve) => {
    const timer = setInterval(() => {
      const t = window.impromptu.files.transfers.find((x) => x.id === id);
      if (t && (t.state === 'done' || t.state === 'failed' || t.state === 'cancelled')) {
        clearInterval(timer);
        resolve({state: t.state, error: t.error, ms: performance.now() - t0, offsets: t.offsets});
      }
    }, 20);
  });
}"""

PAGE_DOWNLOAD_JS = """async (name) => {
  const t0 = performance.now();
  const id = window.impromptu.files.download(name);
  return await new Promise((resolve) => {
    const timer = setInterval(() => {
      const t = window.impromptu.files.transfers.find((x) => x.id === id);
      if (t && (t.state === 'done' || t.state === 'failed' || t.state === 'cancelled')) {
        clearInterval(timer);
        resolve({state: t.state, error: t.error, ms: performance.now() - t0, bytes: t.bytes});
      }
    }, 20);
  });
}"""


@contextmanager
def files_page(browsers: Browsers, url: str) -> Iterator[Any]:
    """A page on the operator link whose file transfers are available."""
    page = browsers.browser().new_page(accept_downloads=True)
    try:
        page.goto(url)
        page.wait_for_function(
            "() => window.impromptu && window.impromptu.files.enabled && window.impromptu.files.canUpload",
            timeout=30_000,
        )
        yield page
    finally:
        with contextlib.suppress(Exception):
            page.close()


def page_transfer(
    browsers: Browsers, page: Any, script: str, arg: Any, expect_bytes: int
) -> tuple[float, float, float]:
    chromium = browsers.chromium_pids()
    t0 = ticks(chromium)
    downloads: list[Any] = []
    page.on("download", lambda download: downloads.append(download))
    result = page.evaluate(script, arg)
    if result["state"] != "done":
        raise RuntimeError(f"the page's transfer ended {result['state']}: {result.get('error')}")
    if "bytes" in result and result["bytes"] != expect_bytes:
        raise RuntimeError(f"the page received {result['bytes']} bytes of {expect_bytes}")
    seconds = result["ms"] / 1000
    cpu_s = (ticks(chromium) - t0) / CLK_TCK
    for download in downloads:  # Playwright saved it to a temporary file: drop it now
        with contextlib.suppress(Exception):
            download.delete()
    return seconds, 0.0, cpu_s


# ---- the benchmark ----


def run(
    quick: bool = False,
    browsers: Browsers | None = None,
    modes: Sequence[str] = ("shipped",),
    kinds: Sequence[str] = KINDS,
    repeat: int = 1,
) -> list[dict[str, Any]]:
    """Each kind × mode (× ``repeat``), the modes' rows one after the other, each on a desktop of its own started
    beforehand (an idle desktop costs next to nothing), after waiting for a quiet machine. A failed row is recorded
    (``error``) and the others still run."""
    own = browsers is None
    browsers = Browsers() if browsers is None else browsers
    size = QUICK_SIZE if quick else SIZE
    page_size = QUICK_PAGE_SIZE if quick else PAGE_SIZE
    rows: list[dict[str, Any]] = []
    work = Path(tempfile.mkdtemp(prefix="impromptu-bench-files-"))
    try:
        source = work / "source.bin"
        log(f"files: writing {size >> 20} MiB of random bytes to {source}")
        make_file(source, size)
        with contextlib.ExitStack() as stack:
            desktops: dict[str, tuple[Desktop, Path, Path]] = {}
            for mode in modes:
                folder, out = work / f"folder-{mode}", work / f"out-{mode}"
                folder.mkdir()
                out.mkdir()
                desktops[mode] = (stack.enter_context(run_files_desktop(folder, mode)), folder, out)
            for _ in range(repeat):
                for kind in kinds:
                    for mode in modes:
                        desktop, folder, out = desktops[mode]
                        if not desktop.alive():
                            raise RuntimeError(f"the desktop died: {' | '.join(desktop.output)}")
                        wait_until_quiet(QUIET_WAIT_S, sample_s=0.5)
                        row: dict[str, Any] = {"mode": mode, "kind": kind}
                        log(f"files: {KIND_LABELS[kind]}, {MODE_LABELS[mode]}")
                        try:
                            row.update(_one(kind, mode, desktop, browsers, source, folder, out, size, page_size))
                        except Exception as exc:
                            if INTERRUPTED.is_set():
                                raise
                            row["error"] = f"{type(exc).__name__}: {exc}"
                            log(f"files: {kind} failed: {row['error']}")
                        rows.append(row)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if own:
            browsers.close()
    return rows


def _one(
    kind: str,
    mode: str,
    desktop: Desktop,
    browsers: Browsers,
    source: Path,
    folder: Path,
    out: Path,
    size: int,
    page_size: int,
) -> dict[str, Any]:
    if kind == "send":
        row = measure(desktop, size, lambda: cli_transfer(["send", "-", "--replace", str(source)], desktop.url, mode))
        if (folder / source.name).stat().st_size != size:
            raise RuntimeError("the uploaded file has the wrong size")
        return row
    if kind == "fetch":
        if not (folder / source.name).exists():
            shutil.copyfile(source, folder / source.name)  # (a) did not run or failed
        row = measure(
            desktop, size, lambda: cli_transfer(["fetch", "-", source.name, "-o", str(out)], desktop.url, mode)
        )
        if not filecmp.cmp(source, out / source.name, shallow=False):
            raise RuntimeError("the downloaded file differs from the original")
        (out / source.name).unlink()
        return row
    with files_page(browsers, desktop.url) as page:
        name = "page.bin"
        if kind == "page-up":
            row = measure(
                desktop, page_size, lambda: page_transfer(browsers, page, PAGE_UPLOAD_JS, [page_size, name], 0)
            )
            if (folder / name).stat().st_size != page_size:
                raise RuntimeError("the page's upload has the wrong size")
            return row
        if not (folder / name).exists():
            make_file(folder / name, page_size)
        return measure(desktop, page_size, lambda: page_transfer(browsers, page, PAGE_DOWNLOAD_JS, name, page_size))


def failures(rows: Sequence[dict[str, Any]]) -> dict[str, str]:
    return {f"files {MODE_LABELS[r['mode']]} {KIND_LABELS[r['kind']]}": r["error"] for r in rows if "error" in r}


def render(rows: Sequence[dict[str, Any]]) -> str:
    out = []
    for r in rows:
        head = [KIND_LABELS[r["kind"]], MODE_LABELS[r["mode"]]]
        if "error" in r:
            out.append([*head, "failed", *["—"] * (len(HEADERS) - 3)])
            continue
        out.append(
            [
                *head,
                f"{r['bytes'] / 1e6:.0f}",
                fmt(r["mbps"]),
                fmt(r["command_mbps"]),
                fmt(r["rss_before_mb"]),
                fmt(r["rss_peak_mb"]),
                fmt(r["rss_growth_mb"]),
                fmt(r["hwm_mb"]),
                fmt(r["desktop_cpu_pct"], 0),
                fmt(r["other_cpu_pct"], 0),
                str(r["desktop_drops"]),
                str(r["udp_drops"]),
                fmt(r["foreign_cpu_pct"], 0) + ("?" if r["foreign_cpu_pct"] > FOREIGN_WARN_PCT else ""),
            ]
        )
    return table(
        "File transfers on loopback: throughput and the desktop's memory",
        HEADERS,
        out,
        [
            "Mbit/s: over the transfer (a, b: first progress line to exit; c, d: the page's call to done);",
            "  cmd Mbit/s: over the whole command, start-up and connection included.",
            f"RSS: the desktop's VmRSS before; peak: its highest, sampled every {RSS_SAMPLE_S * 1000:.0f} ms; "
            "growth = peak − before; HWM: VmHWM after (the process's peak since it started).",
            "desktop %, other end %: CPU over the command (a, b) or the transfer (c, d), % of one core; the other "
            "end is the send/fetch process, or every Chromium process.",
            "desktop drops: datagrams the desktop's UDP sockets dropped, their receive buffers full; UDP drops: the "
            "same for the whole machine (the other end's, and anyone else's).",
            f"foreign %: CPU other processes used meanwhile (% of one core); ?: over {FOREIGN_WARN_PCT:.0f}, the row "
            "is suspect: rerun on a quiet machine.",
        ],
        align="ll" + "r" * (len(HEADERS) - 2),
    )


def summary_rows(rows: Sequence[dict[str, Any]]) -> list[tuple[str, str, str, str, bool | None]]:
    """(target, goal, measured, reference, ok) for bench/run.py's summary: the shipped desktop's slowest
    direction, and its largest RSS growth, per other end."""
    out: list[tuple[str, str, str, str, bool | None]] = []
    good = [r for r in rows if r["mode"] == "shipped" and "error" not in r]
    for label, kinds in (("send/fetch", ("send", "fetch")), ("Chromium", ("page-up", "page-down"))):
        found = [r for r in good if r["kind"] in kinds]
        if not found:
            out.append((f"file throughput, {label}", f"≥ {TARGET_MBPS:.0f} Mbit/s each way", "—", "—", None))
            continue
        by_kind = {r["kind"]: r for r in found}
        measured = ", ".join(
            f"{'up' if k in ('send', 'page-up') else 'down'} {by_kind[k]['mbps']:.0f}" for k in kinds if k in by_kind
        )
        slowest = min(r["mbps"] for r in found)
        out.append(
            (
                f"file throughput, {label} ({found[0]['bytes'] / 1e6:.0f} MB)",
                f"≥ {TARGET_MBPS:.0f} Mbit/s each way",
                measured + " Mbit/s",
                "—",
                slowest >= TARGET_MBPS and len(found) == len(kinds),
            )
        )
        growth = max(r["rss_growth_mb"] for r in found)
        out.append(
            (
                f"desktop RSS growth, {label}",
                f"< {RSS_TARGET_MB:.0f} MB",
                f"{growth:.1f} MB (peak {max(r['rss_peak_mb'] for r in found):.0f} MB)",
                "—",
                growth < RSS_TARGET_MB,
            )
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_SIZE >> 20} MiB each way: a smoke run")
    parser.add_argument(
        "--baseline", action="store_true", help="also both ends with aiortc as is (before impromptu.rtc.sack)"
    )
    parser.add_argument("--no-browser", action="store_true", help="only (a) and (b): no Chromium")
    parser.add_argument("--kind", choices=KINDS, action="append", help="only this transfer (repeatable)")
    parser.add_argument("--repeat", type=int, default=1, metavar="N", help="every transfer N times (default 1)")
    parser.add_argument("--json", type=Path, help="also write the rows to this file")
    args = parser.parse_args(argv)
    kinds = args.kind or [k for k in KINDS if not (args.no_browser and k.startswith("page"))]
    modes = MODES if args.baseline else ("shipped",)
    install_signal_handlers()
    try:
        rows = run(args.quick, modes=modes, kinds=kinds, repeat=args.repeat)
    except KeyboardInterrupt:
        logging.getLogger("asyncio").setLevel(logging.CRITICAL)
        log("interrupted: stopped everything it started")
        return 130
    print(render(rows), flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 1 if failures(rows) else 0


if __name__ == "__main__":
    sys.exit(main())
