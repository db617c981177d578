import av
import numpy as np
import pytest

from impromptu.encode import Encoder, available_codecs, h264_level
from impromptu.errors import EncodeError


def picture(width: int, height: int, shift: int = 0) -> bytes:
    pixels = np.zeros((height, width, 4), np.uint8)
    pixels[:, :, 3] = 255
    pixels[40:120, 60 + shift : 220 + shift] = (0, 0, 255, 255)  # a red box, BGRA
    return pixels.tobytes()


def test_levels() -> None:
    assert h264_level(1280, 720, 30) == 31
    assert h264_level(1280, 800, 30) == 32
    assert h264_level(1920, 1080, 30) == 40


@pytest.mark.parametrize("name", available_codecs())
def test_output_decodes_with_pyav_and_keyframes_come_on_request(name: str) -> None:
    enc = Encoder(320, 240, 30, name)
    decoder = av.CodecContext.create("h264" if name == "libx264" else "vp8", "r")
    keys = []
    for i in range(6):
        data, key = enc.encode(picture(320, 240, i * 4), i * 33_333, keyframe=i in (0, 4))
        keys.append(key)
        frames = decoder.decode(av.Packet(data))
        assert len(frames) == 1
        rgb = frames[0].to_ndarray(format="rgb24")
        r, g, b = (int(c) for c in rgb[80, 100 + i * 4])
        assert r > 200 and g < 60 and b < 60, "the red box survives the round trip"
    assert keys == [True, False, False, False, True, False]
    enc.close()
    enc.close()


def test_h264_is_annex_b_with_parameter_sets_on_keyframes() -> None:
    enc = Encoder(320, 240, 30, "libx264")
    data, key = enc.encode(picture(320, 240), 0, keyframe=True)
    assert key and data.startswith(b"\x00\x00\x00\x01")
    nal_types = {unit[0] & 0x1F for unit in data.split(b"\x00\x00\x01")[1:]}
    assert {7, 8, 5} <= nal_types  # SPS, PPS, IDR: a decoder can start here with no description
    sps = next(unit for unit in data.split(b"\x00\x00\x01")[1:] if unit[0] & 0x1F == 7)
    assert sps[1] == 66, "baseline profile"
    assert enc.codec == f"avc1.42E0{sps[3]:02X}", "the codec string names the level the stream declares"


def test_odd_sizes_are_refused() -> None:
    with pytest.raises(EncodeError, match="even"):
        Encoder(321, 240, 30)


def test_h264_says_its_colours_are_bt601_limited_range() -> None:
    """The converter makes BT.601 limited-range YUV. Unmarked, Chromium decodes it as BT.709 and a saturated green
    comes out 10 % darker; so the stream's SPS says which matrix, primaries and range it uses."""
    encoder = Encoder(64, 48, 30, "libx264")
    data, _ = encoder.encode(np.zeros((48, 64, 4), np.uint8).tobytes(), 0, True)
    encoder.close()
    (frame,) = av.CodecContext.create("h264", "r").decode(av.Packet(data))
    smpte170m, tv_range = 6, 1  # ITU-T H.273 code points, as FFmpeg reports them
    assert (frame.colorspace, frame.color_primaries, frame.color_trc) == (smpte170m,) * 3
    assert frame.color_range == tv_range


@pytest.mark.parametrize("size", [(364, 198), (366, 202), (320, 240)])
def test_any_even_size_round_trips_whole_and_aligned(size: tuple[int, int]) -> None:
    """A shared window has any even size: the whole picture comes back, in place, however its height divides."""
    width, height = size
    enc = Encoder(width, height, 30)
    data, _ = enc.encode(picture(width, height), 0, keyframe=True)
    (frame,) = av.CodecContext.create("h264", "r").decode(av.Packet(data))
    assert (frame.width, frame.height) == size
    rgb = frame.to_ndarray(format="rgb24").astype(int)
    expected = np.frombuffer(picture(width, height), np.uint8).reshape(height, width, 4)[:, :, 2::-1].astype(int)
    assert np.abs(rgb - expected).mean() < 4, "the picture is not shifted or smeared"
    enc.close()
