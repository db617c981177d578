"""The transfer folder (docs/protocol.md §9): its listing, uploads committed atomically and resumable, downloads.

Everything happens relative to one descriptor of the folder, opened once: a folder renamed or replaced later does
not redirect anything, and every file in it is opened with ``O_NOFOLLOW``, so a symbolic link planted in the
folder can neither be read through nor written through. Uploads go to a hidden partial file,
``.impromptu-<id>-<size>.part``, which only ever reaches a visible name complete, fsynced and verified: by a hard
link that fails if the name exists, or by ``rename`` when the page asked to replace.

An upload holds an exclusive ``flock`` on its partial for as long as it is open. That is what "in progress" means,
within this process and across processes (a second desktop sharing the folder, or one killed with SIGKILL, whose
locks the kernel drops): ``begin_upload`` answers "busy" to a held lock, and ``expire`` never deletes one.

Threads: ``TransferFolder`` methods may be called from any thread (they hold its lock only around the folder's
own descriptor, never while hashing). An ``Upload`` or ``Download`` belongs to one transfer; its methods are
serialised by its own lock so that ``TransferFolder.close`` can suspend uploads still open.
"""

from __future__ import annotations

import contextlib
import ctypes
import enum
import errno
import fcntl
import hashlib
import heapq
import logging
import os
import re
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from impromptu.errors import FileTransferError
from impromptu.files.names import check_name, free_variant, shorten

logger = logging.getLogger(__name__)

CHUNK = 1 << 20
"""The most read from disk at once (hashing what a partial or a download already holds, ``Download.read``)."""

BUSY = "busy: this file is already being uploaded over another connection; try again when that one ends"
DAMAGED = "the file arrived damaged (SHA-256 mismatch); nothing was saved"

PART_RE = re.compile(r"\.impromptu-([0-9a-f]{32})-(0|[1-9][0-9]{0,19})\.part")
ID_RE = re.compile(r"[0-9a-f]{32}")

# O_NONBLOCK: opening a FIFO planted under a name must not wait for a writer; on regular files it does nothing.
_OPEN_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_OPEN_PART = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_RENAME_NOREPLACE = 1  # linux/fs.h


def part_name(transfer_id: str, size: int) -> str:
    """The hidden name of an upload's data while it arrives: ``.impromptu-<id>-<size>.part``."""
    return f".impromptu-{transfer_id}-{size}.part"


def human_size(n: int) -> str:
    """``1536`` → ``"1.5 KiB"``: sizes in messages for people."""
    if n < 1024:
        return f"{n} bytes"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            break
    return f"{value:.1f} {unit}"


def _sizes(a: int, b: int) -> tuple[str, str]:
    """``a`` and ``b`` for people, exact when rounding would make them look the same (4.0 GiB and 4.0 GiB)."""
    text_a, text_b = human_size(a), human_size(b)
    return (f"{a} bytes", f"{b} bytes") if text_a == text_b else (text_a, text_b)


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _hash_prefix(fd: int, length: int, update: Callable[[bytes], None], name: str) -> None:
    """Feed bytes ``0…length-1`` of ``fd`` to ``update`` (a hash's), at most ``CHUNK`` at a time."""
    pos = 0
    while pos < length:
        data = os.pread(fd, min(CHUNK, length - pos), pos)
        if not data:
            raise FileTransferError(f"{shorten(name)} became shorter while it was being read; try again")
        update(data)
        pos += len(data)


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    """Write all of ``data`` at ``offset``: ``pwrite`` may write less than asked (a signal, a full disk)."""
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        if n == 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        offset += n
        view = view[n:]


def _rename_noreplace(src: str, dst: str, dir_fd: int) -> None:
    """``renameat2(…, RENAME_NOREPLACE)``: a move that fails with ``FileExistsError`` if ``dst`` exists.

    The standard library has no binding for it; glibc has had the function since 2.28.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    func = getattr(libc, "renameat2", None)
    if func is None:
        raise OSError(errno.ENOSYS, "renameat2 is not available in this C library")
    func.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    func.restype = ctypes.c_int
    if func(dir_fd, os.fsencode(src), dir_fd, os.fsencode(dst), _RENAME_NOREPLACE) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), dst)


@dataclass(frozen=True)
class FileEntry:
    """One file of the listing: ``mtime`` in Unix seconds."""

    name: str
    size: int
    mtime: float


class _State(enum.Enum):
    OPEN = "open"
    SUSPENDED = "suspended"
    COMMITTED = "committed"
    CANCELLED = "cancelled"


class TransferFolder:
    """The folder whose files viewers may list, download and upload to.

    Opening it deletes partial uploads left for longer than ``resume_s``. ``close()`` is idempotent, suspends
    uploads still open (their data stays for resuming), and the folder is a context manager.
    """

    def __init__(
        self, path: Path, *, max_size: int = 4 << 30, resume_s: float = 600.0, reserve: int = 64 << 20
    ) -> None:
        self.path = Path(path)
        self.max_size = max_size
        self.resume_s = resume_s
        self.reserve = reserve
        # Never held while taking an Upload's lock (the other order is the rule): see close().
        self._lock = threading.Lock()
        # transfer id -> its open Upload; None while begin_upload is still opening it.
        self._uploads: dict[str, Upload | None] = {}
        self._fd = self._open(self.path)
        try:
            self.expire()
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _open(path: Path) -> int:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError as exc:
            raise FileTransferError(f"the transfer folder {path} does not exist; create it or choose another") from exc
        except NotADirectoryError as exc:
            raise FileTransferError(f"the transfer folder {path} is not a folder; choose a folder") from exc
        except OSError as exc:
            raise FileTransferError(f"cannot open the transfer folder {path}: {exc.strerror}") from exc
        if not os.access(".", os.W_OK | os.X_OK, dir_fd=fd):
            os.close(fd)
            raise FileTransferError(
                f"the transfer folder {path} is not writable; change its permissions or choose another"
            )
        return fd

    def __enter__(self) -> TransferFolder:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def _dir(self) -> int:
        """The folder's descriptor; call with ``self._lock`` held so that ``close`` cannot pull it away."""
        if self._fd < 0:
            raise FileTransferError("the transfer folder is closed")
        return self._fd

    @contextlib.contextmanager
    def _scan(self) -> Iterator[Iterator[os.DirEntry[str]]]:
        """The folder's entries, read through a descriptor of their own.

        ``os.scandir(fd)`` reads through a duplicate of ``fd``, which shares its position: two scans of one
        descriptor at once (two threads listing) would each see part of the folder.
        """
        with self._lock:
            try:
                scan_fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=self._dir())
            except OSError as exc:
                raise FileTransferError(f"cannot read the transfer folder {self.path}: {exc.strerror}") from exc
        try:
            with os.scandir(scan_fd) as entries:
                yield entries
        finally:
            os.close(scan_fd)

    def listing(self, limit: int = 1000) -> list[FileEntry]:
        """The first ``limit`` regular files with acceptable names, sorted by name.

        Symbolic links, folders, other special files and hidden files (partial uploads among them) are left out.
        Memory stays bounded by ``limit``, however many files the folder holds.
        """

        def files(entries: Iterable[os.DirEntry[str]]) -> Iterator[FileEntry]:
            for entry in entries:
                try:
                    check_name(entry.name)
                    st = entry.stat(follow_symlinks=False)
                except (FileTransferError, OSError):
                    continue
                if stat.S_ISREG(st.st_mode):
                    yield FileEntry(entry.name, st.st_size, st.st_mtime)

        with self._scan() as entries:
            return heapq.nsmallest(limit, files(entries), key=lambda f: f.name)

    def expire(self) -> None:
        """Delete partial uploads untouched for ``resume_s`` seconds and held by no upload in progress."""
        with self._scan() as entries:
            names = [e.name for e in entries if PART_RE.fullmatch(e.name)]
        for name in names:
            with self._lock:
                if self._fd < 0:
                    return
                self._expire_one(name)

    def _expire_one(self, name: str) -> None:
        dir_fd = self._dir()
        try:
            fd = os.open(name, _OPEN_READ, dir_fd=dir_fd)
        except OSError:
            return  # gone already, or a symbolic link: not ours to delete
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return  # an upload in progress, here or in another process
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or time.time() - st.st_mtime < self.resume_s:
                return
            if not _names_file(dir_fd, name, st):
                return
            os.unlink(name, dir_fd=dir_fd)
            logger.info("deleted %s: a partial upload left for longer than %.0f s", name, self.resume_s)
        except OSError as exc:
            logger.warning("could not delete the stale partial upload %s: %s", name, exc.strerror)
        finally:
            os.close(fd)

    def begin_upload(self, transfer_id: str, name: str, size: int, *, takeover: bool = False) -> Upload:
        """Start, or resume, the upload ``transfer_id`` of ``size`` bytes to be called ``name``.

        The returned ``Upload.offset`` is how many bytes an earlier attempt with the same id and size left (the
        ``ready`` message's ``offset``); they have been hashed already. Raises ``FileTransferError`` for a bad id,
        name or size, a file larger than ``max_size`` or the free space, and ``BUSY`` for an id in progress.
        Hashing what is held reads it all: run this off the event loop.

        ``takeover``: an upload of this id still open in this process is suspended and this one resumes from it,
        instead of ``BUSY``. For a page that reconnects before the desktop has noticed its old connection drop
        (which can take its ICE consent timeout): the id is 128 random bits only that page knows. The old
        ``Upload`` then refuses writes; one held by another process is still ``BUSY``.
        """
        if not isinstance(transfer_id, str) or not ID_RE.fullmatch(transfer_id):
            raise FileTransferError("an upload id must be 32 lowercase hex digits")
        check_name(name)
        if not _is_count(size):
            raise FileTransferError("the file's size must be a whole number of bytes")
        if size > self.max_size:
            size_text, max_text = _sizes(size, self.max_size)
            raise FileTransferError(
                f"{shorten(name)} is too large ({size_text}); this desktop accepts files up to {max_text}"
            )
        for _ in range(3):
            with self._lock:
                self._dir()
                current = self._uploads.get(transfer_id)
                if transfer_id not in self._uploads:
                    self._uploads[transfer_id] = None
                    break
                if not takeover or current is None:
                    raise FileTransferError(BUSY)
            # Outside our lock: an Upload's lock is taken first, ours second (see close()).
            current.suspend()
            logger.info("upload %s taken over by a new connection at %d bytes", transfer_id, current.offset)
        else:
            raise FileTransferError(BUSY)
        upload: Upload | None = None
        try:
            with self._lock:
                fd, held = self._open_part(transfer_id, name, size)
            upload = Upload(self, fd, transfer_id, name, size, held)
        finally:
            with self._lock:
                if upload is None or self._fd < 0:
                    del self._uploads[transfer_id]
                else:
                    self._uploads[transfer_id] = upload
        if self.closed:
            upload.suspend()
            raise FileTransferError("the transfer folder is closed")
        return upload

    def _open_part(self, transfer_id: str, name: str, size: int) -> tuple[int, int]:
        """Create or reopen the partial, locked; its descriptor and how many bytes of it to keep."""
        dir_fd = self._dir()
        part = part_name(transfer_id, size)
        for _ in range(3):
            self._check_space(name, size - self._held(part, size), transfer_id)
            try:
                # Private to the desktop's user, as a browser's downloads are: the folder may be shared with others.
                fd = os.open(part, _OPEN_PART, 0o600, dir_fd=dir_fd)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise FileTransferError(
                        f"cannot store {shorten(name)}: a symbolic link is in the way ({part}); remove it"
                    ) from exc
                raise FileTransferError(f"cannot store {shorten(name)}: {exc.strerror}") from exc
            try:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode):
                    raise FileTransferError(f"cannot store {shorten(name)}: {part} is in the way; remove it")
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise FileTransferError(BUSY) from None
                if not _names_file(dir_fd, part, st):
                    os.close(fd)  # expired by another process between our open and our lock
                    continue
                if st.st_nlink > 1:
                    # A second name for this data: left by a commit interrupted between its link and its unlink
                    # (the file is saved already), or planted to make us write into a file outside the folder.
                    # Either way the data is not ours to add to: drop our name for it and start afresh.
                    os.unlink(part, dir_fd=dir_fd)
                    os.close(fd)
                    continue
                held = st.st_size
                if held > size:
                    os.ftruncate(fd, 0)
                    held = 0
                return fd, held
            except FileTransferError:
                os.close(fd)
                raise
            except OSError as exc:
                os.close(fd)
                raise FileTransferError(f"cannot store {shorten(name)}: {exc.strerror}") from exc
            except BaseException:
                os.close(fd)
                raise
        raise FileTransferError(f"cannot store {shorten(name)}: its partial data keeps changing; try again")

    def _held(self, part: str, size: int) -> int:
        """How many bytes of an upload the partial ``part`` holds already (for the free space check only)."""
        try:
            st = os.stat(part, dir_fd=self._dir(), follow_symlinks=False)
        except OSError:
            return 0
        return st.st_size if stat.S_ISREG(st.st_mode) and st.st_nlink == 1 and st.st_size <= size else 0

    def _check_space(self, name: str, needed: int, transfer_id: str) -> None:
        """Refuse unless ``needed`` bytes fit, besides the reserve and what the other uploads under way still need
        (they were promised their space). Called with ``_lock`` held."""
        try:
            st = os.statvfs(self._dir())
        except OSError as exc:
            raise FileTransferError(f"cannot tell the free space in the transfer folder: {exc.strerror}") from exc
        promised = sum(u.size - u.offset for tid, u in self._uploads.items() if u is not None and tid != transfer_id)
        spare = st.f_bavail * st.f_frsize - self.reserve - promised
        if needed > spare:
            needed_text, spare_text = _sizes(needed, max(0, spare))
            raise FileTransferError(
                f"not enough free space for {shorten(name)}: it needs {needed_text}, "
                f"the transfer folder has {spare_text} to spare"
            )

    def open_download(self, name: str, offset: int = 0) -> Download:
        """Open the regular file ``name`` to send from byte ``offset`` (what the page already holds).

        The bytes before ``offset`` are hashed here (run this off the event loop) so that ``Download.sha256``
        covers the whole file.
        """
        check_name(name)
        if not _is_count(offset):
            raise FileTransferError("the download offset must be a whole number of bytes")
        with self._lock:
            dir_fd = self._dir()
            try:
                fd = os.open(name, _OPEN_READ, dir_fd=dir_fd)
            except FileNotFoundError as exc:
                raise FileTransferError(f"there is no file named {shorten(name)} in the transfer folder") from exc
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise FileTransferError(
                        f"{shorten(name)} is a symbolic link; only regular files can be downloaded"
                    ) from exc
                raise FileTransferError(f"cannot open {shorten(name)}: {exc.strerror}") from exc
        return Download(fd, name, offset)

    def _commit(self, part: str, name: str, replace: bool) -> str:
        """Give the verified, fsynced partial ``part`` its name; the name it got."""
        with self._lock:
            dir_fd = self._dir()
            try:
                if replace:
                    # rename(2) replaces a symbolic link itself, never what it points to.
                    os.replace(part, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
                    final = name
                else:
                    final = self._link_free(part, name, dir_fd)
            except IsADirectoryError as exc:
                raise FileTransferError(f"cannot replace {shorten(name)}: it is a folder") from exc
            except OSError as exc:
                raise FileTransferError(f"could not save {shorten(name)}: {exc.strerror}") from exc
            # The file has its name, complete and fsynced: from here on it is saved, whatever else fails.
            try:
                os.fsync(dir_fd)
            except OSError as exc:
                logger.warning("saved %s, but could not fsync the transfer folder: %s", final, exc.strerror)
            return final

    def _link_free(self, part: str, name: str, dir_fd: int) -> str:
        """Link ``part`` to the first free variant of ``name``, never replacing anything; then unlink ``part``."""

        def taken(candidate: str) -> bool:
            try:
                os.stat(candidate, dir_fd=dir_fd, follow_symlinks=False)
            except FileNotFoundError:
                return False
            return True

        for _ in range(100):
            final = free_variant(name, taken)
            try:
                os.link(part, final, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
            except FileExistsError:
                continue  # taken between our look and our link: the next variant
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK):
                    raise
                # No hard links on this file system (FAT, exFAT, some network ones): move without replacing.
                try:
                    _rename_noreplace(part, final, dir_fd)
                except FileExistsError:
                    continue
                except OSError as exc2:
                    raise FileTransferError(
                        "the transfer folder's file system can neither link nor move a file without replacing "
                        f"another ({exc2.strerror}); choose a folder on another file system"
                    ) from exc2
                return final
            try:
                os.unlink(part, dir_fd=dir_fd)
            except OSError as exc:
                # Saved all the same; the stale second name goes when it expires.
                logger.warning("saved %s, but could not delete %s: %s", final, part, exc.strerror)
            return final
        raise FileTransferError(f"could not find a free name for {shorten(name)}; rename the file and try again")

    def _remove_part(self, part: str) -> None:
        """Delete a partial; a failure is logged (it goes when it expires), a closed folder keeps it."""
        with self._lock:
            if self._fd < 0:
                return
            try:
                os.unlink(part, dir_fd=self._fd)
            except FileNotFoundError:
                pass
            except OSError as exc:
                logger.warning("could not delete the partial upload %s: %s", part, exc.strerror)

    def _unregister(self, upload: Upload) -> None:
        with self._lock:
            if self._uploads.get(upload.transfer_id) is upload:
                del self._uploads[upload.transfer_id]

    def close(self) -> None:
        """Suspend the uploads still open (their data stays, to resume) and close the folder. Idempotent."""
        with self._lock:
            uploads = [u for u in self._uploads.values() if u is not None]
        for upload in uploads:
            upload.suspend()
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


def _names_file(dir_fd: int, name: str, st: os.stat_result) -> bool:
    """Whether ``name`` in the folder is still the file ``st`` describes (not unlinked or replaced meanwhile)."""
    try:
        now = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino)


class Upload:
    """One file arriving: written to its partial and hashed as it comes, then committed, suspended or cancelled.

    Made by ``TransferFolder.begin_upload``. As a context manager it suspends on exit whatever is not committed
    or cancelled by then (a dropped connection keeps its data for resuming).
    """

    def __init__(self, folder: TransferFolder, fd: int, transfer_id: str, name: str, size: int, held: int) -> None:
        self.transfer_id = transfer_id
        self.name = name
        self.size = size
        self._folder = folder
        self._fd = fd
        self._part = part_name(transfer_id, size)
        self._sha = hashlib.sha256()
        self._offset = 0
        self._state = _State.OPEN
        self._lock = threading.Lock()
        try:
            _hash_prefix(fd, held, self._sha.update, name)
        except OSError as exc:
            os.close(fd)
            raise FileTransferError(f"cannot read what arrived of {shorten(name)}: {exc.strerror}") from exc
        except BaseException:
            os.close(fd)
            raise
        self._offset = held

    @property
    def offset(self) -> int:
        """How many bytes of the file are held (and hashed) so far."""
        return self._offset

    @property
    def state(self) -> str:
        """``"open"``, ``"suspended"``, ``"committed"`` or ``"cancelled"``."""
        return self._state.value

    def __enter__(self) -> Upload:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.suspend()

    def _check_open(self) -> None:
        if self._state is not _State.OPEN:
            raise FileTransferError(f"the upload of {shorten(self.name)} is {self._state.value}; start it again")

    def _finish(self, state: _State) -> None:
        os.close(self._fd)  # also drops the flock: the partial is no longer in progress
        self._fd = -1
        self._state = state
        self._folder._unregister(self)

    def write(self, data: bytes) -> None:
        """Append ``data`` at ``offset``; refused if it would go past ``size``."""
        with self._lock:
            self._check_open()
            if self._offset + len(data) > self.size:
                raise FileTransferError(
                    f"more data arrived for {shorten(self.name)} than the {self.size} bytes announced"
                )
            try:
                _pwrite_all(self._fd, data, self._offset)
            except OSError as exc:
                # Keep the partial exactly what was hashed, so that a resume continues from the right place.
                with contextlib.suppress(OSError):
                    os.ftruncate(self._fd, self._offset)
                raise FileTransferError(f"could not save {shorten(self.name)}: {exc.strerror}") from exc
            self._sha.update(data)
            self._offset += len(data)

    def commit(self, sha256_hex: str, replace: bool) -> str:
        """Check ``sha256_hex`` (lowercase hex of the whole file) and give the file its name; the name it got.

        With ``replace`` a file of that name is replaced, else the first free variant is taken. On a hash
        mismatch the data is deleted and ``DAMAGED`` raised. Other failures leave the upload open (to cancel).
        """
        with self._lock:
            self._check_open()
            if self._offset != self.size:
                raise FileTransferError(
                    f"the upload of {shorten(self.name)} ended early: {self._offset} of {self.size} bytes arrived"
                )
            if sha256_hex != self._sha.hexdigest():
                try:
                    self._folder._remove_part(self._part)
                finally:
                    self._finish(_State.CANCELLED)
                raise FileTransferError(DAMAGED)
            try:
                os.fsync(self._fd)
            except OSError as exc:
                raise FileTransferError(f"could not save {shorten(self.name)}: {exc.strerror}") from exc
            final = self._folder._commit(self._part, self.name, replace)
            self._finish(_State.COMMITTED)
            return final

    def suspend(self) -> None:
        """The connection was lost: keep the data (touched, so it lasts ``resume_s`` from now). Idempotent."""
        with self._lock:
            if self._state is not _State.OPEN:
                return
            with contextlib.suppress(OSError):
                os.utime(self._fd)
            self._finish(_State.SUSPENDED)

    def cancel(self) -> None:
        """Delete the data. Idempotent; does nothing once committed or suspended."""
        with self._lock:
            if self._state is not _State.OPEN:
                return
            try:
                self._folder._remove_part(self._part)
            finally:
                self._finish(_State.CANCELLED)


class Download:
    """One file being sent, read from ``offset`` on, with the SHA-256 of the whole file.

    Made by ``TransferFolder.open_download``. ``size`` is the file's size when opened: no more is sent. A file
    that changes while being sent fails: ``read`` if it shrinks, ``sha256`` if its size or modification time
    differ from when it was opened (the hash of what was read would match on the page, mixed as it is).
    ``close()`` is idempotent; also a context manager.
    """

    def __init__(self, fd: int, name: str, offset: int) -> None:
        self.name = name
        self._fd = fd
        self._sha = hashlib.sha256()
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise FileTransferError(f"{shorten(name)} is not a regular file; only regular files can be downloaded")
            if offset > st.st_size:
                raise FileTransferError(
                    f"cannot continue the download of {shorten(name)} at byte {offset}: it has {st.st_size} bytes now"
                )
            _hash_prefix(fd, offset, self._sha.update, name)
        except OSError as exc:
            os.close(fd)
            raise FileTransferError(f"cannot read {shorten(name)}: {exc.strerror}") from exc
        except BaseException:
            os.close(fd)
            raise
        self.size = st.st_size
        self.offset = offset
        self._pos = offset
        self._version = (st.st_size, st.st_mtime_ns)

    @property
    def position(self) -> int:
        """The next byte ``read`` returns."""
        return self._pos

    def __enter__(self) -> Download:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def read(self, n: int = 65536) -> bytes:
        """The next at most ``n`` (and at most ``CHUNK``) bytes; ``b""`` once ``size`` bytes are read."""
        if self._fd < 0:
            raise FileTransferError(f"the download of {shorten(self.name)} is closed")
        n = min(n, CHUNK, self.size - self._pos)
        if n <= 0:
            return b""
        try:
            data = os.pread(self._fd, n, self._pos)
        except OSError as exc:
            raise FileTransferError(f"cannot read {shorten(self.name)}: {exc.strerror}") from exc
        if not data:
            raise FileTransferError(f"{shorten(self.name)} became shorter while it was being sent; try again")
        self._sha.update(data)
        self._pos += len(data)
        return data

    def sha256(self) -> str:
        """Lowercase hex SHA-256 of the whole file, once read to the end; ``FileTransferError`` if it changed."""
        if self._pos < self.size:
            raise RuntimeError(f"Download.sha256() before the end: {self._pos} of {self.size} bytes read")
        if self._fd >= 0:
            try:
                st = os.fstat(self._fd)
            except OSError as exc:
                raise FileTransferError(f"cannot read {shorten(self.name)}: {exc.strerror}") from exc
            if (st.st_size, st.st_mtime_ns) != self._version:
                raise FileTransferError(f"{shorten(self.name)} changed while it was being sent; try again")
        return self._sha.hexdigest()

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
