"""upload_processor.inspection: every file is made in memory with Pillow (or by hand for bombs)."""

import hashlib
import io
import itertools
import struct
import warnings
import zlib

import pytest
from PIL import Image, ImageFile

from tests import sample_images
from upload_processor import inspection
from upload_processor.inspection import CountingStream, Inspected, Rejected, inspect

KIB = 1024


class Source:
    """A non-seekable stream like botocore's StreamingBody that records every read."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)
        self.calls: list[int] = []

    def read(self, size: int) -> bytes:
        assert isinstance(size, int), "read() without a size"
        assert size >= 0, "read() without a size"
        self.calls.append(size)
        return self._data.read(size)

    @property
    def position(self) -> int:
        return self._data.tell()


def run(data: bytes, mime: str, **kwargs) -> Inspected:
    return inspect(Source(data), size=len(data), declared_mime=mime, declared_size=len(data), **kwargs)


def reject(data: bytes, mime: str, **kwargs) -> Rejected:
    with pytest.raises(Rejected) as info:
        run(data, mime, **kwargs)
    return info.value


def junk(size: int, seed: bytes) -> bytes:
    """Random-looking bytes, the same on every run."""
    return hashlib.shake_256(seed).digest(size)


def picture(size: tuple[int, int], mode: str = "RGB") -> Image.Image:
    """A smooth picture with some detail, so encoders produce real image data."""
    gradient = Image.linear_gradient("L").resize(size)
    img = Image.merge("RGB", (gradient, gradient.transpose(Image.Transpose.ROTATE_90).resize(size), gradient))
    return img.convert(mode)


def noise(size: tuple[int, int]) -> Image.Image:
    """Incompressible pixels: the encoded file is mostly image data, so cutting it loses pixels."""
    return Image.merge("RGB", [Image.effect_noise(size, 64) for _ in range(3)])


def encode(img: Image.Image, fmt: str, **params) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt, **params)
    return out.getvalue()


def decode(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def with_orientation(img: Image.Image, orientation: int) -> Image.Exif:
    exif = img.getexif()
    exif[0x0112] = orientation
    return exif


# Rule 1: size


def test_size_mismatch_is_rejected_before_reading_anything() -> None:
    data = encode(picture((40, 30)), "PNG")
    source = Source(data)
    with pytest.raises(Rejected) as info:
        inspect(source, size=len(data), declared_mime="image/png", declared_size=len(data) + 1)
    assert info.value.code == "size_mismatch"
    assert str(info.value) == info.value.message
    assert info.value.bytes_read == 0
    assert source.calls == []


# Rule 2: the format comes from the bytes


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"<!doctype html><html><body>not a photo</body></html>", id="html-named-jpg"),
        pytest.param(junk(5000, b"1"), id="random"),
        pytest.param(
            b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10"/></svg>',
            id="svg",
        ),
        pytest.param(b"%PDF-1.7\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n", id="pdf"),
        pytest.param(b"", id="empty"),
        pytest.param(encode(picture((20, 20)), "BMP"), id="bmp"),
        pytest.param(encode(picture((20, 20)), "TIFF"), id="tiff"),
        pytest.param(encode(picture((16, 16)), "ICO"), id="ico"),
    ],
)
def test_anything_but_the_six_formats_is_not_an_image(data: bytes) -> None:
    exc = reject(data, "image/jpeg")
    assert exc.code == "not_an_image"
    assert exc.message == "the bytes are not a JPEG, PNG, WebP, GIF, AVIF or HEIF image"


def test_a_big_non_image_is_rejected_from_its_first_bytes() -> None:
    data = junk(10 * 1024 * KIB, b"2")
    exc = reject(data, "image/jpeg")
    assert exc.code == "not_an_image"
    assert 0 < exc.bytes_read <= 64 * KIB


@pytest.mark.parametrize(
    ("fmt", "declared", "real"),
    [
        ("PNG", "image/jpeg", "PNG"),
        ("JPEG", "image/png", "JPEG"),
        ("GIF", "image/webp", "GIF"),
        ("WEBP", "image/gif", "WebP"),
        ("PNG", "image/svg+xml", "PNG"),
    ],
)
def test_real_format_differing_from_the_declared_one_is_a_type_mismatch(
    fmt: str, declared: str, real: str
) -> None:
    exc = reject(encode(picture((40, 30)), fmt), declared)
    assert exc.code == "type_mismatch"
    assert str(exc) == f"declared {declared} but the bytes are a {real} image"


def test_pillow_only_runs_the_decoder_the_bytes_show_with_its_bomb_guard_as_an_error(monkeypatch) -> None:
    seen = []
    real_open = Image.open

    def spy(fp, mode="r", formats=None):
        # Everything that matters is in force while Pillow parses upload bytes.
        with pytest.raises(Image.DecompressionBombWarning):
            warnings.warn("bomb", Image.DecompressionBombWarning, stacklevel=1)
        seen.append((tuple(formats), Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES))
        return real_open(fp, mode, formats)

    monkeypatch.setattr(inspection.Image, "open", spy)
    run(encode(picture((40, 30)), "PNG"), "image/png", max_pixels=1234)
    assert seen == [(("PNG",), 1234, False)]


# Rule 3: pixel cap


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(width: int, height: int) -> bytes:
    """A grey PNG claiming width x height whose IDAT is the start of its all-black pixels (~1000:1)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    deflate = zlib.compressobj(9)
    idat = b"".join(deflate.compress(bytes(KIB * KIB)) for _ in range(128)) + deflate.flush()
    return (
        b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")
    )


def jpeg_bomb(width: int, height: int) -> bytes:
    """A small real JPEG whose frame header is patched to claim width x height, padded after EOI."""
    data = bytearray(encode(picture((16, 16)), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data) + bytes(1024 * KIB)


def gif_bomb(width: int, height: int) -> bytes:
    screen = b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\0\0\0\xff\xff\xff"
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0) + b"\x02"
    data = b"".join(b"\xff" + bytes(255) for _ in range(4096))  # LZW sub-blocks nobody should read
    return screen + frame + data + b"\x00\x3b"


def webp_bomb(chunk: bytes) -> bytes:
    body = b"WEBP" + chunk + bytes(1024 * KIB)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def vp8x(width: int, height: int) -> bytes:
    return (
        b"VP8X"
        + struct.pack("<I", 10)
        + bytes(4)
        + (width - 1).to_bytes(3, "little")
        + (height - 1).to_bytes(3, "little")
    )


def vp8l(width: int, height: int) -> bytes:
    bits = (width - 1) | (height - 1) << 14
    return b"VP8L" + struct.pack("<I", 5) + b"\x2f" + bits.to_bytes(4, "little")


def vp8(width: int, height: int) -> bytes:
    return b"VP8 " + struct.pack("<I", 10) + b"\x00\x00\x00\x9d\x01\x2a" + struct.pack("<HH", width, height)


@pytest.mark.parametrize(
    ("data", "mime"),
    [
        pytest.param(png_bomb(30_000, 30_000), "image/png", id="png-900MP"),
        pytest.param(jpeg_bomb(30_000, 30_000), "image/jpeg", id="jpeg-900MP"),
        pytest.param(gif_bomb(30_000, 30_000), "image/gif", id="gif-900MP"),
        pytest.param(webp_bomb(vp8x(20_000, 20_000)), "image/webp", id="webp-vp8x-400MP"),
        pytest.param(webp_bomb(vp8l(16_000, 16_000)), "image/webp", id="webp-vp8l-256MP"),
        # Under twice the cap Pillow reads a whole WebP before it warns: only our header check stops that.
        pytest.param(webp_bomb(vp8(16_000, 4_000)), "image/webp", id="webp-vp8-64MP"),
    ],
)
def test_a_bomb_is_rejected_from_its_header(data: bytes, mime: str) -> None:
    assert len(data) > 100 * KIB
    exc = reject(data, mime)
    assert exc.code == "too_many_pixels"
    assert 0 < exc.bytes_read <= 64 * KIB


def test_the_pixel_cap_is_inclusive() -> None:
    data = encode(picture((300, 200)), "PNG")
    assert run(data, "image/png", max_pixels=60_000).width == 300
    exc = reject(data, "image/png", max_pixels=59_999)
    assert exc.code == "too_many_pixels"
    assert str(exc) == "the image has more than the 59,999 pixels allowed"


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "WEBP"])
def test_pillows_bomb_warning_is_an_error_not_a_warning(fmt: str) -> None:
    # 90,000 pixels against a 50,000 cap: the zone where Pillow only warns.
    data = encode(picture((300, 300)), fmt)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        exc = reject(data, inspection.MIME_TYPES[fmt], max_pixels=50_000)
    assert exc.code == "too_many_pixels"
    assert [w.message for w in caught] == []


def test_pillow_globals_are_restored(monkeypatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 123_456_789)
    run(encode(picture((40, 30)), "PNG"), "image/png", max_pixels=10_000)
    reject(encode(picture((40, 30)), "PNG"), "image/png", max_pixels=10)
    assert Image.MAX_IMAGE_PIXELS == 123_456_789
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


# Rule 4: truncated or corrupt


def cut(data: bytes) -> bytes:
    return data[: len(data) // 2]


def garbage_after_header(data: bytes, header_end: int) -> bytes:
    return data[:header_end] + junk(len(data) - header_end, b"3")


def jpeg_scan_start(data: bytes) -> int:
    sos = data.index(b"\xff\xda")
    return sos + 2 + struct.unpack(">H", data[sos + 2 : sos + 4])[0]


NOISY = noise((160, 120))


@pytest.mark.parametrize(
    ("data", "mime"),
    [
        pytest.param(cut(encode(NOISY, "JPEG")), "image/jpeg", id="jpeg-cut-in-half"),
        pytest.param(cut(encode(NOISY, "JPEG", progressive=True)), "image/jpeg", id="progressive-jpeg-cut"),
        pytest.param(cut(encode(NOISY, "PNG")), "image/png", id="png-cut-in-half"),
        pytest.param(cut(encode(NOISY.convert("P"), "GIF")), "image/gif", id="gif-cut-in-half"),
        pytest.param(cut(encode(NOISY, "WEBP")), "image/webp", id="webp-cut-in-half"),
        pytest.param(
            garbage_after_header(encode(NOISY, "JPEG"), jpeg_scan_start(encode(NOISY, "JPEG"))),
            "image/jpeg",
            id="jpeg-garbage-scan",
        ),
        pytest.param(
            garbage_after_header(encode(NOISY, "PNG"), 33), "image/png", id="png-garbage-after-ihdr"
        ),
        pytest.param(
            garbage_after_header(encode(NOISY, "PNG"), encode(NOISY, "PNG").index(b"IDAT") + 4),
            "image/png",
            id="png-garbage-idat",
        ),
        pytest.param(
            garbage_after_header(encode(NOISY.convert("P"), "GIF"), 13 + 768 + 10),
            "image/gif",
            id="gif-garbage-after-descriptor",
        ),
        pytest.param(b"\x89PNG\r\n\x1a\n", "image/png", id="png-signature-only"),
        pytest.param(webp_bomb(b"VP8 " + bytes(20))[:64], "image/webp", id="webp-bad-vp8-header"),
    ],
)
def test_truncated_or_damaged_data_is_corrupt(data: bytes, mime: str) -> None:
    exc = reject(data, mime)
    assert exc.code == "corrupt"
    assert exc.message.endswith("image is truncated or corrupt")


def test_truncation_is_caught_even_if_other_code_allows_truncated_images(monkeypatch) -> None:
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    assert reject(cut(encode(NOISY, "JPEG")), "image/jpeg").code == "corrupt"
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True


def test_an_object_shorter_than_its_stated_size_is_corrupt() -> None:
    data = encode(NOISY, "PNG")
    with pytest.raises(Rejected) as info:
        inspect(Source(cut(data)), size=len(data), declared_mime="image/png", declared_size=len(data))
    assert info.value.code == "corrupt"


# Rule 5: large headers


def test_a_jpeg_whose_frame_header_sits_after_200_kib_of_icc_is_measured() -> None:
    data = encode(picture((320, 240)), "JPEG", icc_profile=bytes(200 * KIB))
    assert data.index(b"\xff\xc0") > 200 * KIB
    result = run(data, "image/jpeg")
    assert (result.width, result.height) == (320, 240)
    assert result.bytes_read == len(data)


# Rule 6: good files


def test_a_jpeg_with_exif_orientation_6() -> None:
    img = picture((400, 200))
    result = run(encode(img, "JPEG", exif=with_orientation(img, 6)), "image/jpeg")
    assert result.mime_type == "image/jpeg"
    assert (result.width, result.height, result.orientation) == (400, 200, 6)
    assert result.thumbnail_mime == "image/webp"
    thumb = decode(result.thumbnail)
    assert thumb.format == "WEBP"
    assert thumb.size == (128, 256)  # stored landscape, shown portrait


@pytest.mark.parametrize(("value", "expected"), [(1, 1), (8, 8), (0, None), (9, None)])
def test_orientation_is_1_to_8_or_none(value: int, expected: int | None) -> None:
    img = picture((40, 30))
    result = run(encode(img, "JPEG", exif=with_orientation(img, value)), "image/jpeg")
    assert result.orientation == expected
    assert decode(result.thumbnail).size == ((30, 40) if value == 8 else (40, 30))


def test_no_exif_means_no_orientation_and_the_thumbnail_carries_no_metadata() -> None:
    assert run(encode(picture((40, 30)), "JPEG"), "image/jpeg").orientation is None
    img = picture((40, 30))
    exif = with_orientation(img, 3)
    exif[0x010F] = "Camera maker"
    result = run(encode(img, "JPEG", exif=exif, icc_profile=bytes(1000)), "image/jpeg")
    thumb = decode(result.thumbnail)
    assert dict(thumb.getexif()) == {}
    assert "icc_profile" not in thumb.info


def test_the_thumbnail_fits_the_box_and_never_upscales() -> None:
    data = encode(picture((400, 200)), "PNG")
    assert decode(run(data, "image/png", thumbnail_size=64).thumbnail).size == (64, 32)
    assert decode(run(encode(picture((50, 30)), "PNG"), "image/png").thumbnail).size == (50, 30)


def test_a_png_with_alpha_keeps_it_in_the_thumbnail() -> None:
    img = picture((300, 150), "RGBA")
    img.putalpha(Image.linear_gradient("L").resize((300, 150)))
    result = run(encode(img, "PNG"), "image/png")
    assert (result.mime_type, result.width, result.height) == ("image/png", 300, 150)
    thumb = decode(result.thumbnail)
    assert thumb.mode == "RGBA"
    assert thumb.size == (256, 128)
    assert thumb.getchannel("A").getextrema()[0] < 10


def test_a_palette_png_with_transparency_keeps_alpha() -> None:
    img = picture((60, 40)).convert("P")
    result = run(encode(img, "PNG", transparency=0), "image/png")
    assert decode(result.thumbnail).mode == "RGBA"


def test_an_opaque_png_thumbnail_has_no_alpha() -> None:
    result = run(encode(picture((60, 40), "L"), "PNG"), "image/png")
    assert decode(result.thumbnail).mode == "RGB"


def test_a_16_bit_grey_png_is_scaled_not_clipped() -> None:
    grey = Image.linear_gradient("L").resize((100, 100)).convert("I").point(lambda v: v * 257)
    data = encode(grey.convert("I;16"), "PNG")
    thumb = decode(run(data, "image/png").thumbnail).convert("L")
    low, high = thumb.getextrema()
    assert low < 10
    assert high > 245


def test_an_animated_gif_is_measured_and_thumbnailed_from_its_first_frame() -> None:
    frames = [picture((320, 200)).convert("P"), Image.new("P", (320, 200), 7)]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    result = run(data, "image/gif")
    assert (result.mime_type, result.width, result.height, result.orientation) == (
        "image/gif",
        320,
        200,
        None,
    )
    assert decode(result.thumbnail).size == (256, 160)


def test_a_gif_with_transparency_keeps_alpha() -> None:
    data = encode(picture((60, 40)).convert("P"), "GIF", transparency=0)
    assert decode(run(data, "image/gif").thumbnail).mode == "RGBA"


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({"quality": 80}, id="lossy"),
        pytest.param({"lossless": True}, id="lossless"),
        pytest.param({"exif": with_orientation(picture((4, 4)), 8)}, id="extended-with-exif"),
    ],
)
def test_a_webp(params: dict) -> None:
    result = run(encode(picture((300, 220)), "WEBP", **params), "image/webp")
    assert (result.mime_type, result.width, result.height) == ("image/webp", 300, 220)
    expected = (188, 256) if result.orientation == 8 else (256, 188)
    assert decode(result.thumbnail).size == expected


def test_a_webp_with_alpha_and_animation() -> None:
    frames = [picture((100, 80), "RGBA"), Image.new("RGBA", (100, 80), (0, 0, 0, 0))]
    frames[0].putalpha(128)
    data = encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=100)
    result = run(data, "image/webp")
    assert (result.width, result.height) == (100, 80)
    thumb = decode(result.thumbnail)
    assert thumb.mode == "RGBA"
    assert thumb.getchannel("A").getextrema() == (128, 128)


# Rule 7: memory


def test_a_big_jpeg_is_decoded_at_reduced_scale(monkeypatch) -> None:
    decoded_sizes = []
    real_thumbnail = Image.Image.thumbnail

    def spy(self, *args, **kwargs):
        decoded_sizes.append(self.size)
        return real_thumbnail(self, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "thumbnail", spy)
    data = encode(Image.new("RGB", (6000, 4000), (200, 120, 40)), "JPEG")
    result = run(data, "image/jpeg")
    assert (result.width, result.height) == (6000, 4000)
    [(width, height)] = decoded_sizes
    assert width <= 6000 // 4
    assert height <= 4000 // 4
    assert decode(result.thumbnail).size == (256, 171)


# Rule 8: reading


def test_a_good_image_is_read_once_in_bounded_chunks_and_never_past_its_size() -> None:
    data = encode(NOISY, "PNG")
    source = Source(data + b"bytes that are not part of the object")
    result = inspect(source, size=len(data), declared_mime="image/png", declared_size=len(data))
    assert result.bytes_read == len(data)
    assert source.position == len(data)
    assert sum(source.calls) == len(data)
    assert source.calls[0] <= 64 * KIB
    assert max(source.calls) <= 1024 * KIB


def test_the_stream_reads_lazily_and_seeks_without_reading() -> None:
    data = bytes(range(256)) * 1024  # 256 KiB
    source = Source(data)
    stream = CountingStream(source, len(data))
    assert stream.seekable()
    assert stream.seek(0, io.SEEK_END) == len(data)
    assert stream.read(10) == b""
    assert stream.bytes_read == 0
    stream.seek(0)
    assert stream.read(10) == data[:10]
    assert 10 <= stream.bytes_read <= 64 * KIB
    calls = len(source.calls)
    stream.seek(3)
    assert stream.read(5) == data[3:8]
    assert len(source.calls) == calls  # seeking back is served from what was kept
    stream.seek(200 * KIB)
    assert stream.read(4) == data[200 * KIB : 200 * KIB + 4]
    assert stream.tell() == 200 * KIB + 4
    assert stream.read() == data[200 * KIB + 4 :]
    assert stream.bytes_read == len(data)


def test_the_stream_stops_at_a_short_source() -> None:
    stream = CountingStream(Source(b"abc"), 10)
    assert stream.read(100) == b"abc"
    assert stream.read(100) == b""
    assert stream.bytes_read == 3


# Rule 9: decoding time is bounded


@pytest.fixture
def decoders_started(monkeypatch) -> list[str]:
    """The name of every Pillow decoder created from here on: empty means no pixel data was decoded."""
    started: list[str] = []
    real_getdecoder = Image._getdecoder

    def spy(mode, decoder_name, args, extra=()):
        started.append(decoder_name)
        return real_getdecoder(mode, decoder_name, args, extra)

    monkeypatch.setattr(Image, "_getdecoder", spy)
    return started


def test_a_jpeg_repeating_a_scan_10000_times_is_too_complex_without_decoding_it(decoders_started) -> None:
    # Before the scan count, this file (at 1024x768) was accepted after 6 s of CPU; at 4000x3000, 79 s.
    data = sample_images.many_scan_jpeg(10_000, 1024, 768)
    assert len(data) < 200 * KIB
    exc = reject(data, "image/jpeg")
    assert exc.code == "too_complex"
    assert exc.message == (
        f"the JPEG image has more than the {inspection.MAX_JPEG_SCANS} scans allowed, "
        "which would take too long to decode"
    )
    assert decoders_started == []  # refused from a count of its markers, not by running libjpeg
    assert exc.bytes_read == len(data)  # counting reads the file once, nothing more


def test_the_scan_limit_is_inclusive() -> None:
    pillow_scans = 10  # what Pillow's progressive=True writes for a colour image
    limit = inspection.MAX_JPEG_SCANS
    assert run(sample_images.many_scan_jpeg(limit - pillow_scans), "image/jpeg").width == 64
    assert reject(sample_images.many_scan_jpeg(limit - pillow_scans + 1), "image/jpeg").code == "too_complex"


@pytest.mark.parametrize("mode", ["RGB", "L", "CMYK"])
@pytest.mark.parametrize("optimize", [False, True], ids=["plain", "optimized"])
def test_progressive_jpegs_from_libjpeg_are_accepted(mode: str, optimize: bool) -> None:
    # libjpeg's progression: 10 scans in colour, 6 in grey, 18 for CMYK, the most any encoder we tried wrote.
    data = encode(noise((320, 240)).convert(mode), "JPEG", progressive=True, optimize=optimize, quality=95)
    assert data.count(b"\xff\xda") >= 6
    result = run(data, "image/jpeg")
    assert (result.mime_type, result.width, result.height) == ("image/jpeg", 320, 240)


LOOKS_LIKE_SCANS = b"\xff\xda\x00\x08" * 500  # what a scan header starts with, over and over


def test_scan_markers_inside_a_segment_or_between_restart_markers_are_not_counted() -> None:
    base = encode(noise((320, 240)), "JPEG", progressive=True, restart_marker_blocks=1)
    assert b"\xff\xd7" in base  # restart markers throughout the entropy-coded data
    comment = b"\xff\xfe" + struct.pack(">H", 2 + len(LOOKS_LIKE_SCANS)) + LOOKS_LIKE_SCANS
    result = run(base[:2] + comment + base[2:], "image/jpeg")
    assert (result.width, result.height) == (320, 240)


def test_what_follows_the_end_of_the_image_is_not_counted() -> None:
    base = encode(noise((320, 240)), "JPEG", progressive=True)
    second_image = sample_images.many_scan_jpeg(500)  # as an MPF file stores its other images after EOI
    trailer = LOOKS_LIKE_SCANS * 50  # 100 KB: more than a misread segment length could skip
    result = run(base + second_image + trailer, "image/jpeg")
    assert (result.width, result.height) == (320, 240)


def test_a_jpeg_with_thousands_of_marker_segments_is_too_complex(decoders_started) -> None:
    base = encode(picture((64, 48)), "JPEG", progressive=True)
    comments = b"\xff\xfe\x00\x02" * inspection.MAX_JPEG_SEGMENTS  # empty comments, after the first scan
    data = base[:-2] + comments + base[-2:]
    exc = reject(data, "image/jpeg")
    assert exc.code == "too_complex"
    assert exc.message == (
        f"the JPEG image has more than the {inspection.MAX_JPEG_SEGMENTS:,} marker segments allowed"
    )
    assert decoders_started == []


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF"])
def test_decoders_are_fed_small_pieces_so_the_budget_is_checked_often(fmt: str, monkeypatch) -> None:
    pieces: list[int] = []
    real_getdecoder = Image._getdecoder

    class Recorder:
        def __init__(self, decoder) -> None:
            self._decoder = decoder

        def __getattr__(self, name: str):
            return getattr(self._decoder, name)

        def decode(self, data: bytes):
            pieces.append(len(data))
            return self._decoder.decode(data)

    monkeypatch.setattr(Image, "_getdecoder", lambda *args: Recorder(real_getdecoder(*args)))
    data = encode(noise((1000, 1000)).convert("P" if fmt == "GIF" else "RGB"), fmt)
    run(data, inspection.MIME_TYPES[fmt])
    assert len(pieces) > len(data) // (8 * KIB)
    assert max(pieces) <= 8 * KIB  # 4 KiB read at a time, plus what the decoder left of the last one


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF"])
def test_a_decode_that_runs_out_of_cpu_time_is_too_complex(fmt: str, decoding_costs) -> None:
    data = encode(noise((1000, 1000)).convert("P" if fmt == "GIF" else "RGB"), fmt)
    assert len(data) > 400 * KIB
    decoding_costs(60.0)
    exc = reject(data, inspection.MIME_TYPES[fmt])
    assert exc.code == "too_complex"
    assert exc.message == (
        "the image takes too long to decode: more than the 1.1 seconds of CPU time allowed for its size"
    )
    if fmt != "JPEG":  # (a JPEG's scans are counted first, over the whole file)
        assert exc.bytes_read < len(data) // 4  # the decoder was stopped at its first pull of data


def test_the_cpu_budget_grows_with_the_pixel_count(decoding_costs) -> None:
    decoding_costs(2.0)  # 1 s allowed plus 0.1 s per megapixel
    big = encode(Image.new("RGB", (6000, 4000), (200, 120, 40)), "JPEG")
    assert run(big, "image/jpeg").width == 6000
    assert reject(encode(picture((1000, 1000)), "JPEG"), "image/jpeg").code == "too_complex"
    decoding_costs(1.0)
    assert run(encode(picture((1000, 1000)), "JPEG"), "image/jpeg").width == 1000


def test_header_parsing_counts_against_the_cpu_budget(monkeypatch) -> None:
    # Pillow parses the segments before the first scan in Python: 10 MiB of empty comments took 11 s.
    ticks = itertools.count()
    monkeypatch.setattr(inspection, "_cpu_time", lambda: next(ticks) / 1000)  # each look: 1 ms later
    base = encode(picture((64, 48)), "JPEG")
    assert run(base, "image/jpeg").width == 64
    data = base[:2] + b"\xff\xfe\x00\x02" * 2000 + base[2:]  # Pillow reads each one at least once
    exc = reject(data, "image/jpeg")
    assert exc.code == "too_complex"
    assert exc.message.startswith("the image takes too long to decode: more than the 1.0 seconds")


@pytest.mark.parametrize(("fmt", "params"), [("JPEG", {"quality": 95, "progressive": True}), ("PNG", {})])
def test_big_photos_decode_well_within_the_real_budget(fmt: str, params: dict) -> None:
    # Progressive, because libjpeg then decodes every coefficient, whatever draft() asks for.
    data = encode(picture((6000, 4000)), fmt, **params)  # 24 MP
    result = run(data, inspection.MIME_TYPES[fmt])
    assert (result.width, result.height) == (6000, 4000)


def test_webp_has_a_pixel_cap_of_its_own_under_the_general_one(monkeypatch) -> None:
    # libwebp through Pillow holds ~16 bytes a pixel: WebP stops lower than the other formats.
    monkeypatch.setattr(inspection, "MAX_WEBP_PIXELS", 60_000)
    data = encode(picture((300, 200)), "WEBP")
    assert run(data, "image/webp", max_pixels=1_000_000).width == 300
    exc = reject(encode(picture((301, 200)), "WEBP"), "image/webp", max_pixels=1_000_000)
    assert exc.code == "too_many_pixels"
    assert exc.bytes_read <= 64 * KIB
    assert run(encode(picture((301, 200)), "PNG"), "image/png", max_pixels=1_000_000).width == 301


def test_a_webp_over_the_webp_cap_is_rejected_from_its_header() -> None:
    assert inspection.MAX_WEBP_PIXELS < 50_000_000
    exc = reject(webp_bomb(vp8x(8_000, 6_000)), "image/webp")  # 48 MP: under the general 50 MP
    assert exc.code == "too_many_pixels"
    assert 0 < exc.bytes_read <= 64 * KIB
