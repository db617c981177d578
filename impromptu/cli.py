"""The ``impromptu`` command line: parse options, build a session, run it. Nothing else lives here."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
import re
import secrets
import socket
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

import aiohttp
import typer
from typer.core import TyperCommand

from impromptu import health
from impromptu.errors import ImpromptuError, UsageError
from impromptu.relay.session import DEFAULT_MAX_VIEWERS as DEFAULT_RELAY_VIEWERS
from impromptu.relay.session import MAX_VIEWERS as MAX_RELAY_VIEWERS
from impromptu.rtc import IcePolicy
from impromptu.runner import (
    FilesOptions,
    JoinOptions,
    RecordOptions,
    RunOptions,
    SignalOptions,
    parse_bind,
    run_share,
    run_signal,
    run_vdisplay,
)
from impromptu.session import MAX_PEERS
from impromptu.signaling import SignalUrl
from impromptu.signaling.lobby import MAX_NAME
from impromptu.tls import is_loopback

app = typer.Typer(
    help="Instant shared desktops: share an X display or app to any browser, peer to peer.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain usage errors: they end up in logs and CI output
)
vdisplay_app = typer.Typer(
    help="Run apps on a fresh virtual display (Xvfb) and share it.", no_args_is_help=True, rich_markup_mode=None
)
app.add_typer(vdisplay_app, name="vdisplay")

SizeOpt = Annotated[
    str, typer.Option("--size", metavar="WxH", envvar="IMPROMPTU_SIZE", help="Virtual screen size, WIDTHxHEIGHT.")
]
FpsOpt = Annotated[
    int,
    typer.Option("--fps", metavar="N", envvar="IMPROMPTU_FPS", help="Maximum frames per second.", min=1, max=120),
]
BindOpt = Annotated[
    str,
    typer.Option(
        "--bind", metavar="HOST:PORT", envvar="IMPROMPTU_BIND", help="HOST:PORT of the page and signaling server."
    ),
]
IceAddressOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--ice-address",
        metavar="ADDR",
        envvar="IMPROMPTU_ICE_ADDRESS",
        help="Offer ICE host candidates on this address only (repeatable).",
    ),
]
IcePortsOpt = Annotated[
    str | None,
    typer.Option(
        "--ice-ports",
        metavar="MIN-MAX",
        envvar="IMPROMPTU_ICE_PORTS",
        help="Bind ICE host candidates to UDP ports in this range only (e.g. ports published by a container).",
    ),
]
IcePublicAddressOpt = Annotated[
    str | None,
    typer.Option(
        "--ice-public-address",
        metavar="ADDR",
        envvar="IMPROMPTU_ICE_PUBLIC_ADDRESS",
        help="Also advertise ICE host candidates on ADDR, same ports (1:1 NAT: a container's published ports).",
    ),
]
IceServerOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--ice-server", metavar="URL", help="A STUN server (stun:HOST:PORT) to use (repeatable). Default: none."
    ),
]
TlsCertOpt = Annotated[
    Path | None,
    typer.Option("--tls-cert", metavar="FILE", envvar="IMPROMPTU_TLS_CERT", help="PEM certificate for HTTPS."),
]
TlsKeyOpt = Annotated[
    Path | None,
    typer.Option("--tls-key", metavar="FILE", envvar="IMPROMPTU_TLS_KEY", help="PEM private key for HTTPS."),
]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Log what happens to stderr.")]
OneControllerOpt = Annotated[
    bool,
    typer.Option(
        "--one-controller",
        help="One viewer controls at a time, taking and handing over control from the page. "
        "Default: every viewer with the control link may.",
    ),
]

LinkArg = Annotated[
    str,
    typer.Argument(
        metavar="URL",
        help="The operator or view-only link the desktop printed, or - to read it from standard input "
        "(keeps its key out of the process list).",
    ),
]
TlsFingerprintOpt = Annotated[
    str | None,
    typer.Option(
        "--tls-fingerprint",
        metavar="SHA256",
        help="Trust an https desktop whose certificate has this SHA-256 fingerprint (as the desktop prints it).",
    ),
]
MaxDirectOpt = Annotated[
    int,
    typer.Option(
        "--max-direct",
        metavar="N",
        min=1,
        max=MAX_PEERS,
        help="Serve at most N viewers (relays included) directly; later viewers are sent to relays. "
        f"Default: {MAX_PEERS}.",
    ),
]
WindowIdOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--window",
        metavar="ID",
        help="Share this window (its id, e.g. 0x1a00004, as `impromptu windows` prints it) instead of the whole "
        "display (repeatable: each window is a surface of its own).",
    ),
]
WindowTitleOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--window-title",
        metavar="REGEX",
        help="Share the (topmost) window whose title matches REGEX (repeatable).",
    ),
]
WindowClassOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--window-class",
        metavar="NAME",
        help="Share the (topmost) window whose WM_CLASS class or instance is NAME, ignoring case (repeatable). "
        "Surfaces are numbered from 1 in the order the --window… options are given.",
    ),
]

FilesOpt = Annotated[
    Path | None,
    typer.Option(
        "--files",
        metavar="DIR",
        help="Viewers' uploads go to DIR (made if missing) and its files can be downloaded. "
        "Default: a folder made for the session, printed at start.",
    ),
]
NoFilesOpt = Annotated[bool, typer.Option("--no-files", help="No file transfers at all.")]
ViewersUploadOpt = Annotated[
    bool, typer.Option("--viewers-upload", help="View-only viewers may upload too (by default: download only).")
]
MetricsTokenOpt = Annotated[
    str | None,
    typer.Option(
        "--metrics-token",
        metavar="TOKEN",
        help="Bearer token of /metrics (Prometheus). Default: one derived from the control link's key, printed.",
    ),
]
MaxFileSizeOpt = Annotated[
    str,
    typer.Option("--max-file-size", metavar="SIZE", help="Largest upload accepted: bytes, or with K, M, G or T."),
]

SignalOpt = Annotated[
    str | None,
    typer.Option(
        "--signal",
        metavar="URL",
        envvar="IMPROMPTU_SIGNAL",
        help="Join this `impromptu signal` server (and its lobby) instead of serving the page here: "
        "http(s)://HOST:PORT, with its token as #token=T or --signal-token.",
    ),
]
NameOpt = Annotated[
    str | None,
    typer.Option(
        "--name", metavar="NAME", envvar="IMPROMPTU_NAME", help="This desktop's name in the lobby (with --signal)."
    ),
]
SignalTokenOpt = Annotated[
    str | None,
    typer.Option(
        "--signal-token", metavar="T", envvar="IMPROMPTU_TOKEN", help="The --signal server's token.", show_default=False
    ),
]
PublishLinksOpt = Annotated[
    bool,
    typer.Option(
        "--publish-links",
        envvar="IMPROMPTU_PUBLISH_LINKS",
        help="Hand this desktop's links to the lobby, so one click there opens it: whoever has the lobby's token "
        "(and whoever runs the signaling server) can then view and control it.",
    ),
]
NoThumbnailOpt = Annotated[
    bool,
    typer.Option("--no-thumbnail", envvar="IMPROMPTU_NO_THUMBNAIL", help="Send the lobby no picture of the desktop."),
]
HealthFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--health-file",
        metavar="FILE",
        envvar="IMPROMPTU_HEALTH_FILE",
        help="Rewrite FILE every 5 s while healthy, for `impromptu health` (container health checks).",
    ),
]
SignalFingerprintOpt = Annotated[
    str | None,
    typer.Option(
        "--tls-fingerprint",
        metavar="SHA256",
        envvar="IMPROMPTU_TLS_FINGERPRINT",
        help="With an https --signal server: trust its certificate if it has this SHA-256 fingerprint.",
    ),
]
RecordOpt = Annotated[
    Path | None,
    typer.Option(
        "--record",
        metavar="FILE",
        envvar="IMPROMPTU_RECORD",
        help="Record the stream into FILE as it is sent (no second encode): .mp4 for H.264, .webm for VP8. "
        "Several windows: rec.mp4, then rec-2.mp4, rec-3.mp4 …; a resize goes on in rec.1.mp4, rec.2.mp4 … "
        "(rec-2.1.mp4 for the second window).",
    ),
]
RecordSegmentOpt = Annotated[
    float | None,
    typer.Option(
        "--record-segment",
        metavar="N",
        envvar="IMPROMPTU_RECORD_SEGMENT",
        help="With --record: keep only about the last N seconds.",
    ),
]

_WINDOW_OPTIONS = ("--window", "--window-title", "--window-class")
DEFAULT_BIND = "127.0.0.1:8080"


class _WindowOrder(TyperCommand):
    """Remembers the order in which the ``--window…`` options were given (``ctx.meta["window_order"]``), which
    click does not keep across different options: surfaces are numbered in that order (protocol.md §8)."""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:  # type: ignore[override]
        order = []
        for arg in args:
            if arg == "--":
                break  # COMMAND's own arguments follow
            name = arg.split("=", 1)[0]
            if name in _WINDOW_OPTIONS:
                order.append(name)
        ctx.meta["window_order"] = tuple(order)
        return super().parse_args(ctx, args)


def _options(
    fps: int,
    bind: str,
    ice_address: list[str] | None,
    ice_server: list[str] | None,
    tls_cert: Path | None,
    tls_key: Path | None,
    one_controller: bool,
    max_direct: int = MAX_PEERS,
    window: list[str] | None = None,
    window_title: list[str] | None = None,
    window_class: list[str] | None = None,
    window_order: tuple[str, ...] = (),
    files: FilesOptions | None = None,
    metrics_token: str | None = None,
    join: JoinOptions | None = None,
    health_file: Path | None = None,
    ice_ports: str | None = None,
    ice_public_address: str | None = None,
    record: RecordOptions | None = None,
) -> RunOptions:
    return RunOptions.parse(
        record=record,
        ice_ports=ice_ports,
        ice_public_address=ice_public_address,
        files=files,
        metrics_token=metrics_token,
        join=join,
        health_file=health_file,
        window_order=window_order,
        window_ids=tuple(window or ()),
        window_titles=tuple(window_title or ()),
        window_classes=tuple(window_class or ()),
        fps=fps,
        one_controller=one_controller,
        max_direct=max_direct,
        bind=bind,
        ice_addresses=tuple(ice_address or ()),
        ice_servers=tuple(ice_server or ()),
        tls_cert=tls_cert,
        tls_key=tls_key,
    )


def _files(folder: Path | None, no_files: bool, viewers_upload: bool, max_file_size: str) -> FilesOptions:
    if no_files and (folder is not None or viewers_upload):
        raise UsageError("--no-files cannot be combined with --files or --viewers-upload")
    return FilesOptions(folder, not no_files, viewers_upload, FilesOptions.parse_size(max_file_size))


def _join(
    signal: str | None,
    name: str | None,
    token: str | None,
    publish_links: bool,
    no_thumbnail: bool,
    tls_fingerprint: str | None,
    default_name: str,
    own_server: Mapping[str, object],
) -> JoinOptions | None:
    """``--signal`` and its options, checked together. ``own_server``: the options of a desktop's own server, by
    name, that were given (not ``None``) — meaningless with ``--signal``."""
    if signal is None:
        for option, given in (
            ("--name", name),
            ("--publish-links", publish_links),
            ("--tls-fingerprint", tls_fingerprint),
        ):
            if given:
                raise UsageError(f"{option} goes with --signal URL")
        return None
    for option, value in own_server.items():
        if value is not None:
            raise UsageError(f"{option} is for a desktop serving its own page: with --signal, the signal server does")
    url = SignalUrl.parse(signal)
    token = token or url.token
    if not token:
        raise UsageError("--signal needs the server's token: --signal-token T, IMPROMPTU_TOKEN, or URL/#token=T")
    name = name or default_name[:MAX_NAME]
    return JoinOptions(url, token, name, publish_links, not no_thumbnail, _pinned(tls_fingerprint))


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="impromptu: %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not verbose:
        # aiortc and aioice log connection-level chatter at INFO/WARNING that a user cannot act on.
        for noisy in ("aiortc", "aioice"):
            logging.getLogger(noisy).setLevel(logging.ERROR)


def _exit_with(code: int) -> None:
    sys.stdout.flush()
    raise typer.Exit(code)


@vdisplay_app.command("run", cls=_WindowOrder, context_settings={"allow_interspersed_args": False})
def vdisplay_run(
    ctx: typer.Context,
    command: Annotated[
        list[str],
        typer.Argument(metavar="COMMAND", help="The app to run on the display, with its arguments, after `--`."),
    ],
    size: SizeOpt = "1280x800",
    fps: FpsOpt = 30,
    bind: BindOpt = DEFAULT_BIND,
    ice_address: IceAddressOpt = None,
    ice_server: IceServerOpt = None,
    ice_ports: IcePortsOpt = None,
    ice_public_address: IcePublicAddressOpt = None,
    tls_cert: TlsCertOpt = None,
    tls_key: TlsKeyOpt = None,
    one_controller: OneControllerOpt = False,
    max_direct: MaxDirectOpt = MAX_PEERS,
    window: WindowIdOpt = None,
    window_title: WindowTitleOpt = None,
    window_class: WindowClassOpt = None,
    files: FilesOpt = None,
    no_files: NoFilesOpt = False,
    viewers_upload: ViewersUploadOpt = False,
    max_file_size: MaxFileSizeOpt = "4G",
    metrics_token: MetricsTokenOpt = None,
    signal: SignalOpt = None,
    name: NameOpt = None,
    signal_token: SignalTokenOpt = None,
    publish_links: PublishLinksOpt = False,
    no_thumbnail: NoThumbnailOpt = False,
    tls_fingerprint: SignalFingerprintOpt = None,
    health_file: HealthFileOpt = None,
    record: RecordOpt = None,
    record_segment: RecordSegmentOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Start a virtual display, run COMMAND on it, and share it. Exits with COMMAND's exit status.

    With --window options, waits for COMMAND's own windows to be mapped and shares those only."""
    _setup_logging(verbose)
    try:
        default_name = f"{Path(command[0]).name} on {socket.gethostname()}" if command else socket.gethostname()
        own = {"--bind": None if bind == DEFAULT_BIND else bind, "--tls-cert": tls_cert, "--tls-key": tls_key}
        own["--metrics-token"] = metrics_token
        join = _join(signal, name, signal_token, publish_links, no_thumbnail, tls_fingerprint, default_name, own)
        options = _options(
            fps,
            bind,
            ice_address,
            ice_server,
            tls_cert,
            tls_key,
            one_controller,
            max_direct,
            window,
            window_title,
            window_class,
            ctx.meta.get("window_order", ()),
            _files(files, no_files, viewers_upload, max_file_size),
            metrics_token,
            join,
            health_file,
            ice_ports=ice_ports,
            ice_public_address=ice_public_address,
            record=RecordOptions.parse(record, record_segment),
        )
        screen = RunOptions.parse_size(size)
        code = asyncio.run(run_vdisplay(options, screen, command))
    except ImpromptuError as exc:
        _fail(exc)
    _exit_with(code)


@app.command("share", cls=_WindowOrder)
def share(
    ctx: typer.Context,
    display: Annotated[
        str | None, typer.Option("--display", metavar=":N", help="The X display to share. Default: $DISPLAY.")
    ] = None,
    fps: FpsOpt = 30,
    bind: BindOpt = DEFAULT_BIND,
    ice_address: IceAddressOpt = None,
    ice_server: IceServerOpt = None,
    ice_ports: IcePortsOpt = None,
    ice_public_address: IcePublicAddressOpt = None,
    tls_cert: TlsCertOpt = None,
    tls_key: TlsKeyOpt = None,
    one_controller: OneControllerOpt = False,
    max_direct: MaxDirectOpt = MAX_PEERS,
    window: WindowIdOpt = None,
    window_title: WindowTitleOpt = None,
    window_class: WindowClassOpt = None,
    files: FilesOpt = None,
    no_files: NoFilesOpt = False,
    viewers_upload: ViewersUploadOpt = False,
    max_file_size: MaxFileSizeOpt = "4G",
    metrics_token: MetricsTokenOpt = None,
    signal: SignalOpt = None,
    name: NameOpt = None,
    signal_token: SignalTokenOpt = None,
    publish_links: PublishLinksOpt = False,
    no_thumbnail: NoThumbnailOpt = False,
    tls_fingerprint: SignalFingerprintOpt = None,
    health_file: HealthFileOpt = None,
    record: RecordOpt = None,
    record_segment: RecordSegmentOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Share an existing X display until Ctrl-C, or only some of its windows (--window…): then until Ctrl-C or
    the last of them is closed (exit status 0)."""
    _setup_logging(verbose)
    try:
        target = display or os.environ.get("DISPLAY")
        if not target:
            raise UsageError("no display to share: pass --display :N or set DISPLAY")
        default_name = f"{socket.gethostname()} {target}"
        own = {"--bind": None if bind == DEFAULT_BIND else bind, "--tls-cert": tls_cert, "--tls-key": tls_key}
        own["--metrics-token"] = metrics_token
        join = _join(signal, name, signal_token, publish_links, no_thumbnail, tls_fingerprint, default_name, own)
        options = _options(
            fps,
            bind,
            ice_address,
            ice_server,
            tls_cert,
            tls_key,
            one_controller,
            max_direct,
            window,
            window_title,
            window_class,
            ctx.meta.get("window_order", ()),
            _files(files, no_files, viewers_upload, max_file_size),
            metrics_token,
            join,
            health_file,
            ice_ports=ice_ports,
            ice_public_address=ice_public_address,
            record=RecordOptions.parse(record, record_segment),
        )
        code = asyncio.run(run_share(options, target))
    except ImpromptuError as exc:
        _fail(exc)
    _exit_with(code)


@app.command("signal")
def signal_server(
    bind: BindOpt = DEFAULT_BIND,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            metavar="T",
            envvar="IMPROMPTU_TOKEN",
            help="The token the lobby and joining desktops must present (8 to 256 printable ASCII characters). "
            "Default: a new one, printed in the lobby's address.",
            show_default=False,
        ),
    ] = None,
    tls_cert: TlsCertOpt = None,
    tls_key: TlsKeyOpt = None,
    health_file: HealthFileOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Run a standalone signaling and page server with a lobby of the desktops that join it
    (`impromptu vdisplay run --signal URL --name NAME -- APP`). It relays only SDP: streams go peer to peer."""
    _setup_logging(verbose)
    try:
        host, port = parse_bind(bind)
        if token is None:
            token = secrets.token_urlsafe(16)
        elif not re.fullmatch(r"[\x21-\x7e]{8,256}", token):
            raise UsageError("--token: 8 to 256 printable ASCII characters without spaces")
        elif len(token) < 16 and not is_loopback(host):
            # (The compose file's default token is fine on loopback, not for a lobby the whole network can reach.)
            raise UsageError(f"--token: a server others can reach ({bind}) needs a token of 16 characters or more")
        code = asyncio.run(run_signal(SignalOptions(host, port, token, tls_cert, tls_key, health_file)))
    except ImpromptuError as exc:
        _fail(exc)
    _exit_with(code)


@app.command("health")
def health_check(
    health_file: Annotated[
        Path | None,
        typer.Option("--file", metavar="FILE", envvar="IMPROMPTU_HEALTH_FILE", help="The heartbeat file to check."),
    ] = None,
) -> None:
    """Exit 0 if the impromptu process writing FILE (its --health-file) is healthy, else 1 with the reason."""
    if health_file is None:
        _fail(UsageError("no heartbeat file to check: pass --file FILE or set IMPROMPTU_HEALTH_FILE"))
        return
    problem = health.check(health_file)
    if problem is not None:
        typer.echo(f"impromptu: unhealthy: {problem}", err=True)
        _exit_with(1)
    typer.echo("healthy")
    _exit_with(0)


@app.command("probe")
def probe(
    url: LinkArg,
    seconds: Annotated[
        float, typer.Option("--seconds", metavar="N", help="Receive for N seconds after the first keyframe.", min=0)
    ] = 10.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as one JSON object.")] = False,
    ice_address: IceAddressOpt = None,
    ice_server: IceServerOpt = None,
    tls_fingerprint: TlsFingerprintOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Join a shared desktop as a headless viewer, check its stream, and report frame rate, bitrate, frame loss
    and time to first keyframe. Exits with 1 when no keyframe arrived or the stream broke the protocol's rules."""
    from impromptu.probe import run_probe

    _setup_logging(verbose)
    try:
        url = _link_text(url)
        report = asyncio.run(run_probe(url, seconds, _ice(ice_address, ice_server), _pinned(tls_fingerprint)))
    except ValueError as exc:
        _fail(UsageError(str(exc)))
    except ImpromptuError as exc:
        _fail(exc)
    typer.echo(json.dumps(report.as_json()) if as_json else report.format())
    if not report.ok:
        problem = report.error or f"{report.violation_count} protocol rule violations"
        typer.echo(f"impromptu: error: probe: {problem}", err=True)
    _exit_with(0 if report.ok else 1)


@app.command("status")
def status(
    url: LinkArg,
    as_json: Annotated[bool, typer.Option("--json", help="Print the statistics as one JSON object.")] = False,
    watch: Annotated[bool, typer.Option("--watch", help="Print them again every second until Ctrl-C.")] = False,
    ice_address: IceAddressOpt = None,
    ice_server: IceServerOpt = None,
    tls_fingerprint: TlsFingerprintOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Show a shared desktop's live connection statistics and, for each viewer, whether a weak machine or a bad
    network path is to blame (docs/diagnosis.md). The control link shows every viewer; a view-only link, its own
    connection."""
    from impromptu.stats.status import run_status

    _setup_logging(verbose)
    try:
        url = _link_text(url)
        asyncio.run(run_status(url, _ice(ice_address, ice_server), _pinned(tls_fingerprint), as_json, watch))
    except KeyboardInterrupt:
        _exit_with(0)
    except ValueError as exc:
        _fail(UsageError(str(exc)))
    except ImpromptuError as exc:
        _fail(exc)
    _exit_with(0)


@app.command("send")
def send(
    url: LinkArg,
    files: Annotated[list[Path], typer.Argument(metavar="FILE...", help="Files to upload.")],
    replace: Annotated[
        bool, typer.Option("--replace", help="Overwrite files of the same names (default: keep both, 'a (1).txt').")
    ] = False,
    ice_address: IceAddressOpt = None,
    ice_server: IceServerOpt = None,
    tls_fingerprint: TlsFingerprintOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Upload files into a shared desktop's transfer folder, with a progress bar; resumes over dropped
    connections. Prints the name each file got there."""
    from impromptu.files.client import run_send

    _setup_logging(verbose)
    try:
        url = _link_text(url)
        names = asyncio.run(run_send(url, files, _ice(ice_address, ice_server), _pinned(tls_fingerprint), replace))
    except ValueError as exc:
        _fail(UsageError(str(exc)))
    except ImpromptuError as exc:
        _fail(exc)
    for name in names:
        typer.echo(name)
    _exit_with(0)


@app.command("fetch")
def fetch(
    url: LinkArg,
    name: Annotated[str, typer.Argument(metavar="NAME", help="The file's name in the desktop's transfer folder.")],
    output: Annotated[
        Path, typer.Option("--output", "-o", metavar="PATH", help="Where to save it: a file, or a folder.")
    ] = Path("."),
    ice_address: IceAddressOpt = None,
    ice_server: IceServerOpt = None,
    tls_fingerprint: TlsFingerprintOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Download a file from a shared desktop's transfer folder, with a progress bar; resumes over dropped
    connections. The file appears under its name only once complete and verified (SHA-256)."""
    from impromptu.files.client import run_fetch

    _setup_logging(verbose)
    try:
        url = _link_text(url)
        saved = asyncio.run(run_fetch(url, name, output, _ice(ice_address, ice_server), _pinned(tls_fingerprint)))
    except ValueError as exc:
        _fail(UsageError(str(exc)))
    except ImpromptuError as exc:
        _fail(exc)
    typer.echo(str(saved))
    _exit_with(0)


def _ice(
    addresses: list[str] | None,
    servers: list[str] | None,
    ports: str | None = None,
    public_address: str | None = None,
) -> IcePolicy:
    try:
        return IcePolicy.from_options(tuple(addresses or ()), tuple(servers or ()), ports, public_address)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


def _link_text(url: str) -> str:
    """A link given as an argument, or read from standard input for ``-``."""
    return sys.stdin.readline().strip() if url == "-" else url


def _pinned(fingerprint: str | None) -> aiohttp.Fingerprint | None:
    if fingerprint is None:
        return None
    try:
        digest = bytes.fromhex(fingerprint.replace(":", ""))
    except ValueError:
        digest = b""
    if len(digest) != 32:
        raise UsageError("--tls-fingerprint is not a SHA-256 fingerprint (64 hex digits, colons allowed)")
    return aiohttp.Fingerprint(digest)


@app.command("relay")
def relay(
    url: LinkArg,
    max_viewers: Annotated[
        int,
        typer.Option("--max-viewers", metavar="N", help=f"Serve at most N viewers (0 to {MAX_RELAY_VIEWERS})."),
    ] = DEFAULT_RELAY_VIEWERS,
    bind: Annotated[
        list[str] | None,
        typer.Option(
            "--bind",
            metavar="ADDR",
            help="Offer ICE host candidates on this address only: the interface the relay serves its viewers on "
            "(repeatable). Default: every interface.",
        ),
    ] = None,
    ice_server: IceServerOpt = None,
    ice_ports: IcePortsOpt = None,
    ice_public_address: IcePublicAddressOpt = None,
    tls_fingerprint: TlsFingerprintOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Relay a shared desktop: receive its stream as a viewer and serve it, unchanged, to viewers of its own,
    whom the desktop's signaling server sends here when the desktop has no room for them. Runs until Ctrl-C."""
    from impromptu.link import ViewerLink
    from impromptu.relay import RelayOptions, run_relay

    _setup_logging(verbose)
    try:
        url = _link_text(url)
        for address in bind or ():
            try:
                ipaddress.ip_address(address)
            except ValueError:
                raise UsageError(f"--bind {address!r} is not an IP address") from None
        try:
            link = ViewerLink.parse(url)
            # The relay's host candidates: the interfaces (and ports) it serves viewers on.
            ice = _ice(bind, ice_server, ice_ports, ice_public_address)
            options = RelayOptions(max_viewers=max_viewers, ice=ice, ssl_context=_pinned(tls_fingerprint))
        except ValueError as exc:
            raise UsageError(str(exc)) from exc
        code = asyncio.run(run_relay(link, options))
    except ImpromptuError as exc:
        _fail(exc)
    _exit_with(code)


@app.command("windows")
def windows(
    display: Annotated[
        str | None, typer.Option("--display", metavar=":N", help="The X display to look at. Default: $DISPLAY.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON array of window objects.")] = False,
) -> None:
    """List the display's top-level windows, bottom to top: id, geometry, pid, class and title."""
    from impromptu.display.windows import list_windows

    try:
        target = display or os.environ.get("DISPLAY")
        if not target:
            raise UsageError("no display to look at: pass --display :N or set DISPLAY")
        found = list_windows(target)
    except ImpromptuError as exc:
        _fail(exc)
    if as_json:
        typer.echo(json.dumps([w.as_json() for w in found]))
        return
    rows = [("ID", "GEOMETRY", "PID", "CLASS", "TITLE")]
    rows += [(w.id_hex, w.geometry, str(w.pid or "-"), _one_line(w.wm_class) or "-", _one_line(w.title)) for w in found]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        typer.echo("  ".join([*(cell.ljust(width) for cell, width in zip(row[:4], widths, strict=True)), row[4]]))


def _one_line(text: str) -> str:
    """``text`` with control characters (a title's newline, say) shown as spaces, so a table row stays one line."""
    return "".join(" " if ch.isspace() or not ch.isprintable() else ch for ch in text)


@app.command("doctor")
def doctor(
    display: Annotated[
        str | None, typer.Option("--display", help="Check this X display instead of a temporary Xvfb.")
    ] = None,
) -> None:
    """Check this machine: Xvfb, X extensions, encoders. Says what is missing and how to install it."""
    from impromptu.doctor import format_report, run_checks

    checks = run_checks(display)
    typer.echo(format_report(checks))
    if any(c.required and not c.ok for c in checks):
        raise typer.Exit(1)


def _fail(exc: ImpromptuError) -> None:
    typer.echo(f"impromptu: error: {exc}", err=True)
    raise typer.Exit(2 if isinstance(exc, UsageError) else 1)


def main() -> None:
    app()
