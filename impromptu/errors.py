"""The one exception tree of impromptu.

Every foreseeable failure is an ``ImpromptuError``; the CLI prints its message as one line and exits non-zero,
so a user never sees a traceback for a mistake they can fix. Messages say what happened and what to do.

    ImpromptuError
    ├── UsageError          bad option values (``--size 12``, ``--bind nowhere``)
    ├── DisplayError        Xvfb missing or failing, display unreachable
    ├── WindowNotFound      no X window matches what was asked for (id, title, class), or none mapped in time
    ├── AppError            the shared COMMAND could not be started
    ├── CaptureError        screen grabbing failed
    ├── EncodeError         no usable encoder, encoder failure
    ├── InputError          input injection unavailable (XTEST missing)
    ├── SignalingError      the web/signaling server could not start (port in use, TLS files unreadable)
    ├── ProtocolError       a peer sent something malformed (dropped and logged, never fatal)
    ├── FileTransferError   a file could not be listed, uploaded or downloaded (bad name, too large, damaged)
    └── RecordError         a recording cannot be made (file name, folder, codec)
"""

from __future__ import annotations


class ImpromptuError(Exception):
    """Base of every error impromptu raises on purpose."""


class UsageError(ImpromptuError):
    """An option or argument has a value impromptu cannot use."""


class DisplayError(ImpromptuError):
    """An X display could not be started or reached."""


class WindowNotFound(ImpromptuError):
    """No X window matches what was asked for, or none was mapped in time."""


class AppError(ImpromptuError):
    """The application to share could not be started."""


class CaptureError(ImpromptuError):
    """The screen could not be captured."""


class EncodeError(ImpromptuError):
    """No encoder is available, or encoding failed."""


class InputError(ImpromptuError):
    """Input cannot be injected into the display."""


class SignalingError(ImpromptuError):
    """The signaling and page server could not start or serve."""


class ProtocolError(ImpromptuError):
    """A peer sent a message that is malformed or not allowed."""


class FileTransferError(ImpromptuError):
    """A file transfer failed or was refused; the message is one sentence for the user."""


class RecordError(ImpromptuError):
    """A recording cannot be made: its file's name, folder or codec."""
