"""The command line's contract: exit statuses, one-line errors, and nothing left behind."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from tests.harness import IMPROMPTU, desktop_args, run_desktop

ROOT = Path(__file__).parent.parent


def impromptu(*args: str, env: dict[str, str] | None = None, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*IMPROMPTU, *args],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=timeout,
        env=env,
        cwd=ROOT,
    )


def xvfb_processes(marker: str) -> list[str]:
    """Xvfb processes whose command line contains ``marker`` (a screen size unique to one test)."""
    found = subprocess.run(["pgrep", "-af", "Xvfb"], capture_output=True, text=True).stdout.splitlines()
    return [line for line in found if marker in line]


def assert_one_line_error(result: subprocess.CompletedProcess[str], text: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("impromptu: error: ") and text in lines[0], lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("size", ["12", "axb", "0x100", "100000x100", "1280x"])
def test_bad_size(size: str) -> None:
    result = impromptu("vdisplay", "run", "--size", size, "--", "xterm")
    assert result.returncode == 2
    assert_one_line_error(result, "--size")


@pytest.mark.parametrize("bind", ["nowhere", "127.0.0.1:http", "127.0.0.1:70000", ":8080"])
def test_bad_bind(bind: str) -> None:
    result = impromptu("vdisplay", "run", "--bind", bind, "--", "xterm")
    assert result.returncode == 2
    assert_one_line_error(result, "--bind")


def test_bad_ice_address() -> None:
    result = impromptu("vdisplay", "run", "--ice-address", "eth0", "--", "xterm")
    assert result.returncode == 2
    assert_one_line_error(result, "--ice-address")


def test_command_not_found_stops_xvfb_again() -> None:
    result = impromptu("vdisplay", "run", *desktop_args("--size", "1234x566"), "--", "no-such-command-xyz")
    assert result.returncode == 1
    assert_one_line_error(result, "command not found: no-such-command-xyz")
    assert not xvfb_processes("1234x566x24")


def test_missing_xvfb_names_the_package(tmp_path: Path) -> None:
    env = dict(os.environ, PATH=str(tmp_path))  # nothing on PATH, so no Xvfb
    result = impromptu("vdisplay", "run", *desktop_args(), "--", "xterm", env=env)
    assert result.returncode == 1
    assert_one_line_error(result, "apt-get install xvfb")


def test_port_in_use() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = impromptu("vdisplay", "run", "--bind", f"127.0.0.1:{port}", "--size", "1234x568", "--", "xterm")
    assert result.returncode == 1
    assert_one_line_error(result, f"port {port} on 127.0.0.1 is in use")
    assert not xvfb_processes("1234x568x24")


def test_unreachable_display() -> None:
    result = impromptu("share", "--display", ":987", *desktop_args())
    assert result.returncode == 1
    assert_one_line_error(result, ":987")


def test_share_without_any_display() -> None:
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    result = impromptu("share", *desktop_args(), env=env)
    assert result.returncode == 2
    assert_one_line_error(result, "DISPLAY")


def test_exits_with_the_command_status() -> None:
    result = impromptu("vdisplay", "run", *desktop_args("--size", "1234x570"), "--", "sh", "-c", "exit 7")
    assert result.returncode == 7, result.stderr
    assert not xvfb_processes("1234x570x24")


def test_sigterm_stops_everything_within_5_seconds() -> None:
    with run_desktop("vdisplay", "run", *desktop_args("--size", "1234x572"), "--", "sleep", "600") as desktop:
        children = subprocess.run(["pgrep", "-P", str(desktop.proc.pid)], capture_output=True, text=True).stdout.split()
        assert len(children) == 2  # Xvfb and sleep
        socket_file = Path(f"/tmp/.X11-unix/X{desktop.display.lstrip(':')}")
        assert socket_file.exists()
        desktop.proc.send_signal(signal.SIGTERM)
        assert desktop.proc.wait(timeout=5) == 128 + signal.SIGTERM
    assert not socket_file.exists()
    for pid in children:
        assert not Path(f"/proc/{pid}").exists(), f"child {pid} survived"
    assert not xvfb_processes("1234x572x24")


def test_url_carries_the_secret_only_in_the_fragment() -> None:
    with run_desktop("vdisplay", "run", *desktop_args(), "--", "sleep", "600") as desktop:
        base, _, fragment = desktop.url.partition("#")
        assert base.startswith("http://127.0.0.1:") and base.endswith("/")
        assert fragment.startswith("c=") and len(fragment) == 2 + 43  # 32 random bytes, base64url


def test_help_runs() -> None:
    result = impromptu("vdisplay", "run", "--help")
    assert result.returncode == 0 and "--ice-address" in result.stdout


def _served_fingerprint(port: int) -> str:
    import hashlib
    import ssl

    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port)) as raw, context.wrap_socket(raw) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())


def test_non_loopback_bind_serves_https_with_a_kept_self_signed_certificate(tmp_path: Path) -> None:
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path))
    fingerprints = []
    for _ in range(2):
        with run_desktop(
            "vdisplay", "run", "--bind", "0.0.0.0:0", "--ice-address", "127.0.0.1", "--", "sleep", "600", env=env
        ) as desktop:
            printed = next(line for line in desktop.stderr if "fingerprint" in line).split()[-1]
            assert desktop.url.startswith("https://")
            port = int(desktop.url.split("/")[2].rsplit(":", 1)[1])
            assert _served_fingerprint(port) == printed
            fingerprints.append(printed)
    assert fingerprints[0] == fingerprints[1], "generated once, then kept"
    assert list((tmp_path / "impromptu" / "tls").iterdir())


def test_doctor_reports_this_machine() -> None:
    result = impromptu("doctor")
    assert result.returncode == 0, result.stdout
    for name in ("Xvfb", "XTEST", "MIT-SHM", "DAMAGE", "H.264"):
        assert name in result.stdout


def test_doctor_on_an_unreachable_display_says_how_to_fix_it() -> None:
    result = impromptu("doctor", "--display", ":987")
    assert result.returncode == 1
    assert "fix:" in result.stdout and "Traceback" not in result.stderr


@pytest.mark.parametrize("url", ["stun:", "http://example.org", "turn:turn.example.org"])
def test_bad_ice_server(url: str) -> None:
    result = impromptu("vdisplay", "run", "--ice-server", url, "--", "xterm")
    assert result.returncode == 2
    assert_one_line_error(result, "--ice-server")


def test_a_command_that_cannot_be_executed(tmp_path: Path) -> None:
    script = tmp_path / "no-shebang"
    script.write_text("echo hi\n")
    script.chmod(0o755)
    result = impromptu("vdisplay", "run", *desktop_args("--size", "1234x574"), "--", str(script))
    assert result.returncode == 1
    assert_one_line_error(result, "cannot run")
    assert not xvfb_processes("1234x574x24")


def test_ctrl_c_while_an_x_server_does_not_answer() -> None:
    """A display that accepts the connection but never answers: Ctrl-C still ends `share` at once."""
    number = next(n for n in range(900, 1000) if not Path(f"/tmp/.X11-unix/X{n}").exists())
    path = Path(f"/tmp/.X11-unix/X{number}")
    path.parent.mkdir(exist_ok=True)
    with socket.socket(socket.AF_UNIX) as silent:
        silent.bind(str(path))
        silent.listen()
        proc = subprocess.Popen(
            [*IMPROMPTU, "share", "--display", f":{number}", *desktop_args()],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        try:
            silent.settimeout(30)
            conn, _ = silent.accept()  # the desktop is now waiting for the server's answer
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=5) in (0, 130)
            conn.close()
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()
            path.unlink()
