"""``--files``/``--no-files`` on a desktop process, ``impromptu send`` and ``impromptu fetch`` as a user runs them, and
a desktop killed with SIGKILL in the middle of an upload: nothing ever appears under the file's name but the whole,
verified file."""

from __future__ import annotations

import os
import random
import subprocess
from pathlib import Path

from tests.harness import IMPROMPTU, desktop_args, run_desktop, wait_for
from tests.test_cli import assert_one_line_error, impromptu

ROOT = Path(__file__).parent.parent


def transfer(*args: str, link: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``impromptu ARGS`` with the link on standard input (``-``), as the docs advise."""
    return subprocess.run(
        [*IMPROMPTU, *args], input=link + "\n", capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


def test_send_and_fetch_through_a_desktop_process(xvfb_display: str, tmp_path: Path) -> None:
    folder = tmp_path / "desk"
    data = random.Random(3).randbytes(1_500_000)
    (tmp_path / "notes.bin").write_bytes(data)
    with run_desktop("share", "--display", xvfb_display, *desktop_args("--files", str(folder))) as desktop:
        assert any(f"uploads go to {folder}" in line for line in desktop.stderr)
        sent = transfer("send", "-", str(tmp_path / "notes.bin"), str(tmp_path / "notes.bin"), link=desktop.url)
        assert sent.returncode == 0, sent.stderr
        assert sent.stdout.split("\n")[:2] == ["notes.bin", "notes (1).bin"]
        assert (folder / "notes.bin").read_bytes() == data
        assert "100%" in sent.stderr  # the progress lines
        out = tmp_path / "out"
        out.mkdir()
        fetched = transfer("fetch", "-", "notes (1).bin", "-o", str(out), link=desktop.view_url)
        assert fetched.returncode == 0, fetched.stderr
        assert (out / "notes (1).bin").read_bytes() == data
        assert sorted(os.listdir(out)) == ["notes (1).bin"]

        missing = transfer("fetch", "-", "nothing.txt", "-o", str(out), link=desktop.url)
        assert missing.returncode == 1
        assert_one_line_error(missing, "nothing.txt")
        refused = transfer("send", "-", str(tmp_path / "notes.bin"), link=desktop.view_url)
        assert refused.returncode == 1
        assert_one_line_error(refused, "may not upload")


def test_a_desktop_without_files_says_so(xvfb_display: str, tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("a")
    with run_desktop("share", "--display", xvfb_display, *desktop_args("--no-files")) as desktop:
        assert not any("uploads go to" in line for line in desktop.stderr)
        result = transfer("send", "-", str(tmp_path / "a.txt"), link=desktop.url)
        assert result.returncode == 1
        assert_one_line_error(result, "takes no files")


def test_bad_file_options_are_one_line_and_status_2(tmp_path: Path) -> None:
    result = impromptu("share", "--display", ":99", "--max-file-size", "lots")
    assert result.returncode == 2
    assert_one_line_error(result, "--max-file-size")
    result = impromptu("share", "--display", ":99", "--no-files", "--files", str(tmp_path))
    assert result.returncode == 2
    assert_one_line_error(result, "--no-files")
    result = impromptu("send", "http://127.0.0.1:9/#c=x", str(tmp_path / "missing.txt"))
    assert result.returncode == 2
    assert_one_line_error(result, "missing.txt")


def test_a_desktop_killed_mid_upload_leaves_no_file_under_its_name(xvfb_display: str, tmp_path: Path) -> None:
    folder = tmp_path / "desk"
    big = tmp_path / "big.bin"
    with big.open("wb") as file:  # 200 MB, not kept in memory
        chunk = random.Random(5).randbytes(1 << 20)
        for _ in range(200):
            file.write(chunk)
    args = ("share", "--display", xvfb_display, *desktop_args("--files", str(folder)))
    with run_desktop(*args) as desktop:
        sender = subprocess.Popen(
            [*IMPROMPTU, "send", "-", str(big)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=ROOT,
        )
        try:
            assert sender.stdin is not None
            sender.stdin.write(desktop.url + "\n")
            sender.stdin.close()

            def partial_grew() -> bool:
                parts = [p for p in folder.iterdir() if p.name.startswith(".impromptu-")]
                return bool(parts) and parts[0].stat().st_size > 10 << 20

            wait_for(partial_grew, 60, "the upload to be under way")
            desktop.kill()
        finally:
            sender.kill()
            sender.wait()
    assert [p.name for p in folder.iterdir() if not p.name.startswith(".")] == []
    with run_desktop(*args) as desktop:
        assert [p.name for p in folder.iterdir() if not p.name.startswith(".")] == []
        sent = transfer("send", "-", str(big), link=desktop.url, timeout=300)
        assert sent.returncode == 0, sent.stderr
        assert sent.stdout.strip() == "big.bin"
        assert (folder / "big.bin").stat().st_size == big.stat().st_size
        assert subprocess.run(["cmp", str(big), str(folder / "big.bin")]).returncode == 0
