"""File transfers from the operator page in real Chromium (docs/protocol.md §9): the file picker and drag and drop
upload, the panel's buttons download, byte for byte — small, empty, unicode-named and 200 MB files; a dropped
connection resumes; cancel leaves nothing; the desktop's refusals are shown; a view-only link downloads only."""

from __future__ import annotations

import filecmp
import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser import open_operator
from tests.harness import Desktop, desktop_args, run_desktop, wait_for

BIG = 200 << 20
UNICODE = "Zürich 東京 ✓.txt"
FINISHED = "['done', 'failed', 'cancelled']"


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Files a user would pick: small, empty, unicode-named, and 200 MB (written without holding it in memory)."""
    folder = tmp_path_factory.mktemp("sources")
    (folder / "small.txt").write_bytes(b"hello from the page\n")
    (folder / "empty.bin").write_bytes(b"")
    (folder / UNICODE).write_text("grüße\n")
    rng = random.Random(11)
    with (folder / "big.bin").open("wb") as file:
        for _ in range(BIG >> 20):
            file.write(rng.randbytes(1 << 20))
    return folder


@pytest.fixture
def desktop(xvfb_display: str, tmp_path: Path) -> Iterator[tuple[Desktop, Path]]:
    folder = tmp_path / "desk"
    with run_desktop("share", "--display", xvfb_display, *desktop_args("--files", str(folder))) as d:
        yield d, folder


def files_page(browser: Any, url: str) -> Any:
    page = open_operator(browser, url)
    page.wait_for_function("() => window.impromptu.files.list !== null", timeout=10_000)
    return page


def transfers(page: Any) -> list[dict[str, Any]]:
    return list(page.evaluate("window.impromptu.files.transfers"))


def wait_all_finished(page: Any, timeout_s: float = 240) -> list[dict[str, Any]]:
    page.wait_for_function(
        f"() => window.impromptu.files.transfers.every(t => {FINISHED}.includes(t.state))",
        timeout=timeout_s * 1000,
        polling=100,
    )
    return transfers(page)


def test_uploads_from_the_picker_are_byte_exact_and_listed(
    browser: Any, desktop: tuple[Desktop, Path], sources: Path
) -> None:
    d, folder = desktop
    page = files_page(browser, d.url)
    assert page.evaluate("window.impromptu.files.canUpload") is True
    page.click("#files-btn")
    names = ["small.txt", "empty.bin", UNICODE, "big.bin"]
    page.set_input_files("#file-input", files=[str(sources / name) for name in names])
    done = wait_all_finished(page)
    assert [(t["name"], t["state"], t["error"] or None) for t in done] == [(n, "done", None) for n in names]
    for name in names:
        assert filecmp.cmp(sources / name, folder / name, shallow=False), f"{name} differs on the desktop"
    assert sorted(os.listdir(folder)) == sorted(names), "something besides the files is in the folder"
    page.wait_for_function(f"() => window.impromptu.files.list.files.length === {len(names)}")
    shown = page.locator("#file-list").inner_text()
    assert all(name in shown for name in names)
    assert page.errors == []

    # The same name again: saved under a free variant, and the page says so.
    page.set_input_files("#file-input", files=[str(sources / "small.txt")])
    last = wait_all_finished(page)[-1]
    assert last["savedAs"] == "small (1).txt"
    assert "Saved as small (1).txt" in page.locator("#files").inner_text()


def test_downloads_from_the_panel_are_byte_exact(browser: Any, desktop: tuple[Desktop, Path], sources: Path) -> None:
    d, folder = desktop
    for name in ("small.txt", "empty.bin", UNICODE, "big.bin"):
        os.link(sources / name, folder / name)  # the desktop's own files
    page = files_page(browser, d.view_url)  # a view-only link downloads
    assert page.evaluate("window.impromptu.files.canUpload") is False
    page.click("#files-btn")
    assert not page.is_visible("#files-upload")
    for name in ("small.txt", "empty.bin", UNICODE, "big.bin"):
        with page.expect_download(timeout=240_000) as info:
            page.click(f'button[aria-label="Download {name}"]')
        download = info.value
        assert download.suggested_filename == name
        assert filecmp.cmp(download.path(), sources / name, shallow=False), f"{name} differs in the browser"
    assert all(t["state"] == "done" for t in wait_all_finished(page))


def test_a_dropped_connection_resumes_both_ways(browser: Any, desktop: tuple[Desktop, Path], tmp_path: Path) -> None:
    d, folder = desktop
    data = random.Random(12).randbytes(40 << 20)
    (tmp_path / "resume.bin").write_bytes(data)
    page = files_page(browser, d.url)
    page.set_input_files("#file-input", files=[str(tmp_path / "resume.bin")])
    page.wait_for_function("() => window.impromptu.files.transfers.at(-1).sent > 8 * 2 ** 20", polling=20)
    page.evaluate("window.impromptu.dropConnection()")
    assert not (folder / "resume.bin").exists(), "a partial file appeared under its name"
    upload = wait_all_finished(page)[-1]
    assert upload["state"] == "done", upload["error"]
    assert upload["offsets"][0] == 0 and upload["offsets"][-1] > 0, "the upload started again instead of resuming"
    assert (folder / "resume.bin").read_bytes() == data
    assert [n for n in os.listdir(folder) if n.startswith(".")] == [], "resumed data was left behind"

    with page.expect_download(timeout=120_000) as info:
        page.evaluate("window.impromptu.files.download('resume.bin')")
        page.wait_for_function("() => window.impromptu.files.transfers.at(-1).received > 8 * 2 ** 20", polling=10)
        page.evaluate("window.impromptu.dropConnection()")
    assert Path(info.value.path()).read_bytes() == data
    assert transfers(page)[-1]["offsets"][-1] > 0, "the download started again instead of resuming"


def test_drop_cancel_and_refusals(browser: Any, desktop: tuple[Desktop, Path], tmp_path: Path) -> None:
    d, folder = desktop
    page = files_page(browser, d.url)
    # Drag and drop onto the desktop's picture: files made in the page, as a drop from the file manager brings.
    page.evaluate(
        """() => {
          const dt = new DataTransfer();
          dt.items.add(new File(['dropped one'], 'one.txt'));
          dt.items.add(new File(['dropped two'], 'two.txt'));
          const stage = document.querySelector('canvas');
          for (const type of ['dragenter', 'dragover', 'drop']) {
            stage.dispatchEvent(new DragEvent(type, {dataTransfer: dt, bubbles: true, cancelable: true}));
          }
        }"""
    )
    assert [t["state"] for t in wait_all_finished(page)] == ["done", "done"]
    assert (folder / "one.txt").read_text() == "dropped one" and (folder / "two.txt").read_text() == "dropped two"

    # Cancelled half way: nothing under its name, no hidden data left.
    (tmp_path / "cancel.bin").write_bytes(random.Random(13).randbytes(40 << 20))
    page.set_input_files("#file-input", files=[str(tmp_path / "cancel.bin")])
    page.wait_for_function("() => window.impromptu.files.transfers.at(-1).sent > 4 * 2 ** 20", polling=20)
    page.evaluate("window.impromptu.files.cancel(window.impromptu.files.transfers.at(-1).id)")
    assert wait_all_finished(page)[-1]["state"] == "cancelled"
    wait_for(lambda: sorted(os.listdir(folder)) == ["one.txt", "two.txt"], 10, "the cancelled data to be deleted")

    # A name the desktop refuses: the reason is shown, nothing is saved.
    (tmp_path / ".hidden").write_text("x")
    page.click("#files-btn")
    page.set_input_files("#file-input", files=[str(tmp_path / ".hidden")])
    failed = wait_all_finished(page)[-1]
    assert failed["state"] == "failed" and "dot" in failed["error"]
    assert "dot" in page.locator("#files [role=alert]").last.inner_text()
    assert sorted(os.listdir(folder)) == ["one.txt", "two.txt"]
