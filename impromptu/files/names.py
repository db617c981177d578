"""File names in the transfer folder (docs/protocol.md §9 "Names"): which are acceptable, and free variants.

A name is one path component, 1 to 255 bytes of UTF-8, without ``/``, ``\\``, NUL or control characters, not
``.`` or ``..`` and not starting with a dot. Anything else is refused with a reason, never cleaned up into
something else: a page that sends ``../x`` learns that it cannot, rather than finding ``x`` somewhere.
"""

from __future__ import annotations

from collections.abc import Callable

from impromptu.errors import FileTransferError

MAX_NAME_BYTES = 255
"""The longest name in bytes of UTF-8: ``NAME_MAX`` on Linux file systems."""

MAX_VARIANTS = 10_000
"""``free_variant`` gives up after ``name (9999)``: a folder with that many is not a folder to add to."""


_DECEPTIVE = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u2028\u2029")
"""Bidirectional formatting characters (Unicode's Bidi_Control) and the line and paragraph separators."""


def check_name(name: str) -> str:
    """Return ``name`` unchanged if it is acceptable, else raise ``FileTransferError`` saying why (one line)."""
    if not isinstance(name, str):
        raise FileTransferError("a file name must be text")
    if not name:
        raise FileTransferError("file names cannot be empty")
    if "\0" in name:
        raise FileTransferError("file names cannot contain NUL characters")
    # C0 controls, DEL and C1 controls: Unicode category Cc exactly.
    if any(c < " " or "\x7f" <= c <= "\x9f" for c in name):
        raise FileTransferError("file names cannot contain control characters (such as newlines or tabs)")
    if any(c in _DECEPTIVE for c in name):
        # Right-to-left overrides make "txt.exe" read as "exe.txt"; line separators break one-line displays.
        raise FileTransferError("file names cannot contain text-direction controls or line separators")
    if "/" in name:
        raise FileTransferError("file names cannot contain '/'")
    if "\\" in name:
        raise FileTransferError("file names cannot contain '\\'")
    if name in (".", ".."):
        raise FileTransferError("file names cannot be '.' or '..'")
    if name.startswith("."):
        raise FileTransferError("file names cannot start with a dot (hidden files are not shared)")
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        # Lone surrogates: what os.listdir makes of bytes that are not UTF-8.
        raise FileTransferError("file names must be valid UTF-8") from None
    if size > MAX_NAME_BYTES:
        raise FileTransferError(f"file names can be at most {MAX_NAME_BYTES} bytes of UTF-8; this one has {size}")
    return name


def split_extension(name: str) -> tuple[str, str]:
    """``"report.pdf"`` → ``("report", ".pdf")``; the last extension only, ``""`` if there is none.

    ``"archive.tar.gz"`` → ``("archive.tar", ".gz")``; a trailing dot (``"notes."``) is no extension.
    """
    dot = name.rfind(".")
    if 0 < dot < len(name) - 1:
        return name[:dot], name[dot:]
    return name, ""


def _truncate_utf8(text: str, limit: int) -> str:
    """The longest prefix of ``text`` that is at most ``limit`` bytes of UTF-8, never splitting a character."""
    return text.encode("utf-8")[:limit].decode("utf-8", errors="ignore")


def variant(name: str, n: int) -> str:
    """The ``n``-th variant of an acceptable ``name``: ``"report (2).pdf"``, ``"notes (2)"``.

    If it would be longer than ``MAX_NAME_BYTES`` the stem is shortened, never the extension, unless the
    "extension" is so long that no stem would be left: then it is treated as part of the stem.
    """
    stem, ext = split_extension(name)
    suffix = f" ({n})"
    room = MAX_NAME_BYTES - len(suffix.encode("utf-8")) - len(ext.encode("utf-8"))
    if room < len(stem[:1].encode("utf-8")):
        stem, ext = name, ""
        room = MAX_NAME_BYTES - len(suffix.encode("utf-8"))
    return _truncate_utf8(stem, room) + suffix + ext


def free_variant(name: str, taken: Callable[[str], bool]) -> str:
    """``name`` if it is not ``taken``, else its first free variant: ``report (1).pdf``, ``report (2).pdf``…

    ``name`` must be acceptable (``check_name``); so is every variant. ``taken`` answers for one name at a time
    (the folder answers with ``lstat``); the caller still has to create the name without replacing anything,
    since another may take it in between.
    """
    check_name(name)
    if not taken(name):
        return name
    for n in range(1, MAX_VARIANTS):
        candidate = variant(name, n)
        if not taken(candidate):
            return candidate
    raise FileTransferError(f"there are too many files named like {shorten(name)}; rename the file and try again")


def shorten(name: str, limit: int = 60) -> str:
    """``name`` quoted for a message, cut to about ``limit`` characters so that the message stays one short line."""
    text = name if len(name) <= limit else name[: limit - 1] + "…"
    return f"'{text}'"
