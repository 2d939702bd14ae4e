"""upload_processor.inspection on the photos people have (issue 14): HEIC and AVIF, colour profiles,
transparency, display size, placeholders and GPS. HEIC files are made with pillow-heif's encoder (a
dev-only requirement), AVIF with Pillow's own; the functions decode HEIF with pi-heif."""

import base64
import contextlib
import io
import struct
import subprocess
import sys
import textwrap

import pytest
import thumbhash
from PIL import Image, ImageCms, ImageFile

from tests import sample_images
from upload_processor import inspection
from upload_processor.inspection import Inspected, Rejected, inspect

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]


def run(data: bytes, mime: str, **kwargs) -> Inspected:
    return inspect(io.BytesIO(data), size=len(data), declared_mime=mime, declared_size=len(data), **kwargs)


def reject(data: bytes, mime: str, **kwargs) -> Rejected:
    with pytest.raises(Rejected) as info:
        run(data, mime, **kwargs)
    return info.value


def decode(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def halves(size: tuple[int, int]) -> Image.Image:
    """Left half red, right half blue: where red ends up tells how the picture was turned."""
    img = Image.new("RGB", size, (20, 40, 230))
    img.paste((230, 30, 20), (0, 0, size[0] // 2, size[1]))
    return img


def is_red(pixel: tuple) -> bool:
    return pixel[0] > 150 and pixel[2] < 100


def webp_chunks(data: bytes) -> list[bytes]:
    assert data[:4] == b"RIFF"
    assert data[8:12] == b"WEBP"
    chunks, pos = [], 12
    while pos + 8 <= len(data):
        kind, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        chunks.append(kind)
        pos += 8 + size + (size & 1)
    return chunks


FORMATS = {
    "heic": (sample_images.heic, "image/heic"),
    "avif": (sample_images.avif, "image/avif"),
}


# Accepted, sniffed by their brands


@pytest.mark.parametrize("kind", FORMATS)
def test_heic_and_avif_are_measured_and_thumbnailed_as_webp(kind: str) -> None:
    make, mime = FORMATS[kind]
    result = run(make(halves((96, 64))), mime)
    assert (result.mime_type, result.width, result.height) == (mime, 96, 64)
    assert (result.display_width, result.display_height, result.orientation) == (96, 64, None)
    thumb = decode(result.thumbnail)
    assert (thumb.format, thumb.size, thumb.mode) == ("WEBP", (96, 64), "RGB")
    assert is_red(thumb.getpixel((10, 32)))
    assert not is_red(thumb.getpixel((86, 32)))


def test_a_heif_file_may_be_declared_image_heif_too() -> None:
    result = run(sample_images.heic(), "image/heif")
    assert (result.mime_type, result.width) == ("image/heif", 64)


@pytest.mark.parametrize(
    ("data", "declared", "real"),
    [
        pytest.param(sample_images.heic(), "image/jpeg", "HEIF", id="heic-as-jpeg"),
        pytest.param(sample_images.avif(), "image/heic", "AVIF", id="avif-as-heic"),
        pytest.param(sample_images.heic(), "image/avif", "HEIF", id="heic-as-avif"),
        pytest.param(sample_images.jpeg(), "image/avif", "JPEG", id="jpeg-as-avif"),
    ],
)
def test_heif_and_avif_declared_as_something_else_are_a_type_mismatch(
    data: bytes, declared: str, real: str
) -> None:
    exc = reject(data, declared)
    assert (exc.code, exc.message) == (
        "type_mismatch",
        f"declared {declared} but the bytes are a {real} image",
    )


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"\0\0\0\x14ftypisom\0\0\0\0isom" + bytes(200), id="mp4"),
        pytest.param(b"\0\0\0\x14ftypqt  \0\0\0\0qt  " + bytes(200), id="quicktime"),
    ],
)
def test_other_iso_media_files_are_not_images(data: bytes) -> None:
    assert reject(data, "image/heic").code == "not_an_image"


@pytest.mark.parametrize("kind", FORMATS)
def test_only_the_decoder_the_bytes_show_runs(kind: str, monkeypatch) -> None:
    make, mime = FORMATS[kind]
    seen = []
    real_open = Image.open

    def spy(fp, mode="r", formats=None):
        seen.append(formats)
        return real_open(fp, mode, formats)

    monkeypatch.setattr(inspection.Image, "open", spy)
    run(make(), mime)
    assert seen == [({"heic": "HEIF", "avif": "AVIF"}[kind],)]


def test_pi_heif_is_imported_when_the_first_heif_file_arrives_not_before(tmp_path) -> None:
    (tmp_path / "photo.heic").write_bytes(sample_images.heic())
    code = textwrap.dedent(
        f"""
        import io, sys
        from tests import sample_images
        from upload_processor.inspection import inspect
        def run(data, mime):
            return inspect(io.BytesIO(data), size=len(data), declared_mime=mime, declared_size=len(data))
        run(sample_images.jpeg(), "image/jpeg")
        run(sample_images.avif(), "image/avif")
        print("pi_heif" in sys.modules, "pillow_heif" in sys.modules)
        run(open({str(tmp_path / "photo.heic")!r}, "rb").read(), "image/heic")
        print("pi_heif" in sys.modules, "pillow_heif" in sys.modules)
        """
    )
    paths = [str(ROOT / p) for p in ("layers/common", "functions/process_upload", ".")]
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": ":".join(paths)},
    )
    assert out.stdout.split("\n")[:2] == ["False False", "True False"]


# Bombs and truncation


def with_ispe(data: bytes, width: int, height: int) -> bytes:
    """The file with its (single) image spatial extents property claiming width x height."""
    assert data.count(b"ispe") == 1
    at = data.index(b"ispe") + 8  # after the box type, version and flags
    return data[:at] + struct.pack(">II", width, height) + data[at + 8 :]


@pytest.mark.parametrize("kind", FORMATS)
@pytest.mark.parametrize(("width", "height"), [(10_000, 10_000), (8_000, 8_000)])
def test_a_heic_or_avif_claiming_too_many_pixels_is_refused_before_decoding(
    kind: str, width: int, height: int, monkeypatch
) -> None:
    make, mime = FORMATS[kind]
    # 64 x 64: a whole number of coding blocks, so the HEIC has no clean-aperture crop over the ispe.
    data = with_ispe(make(Image.new("RGB", (64, 64), (90, 90, 90))), width, height)
    loads = []
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: loads.append(self) or 1 / 0)
    exc = reject(data, mime)
    assert exc.code == "too_many_pixels"
    assert loads == []  # no decoder ran


@pytest.mark.parametrize("kind", FORMATS)
def test_each_of_the_two_pixel_guards_alone_refuses_a_heic_or_avif_bomb(kind: str, monkeypatch) -> None:
    """Ours (the size Pillow reports, checked before decoding) and Pillow's own (MAX_IMAGE_PIXELS at
    our cap, its warning an error): either one is enough, so each is tested without the other."""
    make, mime = FORMATS[kind]
    # 64 MP: over the 50 MP cap, under Pillow's default limit (89 MP) when our guard does not set it.
    data = with_ispe(make(Image.new("RGB", (64, 64), (90, 90, 90))), 8_000, 8_000)
    with monkeypatch.context() as only_ours:
        only_ours.setattr(inspection, "_pillow_guard", lambda max_pixels: contextlib.nullcontext())
        assert reject(data, mime).code == "too_many_pixels"
    with monkeypatch.context() as only_pillows:
        only_pillows.setattr(inspection, "_check_pixels", lambda size, max_pixels: None)
        assert reject(data, mime).code == "too_many_pixels"


@pytest.mark.parametrize("kind", FORMATS)
def test_without_the_pixel_cap_a_heic_or_avif_bomb_header_would_be_believed(kind: str) -> None:
    """The other side of the test above: the decoders take the header's word."""
    make, _mime = FORMATS[kind]
    data = with_ispe(make(Image.new("RGB", (64, 64), (90, 90, 90))), 8_000, 8_000)
    img = Image.open(io.BytesIO(data), formats=({"heic": "HEIF", "avif": "AVIF"}[kind],))
    assert img.size == (8_000, 8_000)


def noisy(size: tuple[int, int]) -> Image.Image:
    return Image.merge("RGB", [Image.effect_noise(size, 64) for _ in range(3)])


@pytest.mark.parametrize("kind", FORMATS)
@pytest.mark.parametrize("keep", [0.5, 0.9, 0.99])
def test_a_truncated_heic_or_avif_is_corrupt(kind: str, keep: float) -> None:
    make, mime = FORMATS[kind]
    data = make(noisy((128, 96)), quality=90)
    exc = reject(data[: int(len(data) * keep)], mime)
    assert exc.code == "corrupt"
    assert exc.message == f"the {'HEIF' if kind == 'heic' else 'AVIF'} image is truncated or corrupt"


@pytest.mark.parametrize("kind", FORMATS)
def test_truncation_is_caught_even_if_other_code_allows_truncated_heif_images(kind: str, monkeypatch) -> None:
    make, mime = FORMATS[kind]
    data = make(noisy((128, 96)), quality=90)
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    assert reject(data[:-64], mime).code == "corrupt"
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True


# CPU budget


@pytest.mark.parametrize("kind", FORMATS)
def test_a_heic_or_avif_whose_decode_ran_out_of_cpu_time_is_too_complex(kind: str, decoding_costs) -> None:
    """Their decoders read the whole file before decoding: the budget judges the decode after it."""
    make, mime = FORMATS[kind]
    data = make(Image.new("RGB", (64, 64), (90, 90, 90)))
    decoding_costs(0.9)
    assert run(data, mime).width == 64
    decoding_costs(1.1)
    exc = reject(data, mime)
    assert exc.code == "too_complex"
    assert exc.message.startswith("the image takes too long to decode: more than the 1.0 seconds")


@pytest.mark.parametrize("kind", FORMATS)
def test_heic_and_avif_decode_on_the_thread_the_budget_counts(kind: str, monkeypatch) -> None:
    from PIL import AvifImagePlugin

    threads = []
    real_decoder = AvifImagePlugin._avif.AvifDecoder

    def avif_decoder(data, codec, max_threads):
        threads.append(max_threads)
        return real_decoder(data, codec, max_threads)

    monkeypatch.setattr(AvifImagePlugin._avif, "AvifDecoder", avif_decoder)
    make, mime = FORMATS[kind]
    run(make(), mime)
    if kind == "avif":
        assert threads == [1]
    else:
        import pi_heif

        assert pi_heif.options.DECODE_THREADS == 1
    assert AvifImagePlugin.DEFAULT_MAX_THREADS == 0  # Pillow's own setting, restored


# Orientation: display size and an upright thumbnail


@pytest.mark.parametrize("kind", [*FORMATS, "jpeg"])
def test_orientation_6_is_shown_portrait_and_the_thumbnail_is_upright(kind: str) -> None:
    """Orientation 6: the stored picture is shown turned 90 degrees clockwise, so its left half (red)
    becomes the top half. HEIC: pillow-heif writes it as the irot transform libheif applies."""
    stored = halves((96, 64))
    if kind == "jpeg":
        exif = Image.Exif()
        exif[0x0112] = 6
        data, mime = sample_images.encode(stored, "JPEG", exif=exif.tobytes()), "image/jpeg"
    else:
        make, mime = FORMATS[kind]
        data = make(stored, orientation=6)
    result = run(data, mime)
    assert (result.width, result.height, result.orientation) == (96, 64, 6)
    assert (result.display_width, result.display_height) == (64, 96)
    thumb = decode(result.thumbnail).convert("RGB")
    assert thumb.size == (64, 96)
    assert is_red(thumb.getpixel((32, 10)))
    assert not is_red(thumb.getpixel((32, 86)))
    ratio = thumbhash.thumb_hash_to_approximate_aspect_ratio(list(base64.b64decode(result.placeholder)))
    assert ratio < 1


# Colour: thumbnails in sRGB


def _s15(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))


def rgb_profile(name: str, red: tuple, green: tuple, blue: tuple, gamma: float) -> bytes:
    """A minimal ICC v2 matrix/TRC display profile (the shape of Adobe RGB's or Display P3's)."""

    def xyz(v: tuple) -> bytes:
        return b"XYZ " + bytes(4) + b"".join(_s15(c) for c in v)

    def curv(g: float) -> bytes:
        return b"curv" + bytes(4) + struct.pack(">IH", 1, round(g * 256)) + bytes(2)

    text = name.encode() + b"\0"
    tags = [
        (b"desc", b"desc" + bytes(4) + struct.pack(">I", len(text)) + text + bytes(4 + 4 + 2 + 1 + 67)),
        (b"wtpt", xyz((0.9642, 1.0, 0.8249))),
        (b"rXYZ", xyz(red)),
        (b"gXYZ", xyz(green)),
        (b"bXYZ", xyz(blue)),
        (b"rTRC", curv(gamma)),
        (b"gTRC", curv(gamma)),
        (b"bTRC", curv(gamma)),
        (b"cprt", b"text" + bytes(4) + b"none\0"),
    ]
    offset = 128 + 4 + 12 * len(tags)
    table, data = b"", b""
    for sig, body in tags:
        body += bytes(-len(body) % 4)
        table += sig + struct.pack(">II", offset + len(data), len(body))
        data += body
    header = (
        struct.pack(">I", offset + len(data))
        + bytes(4)
        + struct.pack(">I", 0x02100000)
        + b"mntrRGB XYZ "
        + bytes(12)
        + b"acsp"
        + bytes(28)
        + _s15(0.9642)
        + _s15(1.0)
        + _s15(0.8249)
        + bytes(48)
    )
    return header + struct.pack(">I", len(tags)) + table + data


# Adobe RGB (1998): its primaries adapted to D50, gamma 563/256.
ADOBE_RGB = rgb_profile(
    "Adobe RGB (1998) compatible",
    (0.60974, 0.31111, 0.01947),
    (0.20528, 0.62567, 0.06087),
    (0.14919, 0.06322, 0.74457),
    563 / 256,
)
COLOUR = (60, 180, 80)  # a green that Adobe RGB and sRGB number very differently


def srgb_reference(colour: tuple, profile: bytes) -> tuple:
    source = ImageCms.ImageCmsProfile(io.BytesIO(profile))
    img = ImageCms.profileToProfile(
        Image.new("RGB", (1, 1), colour), source, ImageCms.createProfile("sRGB"), outputMode="RGB"
    )
    return img.getpixel((0, 0))


def distance(a: tuple, b: tuple) -> int:
    return max(abs(x - y) for x, y in zip(a, b, strict=False))


@pytest.mark.parametrize("kind", ["jpeg", "png", "heic", "avif"])
def test_an_adobe_rgb_picture_gets_an_srgb_thumbnail(kind: str) -> None:
    reference = srgb_reference(COLOUR, ADOBE_RGB)
    assert distance(reference, COLOUR) > 40  # shown as if sRGB, the colour would be far off
    img = Image.new("RGB", (120, 80), COLOUR)
    if kind in ("jpeg", "png"):
        data = sample_images.encode(
            img, kind.upper(), icc_profile=ADOBE_RGB, **({"quality": 95} if kind == "jpeg" else {})
        )
    else:
        data = FORMATS[kind][0](img, icc_profile=ADOBE_RGB, quality=95)
    result = run(data, f"image/{kind}")
    thumb = decode(result.thumbnail)
    assert "icc_profile" not in thumb.info  # sRGB, as an untagged image is shown
    assert distance(thumb.convert("RGB").getpixel((60, 40)), reference) <= 6


def test_an_srgb_picture_keeps_its_colours() -> None:
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    data = sample_images.encode(Image.new("RGB", (40, 30), COLOUR), "PNG", icc_profile=srgb)
    assert distance(decode(run(data, "image/png").thumbnail).convert("RGB").getpixel((20, 15)), COLOUR) <= 4


def test_a_damaged_profile_is_ignored_not_a_reason_to_refuse() -> None:
    data = sample_images.encode(Image.new("RGB", (40, 30), COLOUR), "PNG", icc_profile=b"\x00" * 300)
    assert distance(decode(run(data, "image/png").thumbnail).convert("RGB").getpixel((20, 15)), COLOUR) <= 4


def test_a_profile_converted_picture_with_alpha_keeps_its_alpha() -> None:
    img = Image.new("RGBA", (80, 40), (*COLOUR, 255))
    img.paste((0, 0, 0, 0), (0, 0, 40, 40))
    result = run(sample_images.encode(img, "PNG", icc_profile=ADOBE_RGB), "image/png")
    thumb = decode(result.thumbnail)
    assert thumb.mode == "RGBA"
    assert thumb.getpixel((10, 20))[3] == 0
    assert distance(thumb.getpixel((70, 20))[:3], srgb_reference(COLOUR, ADOBE_RGB)) <= 6


# Transparency


def test_a_16_bit_grey_png_with_a_transparent_value_keeps_it_transparent() -> None:
    grey = Image.new("I;16", (60, 40), 50_000)
    grey.paste(Image.new("I;16", (30, 40), 1000), (0, 0))  # (paste(1000, box) is not 1000 in I;16)
    data = sample_images.encode(grey, "PNG", transparency=1000)
    thumb = decode(run(data, "image/png").thumbnail)
    assert thumb.mode == "RGBA"
    assert thumb.getpixel((10, 20))[3] == 0
    assert thumb.getpixel((50, 20)) == pytest.approx((195, 195, 195, 255), abs=3)  # 50,000 / 257


def test_a_16_bit_grey_and_alpha_png_keeps_its_alpha() -> None:
    png = bytearray(sample_images.encode(Image.new("LA", (2, 2)), "PNG"))
    # Pillow writes 8-bit LA; a 16-bit one (colour type 4, depth 16) is made by hand.
    import zlib

    rows = b"".join(b"\0" + struct.pack(">HH", 40000, 0) + struct.pack(">HH", 40000, 65535) for _ in range(4))
    ihdr = struct.pack(">IIBBBBB", 2, 4, 16, 4, 0, 0, 0)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    data = png[:8] + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    thumb = decode(run(bytes(data), "image/png").thumbnail)
    assert thumb.mode == "RGBA"
    assert thumb.getpixel((0, 1))[3] == 0
    assert thumb.getpixel((1, 1))[3] == 255


@pytest.mark.parametrize("kind", FORMATS)
def test_a_heic_or_avif_with_alpha_keeps_it(kind: str) -> None:
    img = Image.new("RGBA", (64, 64), (200, 30, 30, 255))
    img.paste((0, 0, 0, 0), (0, 0, 32, 64))
    result = run(FORMATS[kind][0](img, quality=90), FORMATS[kind][1])
    thumb = decode(result.thumbnail)
    assert thumb.mode == "RGBA"
    assert thumb.getpixel((8, 32))[3] < 20
    assert thumb.getpixel((56, 32))[3] > 235


# Metadata


def test_the_thumbnail_carries_no_metadata_at_all() -> None:
    img = Image.new("RGB", (80, 60), COLOUR)
    exif = Image.Exif()
    exif[0x010F] = "Camera maker"
    exif.get_ifd(0x8825).update({1: "N", 2: (48.0, 51.0, 30.0), 3: "E", 4: (2.0, 17.0, 40.0)})
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF/></x:xmpmeta>'
    for data, mime in (
        (sample_images.encode(img, "JPEG", exif=exif, icc_profile=ADOBE_RGB, xmp=xmp), "image/jpeg"),
        (
            sample_images.encode(img.convert("RGBA"), "WEBP", exif=exif, icc_profile=ADOBE_RGB, xmp=xmp),
            "image/webp",
        ),
        (sample_images.heic(img, exif=exif.tobytes()), "image/heic"),
    ):
        result = run(data, mime)
        assert result.has_location is True
        chunks = webp_chunks(result.thumbnail)
        assert not {b"EXIF", b"ICCP", b"XMP "} & set(chunks), chunks
        assert dict(decode(result.thumbnail).getexif()) == {}


# Placeholder


@pytest.mark.parametrize(
    ("size", "mode"),
    [((400, 200), "RGB"), ((90, 300), "RGB"), ((64, 64), "L"), ((300, 150), "RGBA"), ((2, 1), "RGB")],
)
def test_the_placeholder_is_a_thumbhash_of_the_pictures_shape(size: tuple, mode: str) -> None:
    img = halves(size).convert(mode)
    if mode == "RGBA":
        img.putalpha(Image.linear_gradient("L").resize(size))  # transparent at the top
    result = run(sample_images.encode(img, "PNG"), "image/png")
    thumb_hash = list(base64.b64decode(result.placeholder, validate=True))
    assert 5 <= len(thumb_hash) <= 25
    width, height, rgba = thumbhash.thumb_hash_to_rgba(thumb_hash)
    assert len(rgba) == width * height * 4
    assert width / height == pytest.approx(size[0] / size[1], rel=0.35)


def test_a_transparent_picture_gets_an_opaque_placeholder_in_its_own_colours() -> None:
    """thumbhash 0.1.2 raises TypeError on any transparent pixel: the transparent parts are painted in
    the picture's average colour first."""
    img = Image.new("RGBA", (120, 80), (0, 0, 0, 0))
    img.paste((20, 200, 40, 255), (30, 20, 90, 60))
    with pytest.raises(TypeError):  # the library's bug this works around
        thumbhash.rgba_to_thumb_hash(img.width // 4, img.height // 4, list(img.resize((30, 20)).tobytes()))
    result = run(sample_images.encode(img, "PNG"), "image/png")
    average = thumbhash.thumb_hash_to_average_rgba(list(base64.b64decode(result.placeholder)))
    r, g, b, a = average
    assert a == 1
    assert g > 0.6
    assert r < 0.3
    assert b < 0.3


# Location


def gps_exif(gps: dict) -> bytes:
    exif = Image.Exif()
    exif.get_ifd(0x8825).update(gps)
    return exif.tobytes()


@pytest.mark.parametrize(
    ("gps", "expected"),
    [
        pytest.param({1: "N", 2: (48.0, 51.0, 30.0), 3: "E", 4: (2.0, 17.0, 40.0)}, True, id="lat-long"),
        pytest.param({5: 0, 6: 35.0}, False, id="altitude-only"),
        pytest.param({0: b"\x02\x02\x00\x00"}, False, id="version-only"),
        pytest.param(None, False, id="no-gps"),
    ],
)
def test_has_location_when_the_exif_gps_ifd_has_latitude_and_longitude(
    gps: dict | None, expected: bool
) -> None:
    img = Image.new("RGB", (40, 30), COLOUR)
    params = {"exif": gps_exif(gps)} if gps else {}
    assert run(sample_images.encode(img, "JPEG", **params), "image/jpeg").has_location is expected


def test_a_heic_with_gps_has_location() -> None:
    gps = gps_exif({1: "N", 2: (48.0, 51.0, 30.0), 3: "E", 4: (2.0, 17.0, 40.0)})
    assert run(sample_images.heic(exif=gps), "image/heic").has_location is True
    assert run(sample_images.heic(), "image/heic").has_location is False
