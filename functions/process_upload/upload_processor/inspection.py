"""Check that an uploaded object really is the image the client declared, measure it and thumbnail it.

Pure: takes a readable byte stream (a botocore StreamingBody in production: ``.read(n)`` only, not
seekable) and returns facts or raises ``Rejected``. No AWS imports here.

Order of checks, cheapest first, so that rejecting junk or a decompression bomb costs at most one
small read: declared size, magic number, declared type, pixel count from the header, then (JPEG only)
the number of scans and marker segments, counted over the whole file before libjpeg sees it, then a
full decode (which is what notices truncation and corruption) under a CPU-time budget that grows with
the pixel count, then the thumbnail. The budget is checked from the first read on, so it also bounds
Pillow's header parsing, and every time the decoder pulls more bytes. HEIF (pi-heif) and AVIF (Pillow's
plugin) are ISO media files, told apart by their `ftyp` brands; their decoders read the whole file, then
parse its header: the pixel cap is checked before they decode, and the pixel count bounds their work.

Besides the size as stored, the facts are the size as shown (after the orientation), whether the EXIF
carries GPS coordinates, a ThumbHash placeholder, and a thumbnail that is upright, in sRGB, and carries
no metadata.
"""

import base64
import functools
import io
import re
import struct
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

import thumbhash
from PIL import Image, ImageCms, ImageFile, ImageMath

from uploads_core import formats

# The only decoders allowed to touch upload bytes: Pillow knows dozens of formats, each an attack surface.
# Each upload is opened with the one its bytes show (HEIF: pi-heif's plugin, registered on first use).
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "AVIF", "HEIF")
MIME_TYPES = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "GIF": "image/gif",
    "AVIF": "image/avif",
    "HEIF": "image/heic",
}
# What a client may declare for each format, and the format each sniffed type is opened with.
_DECLARED = {m: fmt for fmt, mime in MIME_TYPES.items() for m in formats.DECLARED_AS.get(mime, (mime,))}
_FORMAT_OF = {mime: fmt for fmt, mime in MIME_TYPES.items()}
_NAMES = {"JPEG": "JPEG", "PNG": "PNG", "WEBP": "WebP", "GIF": "GIF", "AVIF": "AVIF", "HEIF": "HEIF"}

# WebP is the one thumbnail format: one type for clients and for the thumbnail's S3 key, it keeps
# alpha, and it is smaller than JPEG at the same quality; every browser that can upload here shows it.
THUMBNAIL_FORMAT, THUMBNAIL_MIME, THUMBNAIL_QUALITY = "WEBP", "image/webp", 80

# Pillow decodes WebP whole, through libwebp's animation decoder: its canvases, the frame's bytes and
# the image hold ~16 bytes a pixel at once (a 50 MP WebP peaks at ~790 MiB, and no scaled decode is
# exposed). This cap keeps the trigger's peak under half its 1024 MB (`make bench`: 24 MP ≈ 390 MiB).
MAX_WEBP_PIXELS = 24_000_000
_SNIFF_BYTES = max(formats.SNIFF_BYTES, 30)  # every magic number and `ftyp` brand, the WebP canvas size
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
# work after the last piece included), nor libwebp's, libavif's or libheif's, which decode a whole file
# in one call (in time that grows with its pixels only; `make bench` has HEIC and AVIF figures). Thread
# CPU time, not wall time: Lambda's 1024 MB share (~0.58 vCPU) stretches wall time ~1.7x but not CPU
# time, and other threads' work does not count.
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

# The placeholder: a ThumbHash (~25 bytes) of the thumbnail scaled to fit this box. The pure-Python
# encoder's time grows with the pixels; a blur of 7 x 7 coefficients at most needs no more than this.
PLACEHOLDER_SIZE = 32


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
    display_width: int  # as shown: after the orientation (HEIF: after its irot/imir transforms)
    display_height: int
    placeholder: str  # base64 ThumbHash of the (sRGB, upright) thumbnail
    has_location: bool  # the EXIF GPS IFD holds a latitude and a longitude


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
    mime = formats.sniff(head)  # the rule GET /limits publishes: the clients sniff as this does
    fmt = None if mime is None else _FORMAT_OF[mime]
    if fmt is None:
        raise Rejected("not_an_image", "the bytes are not a JPEG, PNG, WebP, GIF, AVIF or HEIF image")
    if _DECLARED.get(declared_mime) != fmt:
        raise Rejected("type_mismatch", f"declared {declared_mime} but the bytes are a {_NAMES[fmt]} image")
    if fmt == "HEIF":
        _register_heif()
    if fmt == "WEBP":
        # Pillow reads a whole WebP file before it looks at the size, so check the header ourselves.
        webp_size = _webp_size(head)
        if webp_size is None:
            raise _corrupt(fmt)
        _check_pixels(webp_size, min(max_pixels, MAX_WEBP_PIXELS))

    with _pillow_guard(max_pixels):
        try:
            # Only the decoder of the format the bytes show runs (AVIF's plugin also accepts `mif1`).
            # AVIF and HEIF parse the whole file here (at most the upload cap), not the pixels.
            img = Image.open(stream, formats=(fmt,))
            width, height = img.size
            _check_pixels(img.size, max_pixels)  # only the header has been read so far
            budget.allow_pixels(width * height)
            if fmt == "JPEG":
                _check_jpeg_scans(stream.pull_all())  # before libjpeg starts on them
                # Let libjpeg decode at 1/2, 1/4 or 1/8 scale: a 24 MP photo never needs its full buffer.
                img.draft("RGB", (thumbnail_size, thumbnail_size))
            img.decodermaxblock = _DECODE_PIECE
            img.load()  # a full decode is what notices truncated or damaged data
            # libavif and libheif decode a whole file in one call, after their last read: the budget
            # judges their work once it is done (they decode on this thread, see below).
            budget.check()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise _too_many_pixels(max_pixels) from None
        except _DECODE_ERRORS:
            raise _corrupt(fmt) from None
        has_location = _has_location(img)
        if fmt == "HEIF":
            # libheif applies the file's irot/imir, so pi-heif hands over the picture upright; its
            # orientation is the EXIF tag it then resets to 1. Stored size: before that rotation.
            orientation = _valid_orientation(img.info.get("original_orientation"))
            display = img.size
            if orientation in _QUARTER_TURNS:
                width, height = height, width
            upright = _thumbnail(img, thumbnail_size, None)
        else:
            orientation = _orientation(img)
            display = (height, width) if orientation in _QUARTER_TURNS else (width, height)
            upright = _thumbnail(img, thumbnail_size, orientation)

    return Inspected(
        mime_type=declared_mime if fmt == "HEIF" else MIME_TYPES[fmt],
        width=width,
        height=height,
        orientation=orientation,
        thumbnail=_encode_thumbnail(upright),
        thumbnail_mime=THUMBNAIL_MIME,
        bytes_read=stream.bytes_read,
        display_width=display[0],
        display_height=display[1],
        placeholder=_placeholder(upright),
        has_location=has_location,
    )


@functools.cache
def _register_heif() -> None:
    # pi-heif (libheif, LGPL, decode only) is imported when a HEIF file arrives, not at cold start. Its
    # thumbnails, depth and auxiliary images are never used: not parsed either.
    from pi_heif import register_heif_opener

    # One decoding thread: the CPU budget counts this thread's time (and Lambda's 1024 MB is 0.58 vCPU).
    register_heif_opener(thumbnails=False, depth_images=False, aux_images=False, decode_threads=1)


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

    Pillow only warns between MAX_IMAGE_PIXELS and twice that, so the warning is made an error. libavif
    decodes on this thread only, so that the CPU budget (thread time) sees its work. These are process
    globals: fine in Lambda, which runs one event per process at a time.
    """
    from PIL import AvifImagePlugin

    saved = Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES, AvifImagePlugin.DEFAULT_MAX_THREADS
    Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES = max_pixels, False
    AvifImagePlugin.DEFAULT_MAX_THREADS = 1
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    finally:
        Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES, AvifImagePlugin.DEFAULT_MAX_THREADS = saved


def _orientation(img: Image.Image) -> int | None:
    try:
        value = img.getexif().get(0x0112)
    except _DECODE_ERRORS:  # malformed EXIF is not a reason to refuse the picture
        return None
    return _valid_orientation(value)


def _valid_orientation(value: object) -> int | None:
    return value if isinstance(value, int) and 1 <= value <= 8 else None


_QUARTER_TURNS = (5, 6, 7, 8)  # orientations that swap width and height
# The transposition that makes an EXIF-oriented picture upright (as ImageOps.exif_transpose).
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _has_location(img: Image.Image) -> bool:
    """The EXIF GPS IFD carries a latitude (tag 2) and a longitude (tag 4)."""
    try:
        gps = img.getexif().get_ifd(0x8825)
    except _DECODE_ERRORS:  # malformed EXIF: no location we can read
        return False
    return bool(gps.get(2)) and bool(gps.get(4))


# Thumbnails are sRGB, what browsers assume of an untagged image: no profile travels with them.
_SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


def _thumbnail(img: Image.Image, size: int, orientation: int | None) -> Image.Image:
    """The picture reduced to fit `size`, upright, in sRGB (RGB, or RGBA when it has transparency)."""
    icc = img.info.get("icc_profile")
    img = _resizable(img)
    img.thumbnail((size, size), reducing_gap=3.0)
    alpha = img.getchannel("A") if img.mode in ("LA", "RGBA") else None
    colour = img.convert({"LA": "L", "RGBA": "RGB"}.get(img.mode, img.mode))
    # Convert from the embedded profile (Adobe RGB, Display P3, a CMYK or grey one): without it, the
    # numbers would be shown as sRGB and the colours would be off.
    out = _to_srgb(colour, icc) if icc else colour.convert("RGB")
    if alpha is not None:
        out.putalpha(alpha)
    if orientation in _UPRIGHT:
        out = out.transpose(_UPRIGHT[orientation])
    return out


def _resizable(img: Image.Image) -> Image.Image:
    """The image in L, LA, RGB, RGBA or CMYK, its transparency as an alpha channel, 8 bits a sample."""
    if img.mode.startswith("I"):  # 16-bit grey PNG: scale to 8 bits, converting alone clips at 255
        grey = img.point(lambda v: v * (1 / 256)).convert("L")
        transparent = img.info.get("transparency")
        if not isinstance(transparent, int):
            return grey
        # The tRNS value is a 16-bit sample: find it before scaling (converting loses it).
        alpha = ImageMath.lambda_eval(
            lambda a: a["convert"]((a["img"] != transparent) * 255, "L"), img=img.convert("I")
        )
        grey.putalpha(alpha)
        return grey
    if img.mode in ("L", "LA", "RGB", "RGBA", "CMYK"):
        return img
    # Palette (with tRNS or a GIF's transparent index), 1-bit, PA, YCbCr and the rest.
    if img.has_transparency_data:
        return img.convert("LA" if img.mode in ("1", "L") else "RGBA")
    return img.convert("L" if img.mode == "1" else "RGB")


def _to_srgb(img: Image.Image, icc: bytes) -> Image.Image:
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        return ImageCms.profileToProfile(img, source, _SRGB, outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        # A damaged profile, or one of another colour space than the pixels: shown as if sRGB, as a
        # browser would; not a reason to refuse the picture.
        return img.convert("RGB")


def _encode_thumbnail(img: Image.Image) -> bytes:
    out = io.BytesIO()
    # No exif/icc/xmp passed on (Pillow's WebP writer writes only those it is given): the thumbnail
    # carries no GPS or the like, and no profile: it is sRGB, as an untagged image is shown.
    img.save(out, THUMBNAIL_FORMAT, quality=THUMBNAIL_QUALITY)
    return out.getvalue()


def _placeholder(thumbnail: Image.Image) -> str:
    scale = min(1.0, PLACEHOLDER_SIZE / max(thumbnail.size))
    small = thumbnail.resize(
        (max(1, round(thumbnail.width * scale)), max(1, round(thumbnail.height * scale)))
    )
    if small.mode == "RGBA" and small.getchannel("A").getextrema()[0] < 255:
        # thumbhash 0.1.2 raises TypeError on any transparent pixel (its alpha channel is never
        # encoded): paint the transparent parts in the picture's own average colour, as ThumbHash does
        # before encoding the colours, and keep an opaque placeholder.
        small = _flatten(small)
    small = small.convert("RGBA")
    rgba = small.tobytes()
    return base64.b64encode(bytes(thumbhash.rgba_to_thumb_hash(small.width, small.height, rgba))).decode()


def _flatten(img: Image.Image) -> Image.Image:
    pixels = list(img.get_flattened_data())  # at most PLACEHOLDER_SIZE squared
    weight = sum(p[3] for p in pixels)
    average = tuple(round(sum(p[c] * p[3] for p in pixels) / weight) if weight else 0 for c in range(3))
    flat = Image.new("RGB", img.size, average)
    flat.paste(img, mask=img.getchannel("A"))
    return flat
