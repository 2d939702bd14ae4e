"""Check that an uploaded object really is the image the client declared, measure it and thumbnail it.

Pure: takes a readable byte stream (a botocore StreamingBody in production: ``.read(n)`` only, not
seekable) and returns facts or raises ``Rejected``. No AWS imports here.

Order of checks, cheapest first, so that rejecting junk or a decompression bomb costs at most one
small read: declared size, magic number, declared type, pixel count from the header, then (JPEG only)
the number of scans and marker segments, counted over the whole file before libjpeg sees it, then a
full decode (which is what notices truncation and corruption) under a CPU-time budget that grows with
the pixel count, then the thumbnail. The budget is checked from the first read on, so it also bounds
Pillow's header parsing, and every time the decoder pulls more bytes.
"""

import io
import re
import struct
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

from PIL import Image, ImageFile, ImageOps

# The only decoders allowed to touch upload bytes: Pillow knows dozens of formats, each an attack surface.
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF")
MIME_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "GIF": "image/gif"}
_NAMES = {"JPEG": "JPEG", "PNG": "PNG", "WEBP": "WebP", "GIF": "GIF"}

# WebP is the one thumbnail format: one type for clients and for the thumbnail's S3 key, it keeps
# alpha, and it is smaller than JPEG at the same quality; every browser that can upload here shows it.
THUMBNAIL_FORMAT, THUMBNAIL_MIME, THUMBNAIL_QUALITY = "WEBP", "image/webp", 80

# Pillow decodes WebP whole, through libwebp's animation decoder: its canvases, the frame's bytes and
# the image hold ~16 bytes a pixel at once (a 50 MP WebP peaks at ~790 MiB, and no scaled decode is
# exposed). This cap keeps the trigger's peak under half its 1024 MB (`make bench`: 24 MP ≈ 390 MiB).
MAX_WEBP_PIXELS = 24_000_000
_SNIFF_BYTES = 32  # enough for every magic number and for the WebP canvas size
_MIN_CHUNK = 16 * 1024  # first pull from the source: rejecting junk or a bomb reads no more than this
_MAX_CHUNK = 1024 * 1024  # read-ahead doubles up to this, so a big upload is a few dozen source reads

# Progressive JPEG: libjpeg runs every scan over the whole coefficient buffer (draft() does not help), so
# decode time is scans x pixels while a scan can be a dozen bytes: a 0.33 MB 12 MP JPEG holding one
# refinement scan 10,000 times took 84 s here, and was accepted. What encoders write, measured with Pillow 13
# (libjpeg-turbo 3.2) and with mozjpeg (through mozjpeg-lossless-optimization 1.3): baseline 1 scan;
# progressive grey 6, colour 10, CMYK 18, the same with optimize=True and at any quality or subsampling;
# mozjpeg's optimised scans 3 to 8 (17 for CMYK). 64 is 3.5x the most seen; a 50 MP file of 64 scans that
# each cost the most per byte (a flat image's refinement scan) takes 1.9 s of CPU here.
MAX_JPEG_SCANS = 64
# Marker segments (tables, APPn, COM, scan headers) walked to count the scans, so the walk costs at most
# ~1 ms, not the 1.5 s that 10 MiB of 4-byte COM segments would take. Seen: 6 to 38 in Pillow's files,
# 56 with EXIF and a 1 MiB ICC profile (in 64 KiB APP2 pieces); a 10 MiB profile would make about 200.
MAX_JPEG_SEGMENTS = 1000

# CPU seconds one inspect() may spend reading and decoding: DECODE_CPU_SECONDS while Pillow parses headers,
# plus DECODE_CPU_SECONDS_PER_MEGAPIXEL once the pixel count is known. Checked every time a parser or
# decoder pulls bytes, so between pieces of _DECODE_PIECE bytes: it cannot cut a piece's work short (the
# work after the last piece included), nor libwebp's, which decodes a whole file in one call (in time
# that grows with its pixels only). Thread CPU time, not wall time: Lambda's 1024 MB share
# (~0.58 vCPU) stretches wall time ~1.7x but not CPU time, and other threads' work does not count.
# Measured here (AMD EPYC; thread CPU time from the start to the last read, best of 2) at 12 / 24 / 50 MP,
# photo-like content: JPEG q95 progressive (2.7 to 11 MiB) 0.10 / 0.21 / 0.44 s; gradient PNG, Adam7,
# RGBA 0.13 / 0.29 / 0.54 s; GIF 0.09 / 0.20 / 0.49 s; WebP under 0.01 s (then 0.2 to 0.9 s in libwebp).
# Slowest, and far over the 10 MiB upload cap: photo PNG (18 to 76 MiB) 0.19 / 0.44 / 0.93 s, JPEG q100
# 4:4:4 progressive (15 to 65 MiB) 0.60 / 1.16 / 2.61 s. The budget, 2.2 / 3.4 / 6 s, is 11 to 17 times
# the ordinary files' figures and 2.3 times the slowest file's.
DECODE_CPU_SECONDS = 1.0
DECODE_CPU_SECONDS_PER_MEGAPIXEL = 0.1
# What a decoder is handed at a time (Pillow's default is 64 KiB), so that the budget is checked between
# small pieces of work: without the scan count, 64 KiB of 26-byte scans of a 12 MP JPEG is 20 s of libjpeg
# work, 4 KiB about 1 s. Decoding a 50 MP JPEG or PNG took no measurably longer than in 64 KiB pieces.
_DECODE_PIECE = 4 * 1024
_cpu_time: Callable[[], float] = time.thread_time  # a module global so that tests can fake it

# What Pillow raises on malformed data, besides its own UnidentifiedImageError (an OSError).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, struct.error)


class Rejected(Exception):
    """The upload is not acceptable; ``code`` is for machines, ``message`` (also ``str()``) for people."""

    def __init__(self, code: str, message: str, bytes_read: int = 0) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.bytes_read = bytes_read  # filled in by inspect(): evidence that junk was rejected cheaply


@dataclass(frozen=True)
class Inspected:
    mime_type: str  # real type, from the bytes
    width: int  # as stored, before EXIF rotation
    height: int
    orientation: int | None  # EXIF orientation 1..8 (Pillow falls back to XMP), None if absent/invalid
    thumbnail: bytes
    thumbnail_mime: str
    bytes_read: int  # how many bytes were pulled from the source


class Readable(Protocol):
    def read(self, size: int, /) -> bytes: ...


class CountingStream(io.RawIOBase):
    """Seekable, lazily-filled view over a non-seekable source of known size.

    Pulls from the source only as far as a reader actually asks (plus a bounded read-ahead), keeps what
    it pulled so Pillow can seek back, never pulls more than ``size`` bytes, and never calls
    ``source.read()`` without a size. Seeking, including to the end, costs no source reads.
    ``on_read``, if given, is called before every read is served, and may raise to stop the reader.
    """

    def __init__(self, source: Readable, size: int, on_read: Callable[[], None] | None = None) -> None:
        super().__init__()
        self._source = source
        self._size = size
        self._on_read = on_read
        self._buffer = bytearray()
        self._pos = 0
        self._exhausted = False  # the source ended early: the object is shorter than its stated size

    @property
    def bytes_read(self) -> int:
        return len(self._buffer)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._pos = base + offset
        return self._pos

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if self._on_read is not None:
            self._on_read()
        end = min(self._pos + len(buffer), self._size)
        if end <= self._pos:  # at or past the end: nothing to pull
            return 0
        self._fill(end)  # the source only goes forward, so this pulls everything before end too
        data = self._buffer[self._pos : end]
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def pull_all(self) -> bytearray:
        """Everything, pulling what is left from the source; the stream's own buffer, not to be modified."""
        self._fill(self._size)
        return self._buffer

    def _fill(self, end: int) -> None:
        while len(self._buffer) < end and not self._exhausted:
            have = len(self._buffer)
            # Read ahead (doubling, bounded) so Pillow's many small reads don't each hit the network.
            # Never more than _MAX_CHUNK at once: the buffer grows by small steps, not by a copy of
            # the whole object beside the object (pull_all() asks for everything).
            want = min(max(end - have, max(have, _MIN_CHUNK)), _MAX_CHUNK, self._size - have)
            chunk = self._source.read(want)
            if not chunk:
                self._exhausted = True
            self._buffer += chunk[:want]  # never keep (or count) more than the stated size


class _CpuBudget:
    """CPU time one inspect() may spend: ``check()`` raises too_complex once it is spent."""

    def __init__(self) -> None:
        self._start = _cpu_time()
        self._seconds = DECODE_CPU_SECONDS  # until the pixel count is known

    def allow_pixels(self, pixels: int) -> None:
        self._seconds = DECODE_CPU_SECONDS + DECODE_CPU_SECONDS_PER_MEGAPIXEL * pixels / 1_000_000

    def check(self) -> None:
        if _cpu_time() - self._start > self._seconds:
            raise Rejected(
                "too_complex",
                f"the image takes too long to decode: more than the {self._seconds:.1f} seconds "
                "of CPU time allowed for its size",
            )


def inspect(
    source: Readable,
    *,
    size: int,
    declared_mime: str,
    declared_size: int,
    max_pixels: int = 50_000_000,
    thumbnail_size: int = 256,
) -> Inspected:
    """Verify ``source`` (``size`` bytes) is the declared image; measure it and make a thumbnail.

    Raises ``Rejected`` with code size_mismatch, not_an_image, type_mismatch, too_many_pixels, too_complex
    (more JPEG scans or marker segments than encoders write, or reading and decoding took more CPU time
    than the image's size justifies) or corrupt.
    """
    if size != declared_size:
        raise Rejected("size_mismatch", f"declared {declared_size} bytes but the object has {size} bytes")
    budget = _CpuBudget()
    stream = CountingStream(source, size, on_read=budget.check)
    try:
        return _inspect(stream, budget, declared_mime, max_pixels, thumbnail_size)
    except Rejected as exc:
        exc.bytes_read = stream.bytes_read
        raise


def _inspect(
    stream: CountingStream, budget: _CpuBudget, declared_mime: str, max_pixels: int, thumbnail_size: int
) -> Inspected:
    head = stream.read(_SNIFF_BYTES)
    stream.seek(0)
    fmt = _sniff(head)
    if fmt is None:
        raise Rejected("not_an_image", "the bytes are not a JPEG, PNG, WebP or GIF image")
    if MIME_TYPES[fmt] != declared_mime:
        raise Rejected("type_mismatch", f"declared {declared_mime} but the bytes are a {_NAMES[fmt]} image")
    if fmt == "WEBP":
        # Pillow reads a whole WebP file before it looks at the size, so check the header ourselves.
        webp_size = _webp_size(head)
        if webp_size is None:
            raise _corrupt(fmt)
        _check_pixels(webp_size, min(max_pixels, MAX_WEBP_PIXELS))

    with _pillow_guard(max_pixels):
        try:
            # Each of these plugins accepts only its own magic number, so Pillow agrees with _sniff.
            img = Image.open(stream, formats=ALLOWED_FORMATS)
            width, height = img.size
            _check_pixels(img.size, max_pixels)  # only the header has been read so far
            budget.allow_pixels(width * height)
            if fmt == "JPEG":
                _check_jpeg_scans(stream.pull_all())  # before libjpeg starts on them
                # Let libjpeg decode at 1/2, 1/4 or 1/8 scale: a 24 MP photo never needs its full buffer.
                img.draft("RGB", (thumbnail_size, thumbnail_size))
            img.decodermaxblock = _DECODE_PIECE
            img.load()  # a full decode is what notices truncated or damaged data
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise _too_many_pixels(max_pixels) from None
        except _DECODE_ERRORS:
            raise _corrupt(fmt) from None
        orientation = _orientation(img)
        thumbnail = _thumbnail(img, thumbnail_size, orientation)

    return Inspected(
        mime_type=MIME_TYPES[fmt],
        width=width,
        height=height,
        orientation=orientation,
        thumbnail=thumbnail,
        thumbnail_mime=THUMBNAIL_MIME,
        bytes_read=stream.bytes_read,
    )


def _sniff(head: bytes) -> str | None:
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "GIF"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "WEBP"
    return None


def _webp_size(head: bytes) -> tuple[int, int] | None:
    """Canvas size from the first 30 bytes of a WebP file, or None if the header is malformed."""
    chunk = head[12:16]
    if chunk == b"VP8X" and len(head) >= 30:  # extended: 24-bit canvas size minus one
        return int.from_bytes(head[24:27], "little") + 1, int.from_bytes(head[27:30], "little") + 1
    if chunk == b"VP8 " and len(head) >= 30 and head[23:26] == b"\x9d\x01\x2a":  # lossy key frame
        return (
            int.from_bytes(head[26:28], "little") & 0x3FFF,
            int.from_bytes(head[28:30], "little") & 0x3FFF,
        )
    if chunk == b"VP8L" and len(head) >= 25 and head[20] == 0x2F:  # lossless: two 14-bit sizes minus one
        bits = int.from_bytes(head[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    return None


# Where libjpeg reads a marker segment: FF then a code from C0 up (the length-prefixed segments, SOS among
# them, and EOI), RSTn and SOI aside. Skipped at C speed: FF 00 and FF FF (a stuffed data byte or fill in
# entropy-coded data, which holds no other FF), RSTn and TEM (no length), SOI (libjpeg stops at a second
# one) and codes below C0, which libjpeg either refuses or, resynchronising at a restart, steps over
# without reading a length. Each of those skips can only add scans to the count, never hide one.
_JPEG_SEGMENT = re.compile(rb"\xff[\xc0-\xcf\xd9-\xfe]")


def _check_jpeg_scans(data: bytearray) -> None:
    """Refuse a JPEG with more scans, or marker segments, than encoders write, before libjpeg decodes it.

    Walks the segments the way libjpeg reads them, from SOI to the first EOI (so an MPF image or other data
    after it does not count): each length-prefixed segment is skipped whole, so FF DA in an APPn or COM
    payload is not a scan, and after a scan header the entropy-coded data is searched for the next marker.
    """
    scans = segments = 0
    pos = 2  # after SOI
    while (match := _JPEG_SEGMENT.search(data, pos)) is not None:
        pos = match.start()
        if data[pos + 1] == 0xD9:  # EOI: libjpeg reads no further
            return
        segments += 1
        if segments > MAX_JPEG_SEGMENTS:
            raise Rejected(
                "too_complex",
                f"the JPEG image has more than the {MAX_JPEG_SEGMENTS:,} marker segments allowed",
            )
        if data[pos + 1] == 0xDA:
            scans += 1
            if scans > MAX_JPEG_SCANS:
                raise Rejected(
                    "too_complex",
                    f"the JPEG image has more than the {MAX_JPEG_SCANS} scans allowed, "
                    "which would take too long to decode",
                )
        # A length under 2 is skipped as 2, as libjpeg does; a cut-off one reads as 0 and ends the walk.
        pos += 2 + max(int.from_bytes(data[pos + 2 : pos + 4], "big"), 2)


def _corrupt(fmt: str) -> Rejected:
    return Rejected("corrupt", f"the {_NAMES[fmt]} image is truncated or corrupt")


def _check_pixels(size: tuple[int, int], max_pixels: int) -> None:
    if size[0] * size[1] > max_pixels:
        raise _too_many_pixels(max_pixels)


def _too_many_pixels(max_pixels: int) -> Rejected:
    # No dimensions: when Pillow's own guard fires first, we never get to see them.
    return Rejected("too_many_pixels", f"the image has more than the {max_pixels:,} pixels allowed")


@contextmanager
def _pillow_guard(max_pixels: int) -> Iterator[None]:
    """Pillow's bomb guard at our limit, as an error, for this call only; its globals restored after.

    Pillow only warns between MAX_IMAGE_PIXELS and twice that, so the warning is made an error. These are
    process globals: fine in Lambda, which runs one event per process at a time.
    """
    saved = Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES
    Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES = max_pixels, False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    finally:
        Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES = saved


def _orientation(img: Image.Image) -> int | None:
    try:
        value = img.getexif().get(0x0112)
    except _DECODE_ERRORS:  # malformed EXIF is not a reason to refuse the picture
        return None
    return value if isinstance(value, int) and 1 <= value <= 8 else None


def _thumbnail(img: Image.Image, size: int, orientation: int | None) -> bytes:
    # Resample in RGB(A): a palette image would resize nearest-neighbour, and WebP takes nothing else.
    mode = "RGBA" if img.has_transparency_data else "RGB"
    if img.mode.startswith("I"):  # 16-bit grey PNG: scale to 8 bits, converting alone clips at 255
        img = img.point(lambda v: v * (1 / 256))
    if img.mode != mode:
        img = img.convert(mode)
    img.thumbnail((size, size), reducing_gap=3.0)
    if orientation not in (None, 1):
        img = ImageOps.exif_transpose(img)
    out = io.BytesIO()
    # No exif/icc/xmp passed on: the thumbnail is already upright and must not carry GPS or the like.
    img.save(out, THUMBNAIL_FORMAT, quality=THUMBNAIL_QUALITY)
    return out.getvalue()
