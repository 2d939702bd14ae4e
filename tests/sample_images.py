"""Real image files made in memory for the tests (nothing binary is committed)."""

import io
import struct
import zlib

from PIL import Image


def encode(img: Image.Image, fmt: str, **params) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt, **params)
    return out.getvalue()


def jpeg(width: int = 64, height: int = 48, orientation: int | None = None, icc_bytes: int = 0) -> bytes:
    img = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    params: dict = {"quality": 85}
    if orientation:
        exif = Image.Exif()
        exif[0x0112] = orientation
        params["exif"] = exif.tobytes()
    if icc_bytes:
        # A large ICC profile puts the SOF marker after this many bytes of header.
        params["icc_profile"] = b"\0" * icc_bytes
    return encode(img, "JPEG", **params)


def png(width: int = 40, height: int = 30, alpha: bool = False) -> bytes:
    img = Image.new(
        "RGBA" if alpha else "RGB", (width, height), (200, 30, 30, 128) if alpha else (200, 30, 30)
    )
    return encode(img, "PNG")


def gif(width: int = 30, height: int = 20, frames: int = 3) -> bytes:
    images = [Image.new("P", (width, height), color=i) for i in range(frames)]
    out = io.BytesIO()
    images[0].save(out, "GIF", save_all=True, append_images=images[1:], duration=100, loop=0)
    return out.getvalue()


def webp(width: int = 50, height: int = 40, alpha: bool = True) -> bytes:
    img = Image.new(
        "RGBA" if alpha else "RGB", (width, height), (10, 200, 10, 100) if alpha else (10, 200, 10)
    )
    return encode(img, "WEBP")


def png_bomb(width: int = 30_000, height: int = 30_000) -> bytes:
    """A small file whose header claims width x height pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * 1024)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


HTML = b"<!doctype html><html><body><script>alert(1)</script></body></html>" * 20


def jpeg_of_size(size: int, tag: int = 0) -> bytes:
    """A valid JPEG of exactly `size` bytes (a comment segment pads it), e.g. the note's 1024; another
    `tag` gives other bytes (another SHA-256) of the same size."""
    base = jpeg(8, 8)
    padding = size - len(base) - 4
    if not 0 <= padding <= 65533:
        raise ValueError(f"cannot make a {size}-byte JPEG from a {len(base)}-byte one")
    comment = tag.to_bytes(8, "big").rjust(padding, b"\0")[-padding:] if padding else b""
    return base[:2] + b"\xff\xfe" + (padding + 2).to_bytes(2, "big") + comment + base[2:]


def many_scan_jpeg(extra_scans: int, width: int = 64, height: int = 48) -> bytes:
    """A progressive JPEG whose last scan (an AC refinement) is repeated `extra_scans` more times before EOI.

    libjpeg only warns about the bogus progression and runs every copy over the whole image's coefficients,
    so decoding takes time in proportion to copies x pixels while each copy of a flat image's scan is a few
    bytes: the many-scans attack (10,000 copies in a 0.33 MB 4000x3000 file decode in over a minute).
    """
    data = encode(Image.new("RGB", (width, height), (200, 120, 40)), "JPEG", progressive=True)
    # Pillow writes nothing after EOI, and FF DA appears only as a marker: the last one starts the last scan.
    eoi = len(data) - 2
    assert data[eoi:] == b"\xff\xd9"
    last_scan = data[data.rindex(b"\xff\xda") : eoi]
    return data[:eoi] + last_scan * extra_scans + data[eoi:]


def heic(img: Image.Image | None = None, orientation: int | None = None, **params) -> bytes:
    """A real HEIC (HEVC, by pillow-heif's x265: a dev-only encoder; the functions decode with pi-heif).

    `orientation`: written as EXIF and, by pillow-heif, as the irot/imir transform libheif applies.
    pillow-heif's Pillow opener is never registered: it would take pi-heif's place in Pillow.
    """
    import pillow_heif

    img = img if img is not None else Image.linear_gradient("L").resize((64, 48)).convert("RGB")
    if orientation:
        exif = Image.Exif()
        exif[0x0112] = orientation
        params["exif"] = exif.tobytes()
    out = io.BytesIO()
    pillow_heif.from_pillow(img).save(out, quality=params.pop("quality", 60), **params)
    return out.getvalue()


def avif(img: Image.Image | None = None, orientation: int | None = None, **params) -> bytes:
    """A real AVIF, by Pillow's own plugin (libavif)."""
    img = img if img is not None else Image.linear_gradient("L").resize((64, 48)).convert("RGB")
    if orientation:
        exif = Image.Exif()
        exif[0x0112] = orientation
        params["exif"] = exif.tobytes()
    return encode(img, "AVIF", quality=params.pop("quality", 60), **params)
