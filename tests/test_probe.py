"""`impromptu probe`: the stream rules it checks, its report, and the command against a live desktop."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import av
import numpy as np
import pytest

from impromptu.encode import Encoder
from impromptu.link import LinkKeys, Role, ViewerLink
from impromptu.probe import ProbeReport, StreamCheck, keyframe_in_payload
from impromptu.stream.framing import EncodedChunk
from tests.harness import IMPROMPTU, desktop_args, moving_app, probe_report, probing, run_desktop


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def h264_frames() -> tuple[bytes, bytes]:
    """A real keyframe and delta frame from impromptu's encoder."""
    encoder = Encoder(64, 48, 30)
    picture = np.zeros((48, 64, 4), np.uint8)
    key, is_key = encoder.encode(picture.tobytes(), 0, True)
    picture[10:20, 10:20] = 255
    delta, is_delta_key = encoder.encode(picture.tobytes(), 33_000, False)
    encoder.close()
    assert is_key and not is_delta_key
    return key, delta


def checker(codec: str = "avc1.42E00A") -> tuple[StreamCheck, ProbeReport, Clock, list[int]]:
    report = ProbeReport(url="http://x/", codec=codec)
    clock = Clock()
    requests: list[int] = []
    check = StreamCheck(report, lambda: requests.append(1), clock)
    check.opened()
    return check, report, clock, requests


def test_payload_keyframe_detection() -> None:
    key, delta = h264_frames()
    assert keyframe_in_payload("avc1.42E01F", key) is True
    assert keyframe_in_payload("avc1.42E01F", delta) is False
    assert keyframe_in_payload("vp8", b"\x10\x02\x00") is True
    assert keyframe_in_payload("vp8", b"\x11\x02\x00") is False
    assert keyframe_in_payload("av01", b"") is None


def test_counts_frames_from_the_first_keyframe_and_gaps_as_missed() -> None:
    key, delta = h264_frames()
    check, report, clock, requests = checker()
    clock.now += 0.2
    check.frame(EncodedChunk(0, 10, True, 0, key), lost_before=False)
    for seq, later in ((11, 0.5), (12, 0.5), (15, 0.5), (16, 0.1)):
        clock.now += later
        check.frame(EncodedChunk(0, seq, False, 0, delta), lost_before=seq == 15)
    report.skipped = 1  # the desktop said it skipped one of the two missing frames
    clock.now += 0.5
    check.finish()
    assert report.first_keyframe_s == pytest.approx(0.2)
    assert report.frames == 5 and report.keyframes == 1
    assert report.missed == 2 and report.lost == 1
    assert report.undecodable == 2 and requests == [1], "one keyframe request per 500 ms while waiting"
    assert report.seconds == pytest.approx(2.1) and report.fps == pytest.approx(5 / 2.1)
    assert report.per_second == [2, 3], "whole seconds only"
    assert report.ok


def test_rule_violations_are_reported() -> None:
    key, delta = h264_frames()
    check, report, _, _ = checker()
    check.frame(EncodedChunk(0, 1, False, 0, delta), lost_before=False)  # not a keyframe first
    check.frame(EncodedChunk(0, 2, False, 0, key), lost_before=False)  # an IDR flagged as a delta frame
    check.frame(EncodedChunk(0, 3, True, 0, key[-40:]), lost_before=False)  # a keyframe without SPS/PPS
    check.finish()
    assert report.violation_count == 4, report.violations
    assert not report.ok


def test_viewer_link_parsing() -> None:
    keys = LinkKeys.generate()
    control = ViewerLink.parse(f"http://127.0.0.1:8080/#{keys.control_fragment()}")
    view = ViewerLink.parse(f"https://[::1]:9/#{keys.view_fragment()}")
    assert (control.role, control.base_url, control.room) == (Role.CONTROL, "http://127.0.0.1:8080", keys.room)
    assert (view.role, view.base_url, view.room, view.view_key) == (Role.VIEW, "https://[::1]:9", keys.room, keys.view)
    assert keys.answer_role("p", "sdp", view.answer_mac("p", "sdp")) is Role.VIEW
    assert control.check_offer("p", "sdp", keys.offer_mac("p", "sdp"))
    assert not view.check_offer("p", "sdp!", keys.offer_mac("p", "sdp"))
    for bad in ("127.0.0.1:8080/#c=x", "http://h/", "http://h/#x=abc", "http://h/#c=tooshort", "http://h/#v=!!"):
        with pytest.raises(ValueError):
            ViewerLink.parse(bad)


def test_probe_command_reports_a_streaming_desktop_and_never_prints_the_key() -> None:
    with run_desktop("vdisplay", "run", *desktop_args("--size", "320x240"), "--", *moving_app(320, 240)) as desktop:
        with probing(desktop.url, 2) as proc:
            report = probe_report(proc, timeout=60)
        human = subprocess.run(  # the link on standard input: its key stays out of the process list
            [*IMPROMPTU, "probe", "-", "--seconds", "1", "--ice-address", "127.0.0.1"],
            input=desktop.view_url + "\n", capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert report["exit"] == 0 and report["ok"], report
    assert report["role"] == "control" and (report["width"], report["height"]) == (320, 240)
    assert report["frames"] > 10 and report["lost"] == 0 and report["fps"] > 5
    assert report["first_keyframe_s"] is not None
    key = desktop.url.partition("#")[2]
    assert key not in json.dumps(report)
    assert human.returncode == 0, human.stderr
    assert "frame rate" in human.stdout and "(view)" in human.stdout
    assert desktop.view_url.partition("#")[2] not in human.stdout + human.stderr


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["not a link"], 2, "is not an impromptu link"),
        (["127.0.0.1:9/#c=SECRET"], 2, "'127.0.0.1:9/' is not an impromptu link"),
        (["http://127.0.0.1:9/#c=abc"], 2, "the link is damaged"),
        (["http://127.0.0.1:9/#c=" + "A" * 43, "--tls-fingerprint", "zz"], 2, "--tls-fingerprint"),
        (["http://127.0.0.1:9/#c=" + "A" * 43, "--seconds", "1"], 1, "cannot reach http://127.0.0.1:9"),
    ],
)
def test_probe_command_errors_are_one_line(args: list[str], code: int, message: str) -> None:
    result = subprocess.run([*IMPROMPTU, "probe", *args], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == code, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_decodes_what_the_probe_receives() -> None:
    """The probe does not decode, but what it counts as a keyframe is one a decoder starts on."""
    key, _ = h264_frames()
    decoder = av.CodecContext.create("h264", "r")
    assert len(decoder.decode(av.Packet(key))) == 1


def test_a_first_keyframe_lost_on_the_way_is_waited_for_not_a_violation() -> None:
    key, delta = h264_frames()
    report = ProbeReport(url="http://x/", codec="avc1.42E00A")
    clock = Clock()
    requests: list[int] = []
    check = StreamCheck(report, lambda: requests.append(1), clock, lost_early=lambda: True)
    check.opened()
    check.frame(EncodedChunk(0, 5, False, 0, delta), lost_before=False)
    check.frame(EncodedChunk(0, 6, False, 0, delta), lost_before=False)
    clock.now += 0.3
    check.frame(EncodedChunk(0, 7, True, 0, key), lost_before=False)
    clock.now += 2.5
    check.finish()
    assert report.violation_count == 0 and report.ok
    assert report.undecodable == 2 and requests == [1]
    assert report.first_keyframe_s == pytest.approx(0.3)


def test_a_stream_that_stalls_shows_silent_seconds() -> None:
    key, _ = h264_frames()
    check, report, clock, _ = checker()
    check.frame(EncodedChunk(0, 1, True, 0, key), lost_before=False)
    clock.now += 3.5
    check.finish()
    assert report.per_second == [1, 0, 0]


FINGERPRINT_RE = re.compile(r"fingerprint: ([0-9A-F:]{95})")


def test_probe_trusts_an_https_desktop_by_its_fingerprint_only(tmp_path: Path) -> None:
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path))  # a fresh self-signed certificate
    args = ["--bind", "0.0.0.0:0", "--ice-address", "127.0.0.1", "--size", "320x240"]
    with run_desktop("vdisplay", "run", *args, "--", *moving_app(320, 240), env=env) as desktop:
        (fingerprint,) = {m.group(1) for line in desktop.stderr if (m := FINGERPRINT_RE.search(line))}
        port = desktop.url.split("/")[2].rsplit(":", 1)[1]
        url = f"https://127.0.0.1:{port}/#{desktop.url.partition('#')[2]}"  # stay on loopback
        with probing(url, 1, "--tls-fingerprint", fingerprint) as proc:
            pinned = probe_report(proc, timeout=60)
        unpinned = subprocess.run(
            [*IMPROMPTU, "probe", "-", "--seconds", "1", "--ice-address", "127.0.0.1"],
            input=url + "\n", capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        wrong = subprocess.run(
            [*IMPROMPTU, "probe", "-", "--seconds", "1", "--ice-address", "127.0.0.1", "--tls-fingerprint", "AB" * 32],
            input=url + "\n", capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert pinned["ok"] and pinned["frames"] > 0, pinned
    for refused in (unpinned, wrong):
        assert refused.returncode == 1, refused
        assert len(refused.stderr.strip().splitlines()) == 1 and "cannot reach https://127.0.0.1" in refused.stderr
