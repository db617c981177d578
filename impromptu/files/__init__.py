"""Files (docs/protocol.md §9): the desktop's transfer folder, its names, uploads and downloads, without networking."""

from impromptu.files.folder import Download, FileEntry, TransferFolder, Upload
from impromptu.files.names import MAX_NAME_BYTES, check_name, free_variant

__all__ = ["MAX_NAME_BYTES", "Download", "FileEntry", "TransferFolder", "Upload", "check_name", "free_variant"]
