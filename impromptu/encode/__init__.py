"""The one encoder per shared surface."""

from impromptu.encode.encoder import Encoder, available_codecs, h264_level

__all__ = ["Encoder", "available_codecs", "h264_level"]
